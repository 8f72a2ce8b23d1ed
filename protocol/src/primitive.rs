//! Typed values ("primitives") and their binary encoding, plus JSON conversion.
//!
//! On the wire a primitive is a signed type byte followed by the value; the layout per
//! type family follows `twPrimitive_ToStream` / `twPrimitive_CreateFromStreamTyped`
//! in the Edge C SDK's twBaseTypes.c.

use super::infotable::InfoTable;
use super::types::{Family, WireType};
use super::wire::{CodecError, Reader, Writer, MAX_DEPTH};
use base64::Engine as _;
use serde_json::{json, Value};

/// Wire type of a string-valued primitive; only string-family types can be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StringType(WireType);

impl StringType {
    /// STRING (0).
    pub const STRING: StringType = StringType(WireType::String);
    /// JSON (8): the JSON text travels as a string.
    pub const JSON: StringType = StringType(WireType::Json);
    /// TEXT (15).
    pub const TEXT: StringType = StringType(WireType::Text);
    /// THINGNAME (100).
    pub const THINGNAME: StringType = StringType(WireType::ThingName);

    /// The string type for a wire type, if that type is in the string family.
    pub fn new(wt: WireType) -> Option<Self> {
        (wt.family() == Family::String).then_some(StringType(wt))
    }

    /// The underlying wire type.
    pub fn wire_type(self) -> WireType {
        self.0
    }
}

/// Which of the two binary types a blob primitive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobType {
    /// BLOB (21).
    Blob,
    /// IMAGE (10).
    Image,
}

/// A LOCATION value; on the wire the order is longitude, latitude, elevation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Location {
    /// Degrees east.
    pub longitude: f64,
    /// Degrees north.
    pub latitude: f64,
    /// Metres.
    pub elevation: f64,
}

/// One typed value as carried in rows, aspects, variants and property updates.
#[derive(Debug, Clone, PartialEq)]
pub enum Primitive {
    /// NOTHING (-1): no value bytes.
    Nothing,
    /// Any string-family type (STRING, JSON, TEXT, THINGNAME, ...).
    String(StringType, String),
    /// BLOB or IMAGE bytes.
    Blob(BlobType, Vec<u8>),
    /// NUMBER: 8-byte double.
    Number(f64),
    /// INTEGER: 4-byte signed.
    Integer(i32),
    /// LONG: 8-byte signed (encoding assumed, see docs/protocol.md).
    Long(i64),
    /// BOOLEAN: one byte.
    Boolean(bool),
    /// DATETIME: milliseconds since the Unix epoch, 8 bytes.
    Datetime(i64),
    /// LOCATION: three doubles.
    Location(Location),
    /// INFOTABLE: nested data shape and rows, no length prefix.
    InfoTable(Box<InfoTable>),
    /// VARIANT: the inner value with its own type byte.
    Variant(Box<Primitive>),
}

impl Primitive {
    /// A plain STRING value.
    pub fn string(s: impl Into<String>) -> Self {
        Primitive::String(StringType::STRING, s.into())
    }

    /// Wraps a value in a VARIANT, as property updates require.
    pub fn variant(inner: Primitive) -> Self {
        Primitive::Variant(Box::new(inner))
    }

    /// The wire type this value is written with.
    pub fn wire_type(&self) -> WireType {
        match self {
            Primitive::Nothing => WireType::Nothing,
            Primitive::String(t, _) => t.wire_type(),
            Primitive::Blob(BlobType::Blob, _) => WireType::Blob,
            Primitive::Blob(BlobType::Image, _) => WireType::Image,
            Primitive::Number(_) => WireType::Number,
            Primitive::Integer(_) => WireType::Integer,
            Primitive::Long(_) => WireType::Long,
            Primitive::Boolean(_) => WireType::Boolean,
            Primitive::Datetime(_) => WireType::Datetime,
            Primitive::Location(_) => WireType::Location,
            Primitive::InfoTable(_) => WireType::InfoTable,
            Primitive::Variant(_) => WireType::Variant,
        }
    }

    /// The string content of any string-family value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Primitive::String(_, s) => Some(s),
            _ => None,
        }
    }

    /// Writes the type byte and the value.
    pub fn encode(&self, w: &mut Writer) {
        w.i8(self.wire_type().code());
        self.encode_value(w);
    }

    /// Writes the value only, for places where the type is implied.
    pub fn encode_value(&self, w: &mut Writer) {
        match self {
            Primitive::Nothing => {}
            Primitive::String(_, s) => w.string(s),
            Primitive::Blob(_, b) => w.blob(b),
            Primitive::Number(v) => w.f64(*v),
            Primitive::Integer(v) => w.i32(*v),
            Primitive::Long(v) | Primitive::Datetime(v) => w.i64(*v),
            Primitive::Boolean(v) => w.u8(u8::from(*v)),
            Primitive::Location(l) => {
                w.f64(l.longitude);
                w.f64(l.latitude);
                w.f64(l.elevation);
            }
            Primitive::InfoTable(t) => t.encode(w),
            Primitive::Variant(inner) => inner.encode(w),
        }
    }

    /// Reads a type byte and the value that follows.
    pub fn decode(r: &mut Reader<'_>, depth: usize) -> Result<Self, CodecError> {
        let offset = r.offset();
        let code = r.i8()?;
        let wt = WireType::from_code(code).ok_or(CodecError::UnknownBaseType { offset, code })?;
        Self::decode_typed(r, wt, offset, depth)
    }

    /// Reads a value whose type is already known; `offset` locates its type byte.
    pub fn decode_typed(
        r: &mut Reader<'_>,
        wt: WireType,
        offset: usize,
        depth: usize,
    ) -> Result<Self, CodecError> {
        Ok(match wt.family() {
            Family::Nothing => Primitive::Nothing,
            Family::String => Primitive::String(StringType(wt), r.string()?),
            Family::Blob => {
                let kind = if wt == WireType::Image {
                    BlobType::Image
                } else {
                    BlobType::Blob
                };
                Primitive::Blob(kind, r.blob()?)
            }
            Family::Number => Primitive::Number(r.f64()?),
            Family::Integer => Primitive::Integer(r.i32()?),
            Family::Long => Primitive::Long(r.i64()?),
            Family::Boolean => Primitive::Boolean(r.u8()? != 0),
            Family::Datetime => Primitive::Datetime(r.i64()?),
            Family::Location => Primitive::Location(Location {
                longitude: r.f64()?,
                latitude: r.f64()?,
                elevation: r.f64()?,
            }),
            Family::InfoTable => {
                let depth = deeper(depth, offset)?;
                Primitive::InfoTable(Box::new(InfoTable::decode(r, depth)?))
            }
            Family::Variant => {
                let depth = deeper(depth, offset)?;
                Primitive::Variant(Box::new(Primitive::decode(r, depth)?))
            }
            Family::Unsupported => {
                return Err(CodecError::UnsupportedBaseType {
                    offset,
                    name: wt.name(),
                })
            }
        })
    }

    /// The ThingWorx REST JSON form of the value (DATETIME as epoch ms, BLOB as base64).
    pub fn to_json(&self) -> Value {
        match self {
            Primitive::Nothing => Value::Null,
            Primitive::String(t, s) if t.wire_type() == WireType::Json => {
                serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
            }
            Primitive::String(_, s) => Value::String(s.clone()),
            Primitive::Blob(_, b) => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            Primitive::Number(v) => {
                serde_json::Number::from_f64(*v).map_or(Value::Null, Value::Number)
            }
            Primitive::Integer(v) => json!(v),
            Primitive::Long(v) | Primitive::Datetime(v) => json!(v),
            Primitive::Boolean(v) => Value::Bool(*v),
            Primitive::Location(l) => {
                json!({"latitude": l.latitude, "longitude": l.longitude, "elevation": l.elevation})
            }
            Primitive::InfoTable(t) => t.to_json(),
            Primitive::Variant(inner) => inner.to_json(),
        }
    }

    /// Builds a value of wire type `wt` from its REST JSON form; `null` gives NOTHING.
    pub fn from_json(wt: WireType, v: &Value) -> Result<Self, CodecError> {
        let mismatch = || CodecError::Json {
            expected: wt.name(),
            got: describe(v),
        };
        if v.is_null() {
            return Ok(Primitive::Nothing);
        }
        Ok(match wt.family() {
            Family::Nothing => Primitive::Nothing,
            Family::String => match (wt, v) {
                (_, Value::String(s)) => Primitive::String(StringType(wt), s.clone()),
                (WireType::Json, Value::Object(_) | Value::Array(_)) => {
                    Primitive::String(StringType(wt), v.to_string())
                }
                _ => return Err(mismatch()),
            },
            Family::Blob => {
                let s = v.as_str().ok_or_else(mismatch)?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|_| mismatch())?;
                let kind = if wt == WireType::Image {
                    BlobType::Image
                } else {
                    BlobType::Blob
                };
                Primitive::Blob(kind, bytes)
            }
            Family::Number => Primitive::Number(v.as_f64().ok_or_else(mismatch)?),
            Family::Integer => {
                let i = as_integer(v).ok_or_else(mismatch)?;
                Primitive::Integer(i32::try_from(i).map_err(|_| mismatch())?)
            }
            Family::Long => Primitive::Long(as_integer(v).ok_or_else(mismatch)?),
            Family::Datetime => Primitive::Datetime(as_integer(v).ok_or_else(mismatch)?),
            Family::Boolean => Primitive::Boolean(v.as_bool().ok_or_else(mismatch)?),
            Family::Location => {
                let coord = |k: &str| v.get(k).and_then(Value::as_f64);
                match (coord("latitude"), coord("longitude")) {
                    (Some(latitude), Some(longitude)) => Primitive::Location(Location {
                        longitude,
                        latitude,
                        elevation: coord("elevation").unwrap_or(0.0),
                    }),
                    _ => return Err(mismatch()),
                }
            }
            Family::InfoTable => Primitive::InfoTable(Box::new(InfoTable::from_json(v)?)),
            Family::Variant => Primitive::variant(Self::infer_json(v)?),
            Family::Unsupported => {
                return Err(CodecError::UnsupportedBaseType {
                    offset: 0,
                    name: wt.name(),
                })
            }
        })
    }

    /// Picks a type for an untyped JSON value (used for VARIANT contents).
    pub fn infer_json(v: &Value) -> Result<Self, CodecError> {
        Ok(match v {
            Value::Null => Primitive::Nothing,
            Value::Bool(b) => Primitive::Boolean(*b),
            Value::Number(n) => match n.as_f64() {
                Some(f) => Primitive::Number(f),
                None => return Primitive::from_json(WireType::Long, v),
            },
            Value::String(s) => Primitive::string(s.clone()),
            Value::Object(o) if o.contains_key("rows") => {
                Primitive::InfoTable(Box::new(InfoTable::from_json(v)?))
            }
            Value::Object(o) if o.contains_key("latitude") && o.contains_key("longitude") => {
                Primitive::from_json(WireType::Location, v)?
            }
            Value::Object(_) | Value::Array(_) => {
                Primitive::String(StringType::JSON, v.to_string())
            }
        })
    }
}

/// One level deeper, or `TooDeep` past [`MAX_DEPTH`].
pub(crate) fn deeper(depth: usize, offset: usize) -> Result<usize, CodecError> {
    if depth >= MAX_DEPTH {
        Err(CodecError::TooDeep { offset })
    } else {
        Ok(depth + 1)
    }
}

/// Reads an integral JSON number, also when written as `21.0`.
fn as_integer(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15)
            .map(|f| f as i64)
    })
}

/// A short, secret-free description of a JSON value for error messages.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests;
