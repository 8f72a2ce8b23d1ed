//! InfoTables: a data shape (field definitions) plus rows of primitives.
//!
//! Binary layout (twInfoTable.c, `twDataShape_ToStream` / `twInfoTableRow_ToStream`):
//! for each field `0x01, name, description, type byte, aspect count (u16), aspects`,
//! then `0x00`; for each row `0x01, field count (u16), primitives with type bytes`,
//! then `0x00`. There is no overall length prefix.

use super::primitive::{describe, Primitive};
use super::types::WireType;
use super::wire::{CodecError, Reader, Writer};
use serde_json::{json, Map, Value};

/// A named aspect of a field (e.g. `dataShape`, `isPrimaryKey`), carried as a typed value.
#[derive(Debug, Clone, PartialEq)]
pub struct Aspect {
    /// Aspect name.
    pub name: String,
    /// Aspect value with its type.
    pub value: Primitive,
}

/// One column of a data shape.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDefinition {
    /// Field name.
    pub name: String,
    /// Free-text description (the SDK writes an absent one as an empty string).
    pub description: String,
    /// The field's base type.
    pub base_type: WireType,
    /// Aspects in wire order.
    pub aspects: Vec<Aspect>,
}

impl FieldDefinition {
    /// A field with no description and no aspects.
    pub fn new(name: impl Into<String>, base_type: WireType) -> Self {
        Self {
            name: name.into(),
            description: String::new(),
            base_type,
            aspects: Vec::new(),
        }
    }
}

/// The ordered columns of an InfoTable.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataShape {
    /// Fields in wire order; row values follow this order.
    pub fields: Vec<FieldDefinition>,
}

impl DataShape {
    /// A shape from a list of fields.
    pub fn new(fields: Vec<FieldDefinition>) -> Self {
        Self { fields }
    }

    /// Position of a field by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

/// A table of typed values: parameters, results and property values all travel as these.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InfoTable {
    /// Column definitions.
    pub shape: DataShape,
    /// Rows; each row holds one value per field, in field order.
    pub rows: Vec<Vec<Primitive>>,
}

impl InfoTable {
    /// An empty table with the given shape.
    pub fn new(shape: DataShape) -> Self {
        Self {
            shape,
            rows: Vec::new(),
        }
    }

    /// A one-field, one-row table, as `twInfoTable_CreateFromPrimitive` builds for property writes.
    pub fn from_primitive(name: impl Into<String>, value: Primitive) -> Self {
        let field = FieldDefinition::new(name, value.wire_type());
        Self {
            shape: DataShape::new(vec![field]),
            rows: vec![vec![value]],
        }
    }

    /// Appends a row; the number of values must match the number of fields.
    pub fn push_row(&mut self, row: Vec<Primitive>) -> Result<(), CodecError> {
        if row.len() != self.shape.fields.len() {
            return Err(CodecError::Json {
                expected: "a row with one value per field",
                got: format!(
                    "{} values for {} fields",
                    row.len(),
                    self.shape.fields.len()
                ),
            });
        }
        self.rows.push(row);
        Ok(())
    }

    /// The value of field `name` in row `row`.
    pub fn get(&self, row: usize, name: &str) -> Option<&Primitive> {
        let i = self.shape.index_of(name)?;
        self.rows.get(row)?.get(i)
    }

    /// Writes the data shape and rows.
    ///
    /// # Panics
    /// If a field has more than 65535 aspects or a row more than 65535 values.
    pub fn encode(&self, w: &mut Writer) {
        for f in &self.shape.fields {
            w.u8(0x01);
            w.string(&f.name);
            w.string(&f.description);
            w.i8(f.base_type.code());
            w.u16(u16::try_from(f.aspects.len()).expect("too many aspects"));
            for a in &f.aspects {
                w.string(&a.name);
                a.value.encode(w);
            }
        }
        w.u8(0x00);
        for row in &self.rows {
            w.u8(0x01);
            w.u16(u16::try_from(row.len()).expect("too many values in a row"));
            for v in row {
                v.encode(w);
            }
        }
        w.u8(0x00);
    }

    /// Encodes the table on its own (no type byte), e.g. for tests and logs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.into_bytes()
    }

    /// Reads a data shape and rows; `depth` is the current nesting level.
    pub fn decode(r: &mut Reader<'_>, depth: usize) -> Result<Self, CodecError> {
        let mut fields = Vec::new();
        // Like the SDK, any non-zero marker means "another entry follows".
        while r.u8()? != 0 {
            let name = r.string()?;
            let description = r.string()?;
            let offset = r.offset();
            let code = r.i8()?;
            let base_type =
                WireType::from_code(code).ok_or(CodecError::UnknownBaseType { offset, code })?;
            let count = usize::from(r.u16()?);
            let mut aspects = Vec::with_capacity(count.min(r.remaining()));
            for _ in 0..count {
                let name = r.string()?;
                let value = Primitive::decode(r, depth)?;
                aspects.push(Aspect { name, value });
            }
            fields.push(FieldDefinition {
                name,
                description,
                base_type,
                aspects,
            });
        }
        let mut rows = Vec::new();
        while r.u8()? != 0 {
            let count = usize::from(r.u16()?);
            let mut row = Vec::with_capacity(count.min(r.remaining()));
            for _ in 0..count {
                row.push(Primitive::decode(r, depth)?);
            }
            rows.push(row);
        }
        Ok(Self {
            shape: DataShape { fields },
            rows,
        })
    }

    /// Decodes a table that fills `bytes` exactly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes);
        let t = Self::decode(&mut r, 0)?;
        r.finish()?;
        Ok(t)
    }

    /// REST JSON: `{"dataShape":{"fieldDefinitions":{..}},"rows":[{..}]}` (with `ordinal`s).
    pub fn to_json(&self) -> Value {
        let mut defs = Map::new();
        for (i, f) in self.shape.fields.iter().enumerate() {
            let aspects: Map<String, Value> = f
                .aspects
                .iter()
                .map(|a| (a.name.clone(), a.value.to_json()))
                .collect();
            defs.insert(
                f.name.clone(),
                json!({
                    "name": f.name,
                    "description": f.description,
                    "baseType": f.base_type.name(),
                    "ordinal": i,
                    "aspects": aspects,
                }),
            );
        }
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let obj: Map<String, Value> = self
                    .shape
                    .fields
                    .iter()
                    .zip(row)
                    .map(|(f, v)| (f.name.clone(), v.to_json()))
                    .collect();
                Value::Object(obj)
            })
            .collect();
        json!({"dataShape": {"fieldDefinitions": defs}, "rows": rows})
    }

    /// Parses the REST JSON form; fields are ordered by `ordinal` when present.
    pub fn from_json(v: &Value) -> Result<Self, CodecError> {
        let bad = |what: &'static str, got: &Value| CodecError::Json {
            expected: what,
            got: describe(got),
        };
        let shape_json = v
            .get("dataShape")
            .or_else(|| v.get("datashape"))
            .ok_or_else(|| bad("INFOTABLE with a dataShape", v))?;
        let defs = shape_json
            .get("fieldDefinitions")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("dataShape with fieldDefinitions", shape_json))?;
        let mut fields = Vec::with_capacity(defs.len());
        for (i, (key, def)) in defs.iter().enumerate() {
            let name = def.get("name").and_then(Value::as_str).unwrap_or(key);
            let type_name = def
                .get("baseType")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("field definition with a baseType", def))?;
            let base_type = WireType::from_name(type_name).ok_or_else(|| CodecError::Json {
                expected: "a known baseType",
                got: type_name.to_owned(),
            })?;
            let mut aspects = Vec::new();
            if let Some(map) = def.get("aspects").and_then(Value::as_object) {
                for (an, av) in map {
                    aspects.push(Aspect {
                        name: an.clone(),
                        value: aspect_from_json(av),
                    });
                }
            }
            let ordinal = def
                .get("ordinal")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            let field = FieldDefinition {
                name: name.to_owned(),
                description: def
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                base_type,
                aspects,
            };
            fields.push((ordinal, i, field));
        }
        fields.sort_by_key(|(ordinal, i, _)| (*ordinal, *i));
        let shape = DataShape::new(fields.into_iter().map(|(_, _, f)| f).collect());
        let mut rows = Vec::new();
        if let Some(rows_json) = v.get("rows") {
            let rows_json = rows_json
                .as_array()
                .ok_or_else(|| bad("rows as an array", rows_json))?;
            for (i, rj) in rows_json.iter().enumerate() {
                // A field the shape does not define would be dropped on the wire: refuse it,
                // so nothing a client sent is lost without a word.
                if let Some(extra) = rj
                    .as_object()
                    .and_then(|o| o.keys().find(|k| shape.index_of(k).is_none()))
                {
                    return Err(CodecError::Json {
                        expected: "a row of its dataShape",
                        got: format!(
                            "row {i} has field {extra:?}, which the dataShape does not define"
                        ),
                    });
                }
                let mut row = Vec::with_capacity(shape.fields.len());
                for f in &shape.fields {
                    let value = match rj.get(&f.name) {
                        Some(fv) => Primitive::from_json(f.base_type, fv)?,
                        None => Primitive::Nothing,
                    };
                    row.push(value);
                }
                rows.push(row);
            }
        }
        Ok(Self { shape, rows })
    }
}

/// Aspect typing as `twInfoTable_CreateFromJson` does it: bool, integer, number, string.
fn aspect_from_json(v: &Value) -> Primitive {
    match v {
        Value::Bool(b) => Primitive::Boolean(*b),
        Value::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
            Some(i) => Primitive::Integer(i),
            None => Primitive::Number(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Primitive::string(s.clone()),
        _ => Primitive::Nothing,
    }
}

#[cfg(test)]
mod tests;
