//! ThingWorx base types: the type system shared by Lua things, the REST API and the AlwaysOn codec.

use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// A ThingWorx base type, named as the platform and the Edge SDKs name it.
// The variants are the platform's own type names; a doc line each would only repeat them.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BaseType {
    Nothing,
    String,
    Number,
    Integer,
    Long,
    Boolean,
    Datetime,
    Timespan,
    Infotable,
    Location,
    Xml,
    Json,
    Query,
    Image,
    Hyperlink,
    Imagelink,
    Password,
    Html,
    Text,
    Tags,
    Variant,
    Guid,
    Blob,
    Thingname,
    Propertyname,
    Servicename,
    Eventname,
    Thingshapename,
    Thingtemplatename,
    Datashapename,
    Mashupname,
    Menuname,
    Username,
    Groupname,
}

/// Every base type with its canonical name, so parsing and printing share one table.
const NAMES: &[(BaseType, &str)] = &[
    (BaseType::Nothing, "NOTHING"),
    (BaseType::String, "STRING"),
    (BaseType::Number, "NUMBER"),
    (BaseType::Integer, "INTEGER"),
    (BaseType::Long, "LONG"),
    (BaseType::Boolean, "BOOLEAN"),
    (BaseType::Datetime, "DATETIME"),
    (BaseType::Timespan, "TIMESPAN"),
    (BaseType::Infotable, "INFOTABLE"),
    (BaseType::Location, "LOCATION"),
    (BaseType::Xml, "XML"),
    (BaseType::Json, "JSON"),
    (BaseType::Query, "QUERY"),
    (BaseType::Image, "IMAGE"),
    (BaseType::Hyperlink, "HYPERLINK"),
    (BaseType::Imagelink, "IMAGELINK"),
    (BaseType::Password, "PASSWORD"),
    (BaseType::Html, "HTML"),
    (BaseType::Text, "TEXT"),
    (BaseType::Tags, "TAGS"),
    (BaseType::Variant, "VARIANT"),
    (BaseType::Guid, "GUID"),
    (BaseType::Blob, "BLOB"),
    (BaseType::Thingname, "THINGNAME"),
    (BaseType::Propertyname, "PROPERTYNAME"),
    (BaseType::Servicename, "SERVICENAME"),
    (BaseType::Eventname, "EVENTNAME"),
    (BaseType::Thingshapename, "THINGSHAPENAME"),
    (BaseType::Thingtemplatename, "THINGTEMPLATENAME"),
    (BaseType::Datashapename, "DATASHAPENAME"),
    (BaseType::Mashupname, "MASHUPNAME"),
    (BaseType::Menuname, "MENUNAME"),
    (BaseType::Username, "USERNAME"),
    (BaseType::Groupname, "GROUPNAME"),
];

/// An InfoTable object with `rows` an array and `fieldDefinitions` an object even when empty
/// (a Lua table converts an empty one to `{}` or `[]` alike).
fn canonical_infotable(o: &serde_json::Map<String, Value>) -> Value {
    let mut o = o.clone();
    if o.get("rows")
        .is_some_and(|r| r.as_object().is_some_and(|m| m.is_empty()))
    {
        o.insert("rows".into(), Value::Array(Vec::new()));
    }
    if let Some(Value::Object(shape)) = o.get_mut("dataShape") {
        if shape
            .get("fieldDefinitions")
            .is_some_and(|f| f.as_array().is_some_and(|a| a.is_empty()))
        {
            shape.insert("fieldDefinitions".into(), Value::Object(Default::default()));
        }
    }
    Value::Object(o)
}

/// A value that does not fit a base type; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, got {got}")]
pub struct TypeMismatch {
    /// The base type that was expected.
    pub expected: BaseType,
    /// A short description of what was given instead.
    pub got: String,
}

/// An unknown base type name, e.g. in a Lua template or a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown base type {0:?} (expected one of STRING, NUMBER, INTEGER, LONG, BOOLEAN, DATETIME, LOCATION, JSON, INFOTABLE, VARIANT, TEXT, ...)")]
pub struct UnknownBaseType(pub String);

impl BaseType {
    /// The canonical upper-case name, as used on the wire and in REST data shapes.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(t, _)| *t == self)
            .map(|(_, n)| *n)
            .unwrap_or("NOTHING")
    }

    /// All base types, for exhaustive tests and documentation.
    pub fn all() -> impl Iterator<Item = BaseType> {
        NAMES.iter().map(|(t, _)| *t)
    }

    /// The value a property of this type holds when its template gives none.
    pub fn default_value(self) -> Value {
        match self {
            BaseType::Number | BaseType::Integer | BaseType::Long | BaseType::Datetime => {
                Value::from(0)
            }
            BaseType::Timespan => Value::from(0),
            BaseType::Boolean => Value::Bool(false),
            BaseType::Json => Value::Object(Default::default()),
            BaseType::Location => {
                serde_json::json!({"latitude": 0.0, "longitude": 0.0, "elevation": 0.0})
            }
            BaseType::Nothing | BaseType::Variant | BaseType::Infotable => Value::Null,
            _ => Value::String(String::new()),
        }
    }

    /// Checks a JSON value against this type and returns it in canonical form
    /// (integers as integers, locations with all three coordinates).
    pub fn coerce_json(self, value: &Value) -> Result<Value, TypeMismatch> {
        let mismatch = || TypeMismatch {
            expected: self,
            got: describe(value),
        };
        match self {
            BaseType::Nothing => Ok(Value::Null),
            BaseType::Variant => Ok(value.clone()),
            BaseType::Number => value
                .as_f64()
                .filter(|f| f.is_finite())
                .map(|_| value.clone())
                .ok_or_else(mismatch),
            BaseType::Integer => as_integer(value)
                .filter(|i| i32::try_from(*i).is_ok())
                .map(Value::from)
                .ok_or_else(mismatch),
            BaseType::Long | BaseType::Datetime | BaseType::Timespan => {
                as_integer(value).map(Value::from).ok_or_else(mismatch)
            }
            BaseType::Boolean => value.as_bool().map(Value::Bool).ok_or_else(mismatch),
            // JSON text in a string is the JSON it holds: LSR templates and REST clients
            // write `value = "{}"` (the LSR sample's InMemory_Json does).
            BaseType::Json => match value {
                Value::Object(_) | Value::Array(_) => Ok(value.clone()),
                Value::String(text) => match serde_json::from_str::<Value>(text) {
                    Ok(v @ (Value::Object(_) | Value::Array(_))) => Ok(v),
                    _ => Err(TypeMismatch {
                        expected: self,
                        got: "a string that is no JSON object or array".into(),
                    }),
                },
                _ => Err(mismatch()),
            },
            BaseType::Infotable => match value {
                Value::Object(o) if o.contains_key("rows") => Ok(canonical_infotable(o)),
                _ => Err(mismatch()),
            },
            BaseType::Location => {
                let coord = |k: &str| value.get(k).and_then(Value::as_f64);
                match (coord("latitude"), coord("longitude")) {
                    (Some(lat), Some(lon)) => Ok(serde_json::json!({
                        "latitude": lat,
                        "longitude": lon,
                        "elevation": coord("elevation").unwrap_or(0.0),
                    })),
                    _ => Err(mismatch()),
                }
            }
            _ => value
                .as_str()
                .map(|s| Value::String(s.to_owned()))
                .ok_or_else(mismatch),
        }
    }
}

/// Reads an integral JSON number, also when written as `21.0`.
fn as_integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15)
            .map(|f| f as i64)
    })
}

/// A short, secret-free description of a JSON value for error messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

impl fmt::Display for BaseType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BaseType {
    type Err = UnknownBaseType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(s))
            .map(|(t, _)| *t)
            .ok_or_else(|| UnknownBaseType(s.to_owned()))
    }
}

impl serde::Serialize for BaseType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for BaseType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The quality of a property value, as ThingWorx records it beside value and time.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Quality {
    /// The value is current and trusted.
    #[default]
    Good,
    /// The value is known to be wrong.
    Bad,
    /// The value may be stale or imprecise.
    Uncertain,
    /// Nothing is known about the value.
    Unknown,
}

impl Quality {
    /// The wire spelling: `GOOD`, `BAD`, `UNCERTAIN`, `UNKNOWN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "GOOD",
            Quality::Bad => "BAD",
            Quality::Uncertain => "UNCERTAIN",
            Quality::Unknown => "UNKNOWN",
        }
    }

    /// Parses the wire spelling (case-insensitive); anything else is `Unknown`.
    pub fn parse(s: &str) -> Quality {
        match s.to_ascii_uppercase().as_str() {
            "GOOD" => Quality::Good,
            "BAD" => Quality::Bad,
            "UNCERTAIN" => Quality::Uncertain,
            _ => Quality::Unknown,
        }
    }
}

impl schemars::JsonSchema for BaseType {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BaseType".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = NAMES.iter().map(|(_, n)| *n).collect();
        schemars::json_schema!({ "type": "string", "enum": names })
    }
}

#[cfg(test)]
mod tests;
