//! JSON <-> Lua value conversion with the LSR conventions (sequences are arrays, other tables
//! objects). Only raw table access is used, so converting never runs script code (metamethods).

use mlua::{Lua, Value};
use serde_json::Value as Json;

/// Nesting bound: deep or cyclic tables become an error instead of a stack overflow.
const MAX_DEPTH: usize = 64;

mod push;
mod raw;
pub(crate) use push::{json_to_lua, pairs_to_lua, property_fields, raw_field};

/// Values one conversion may copy. A table may hold the same subtable many times
/// (`t = {t, t}` doubles per level), so the JSON can be exponentially bigger than the Lua
/// value, which the memory limit does not see: values are counted as copied.
const MAX_VALUES: usize = 8_000_000;

/// What a conversion has copied so far, and its bounds.
struct Copied {
    values: usize,
    bytes: usize,
    max_values: usize,
    max_bytes: usize,
}

/// Converts a Lua value to JSON; functions, userdata, threads and non-finite numbers are errors.
/// `max_bytes` bounds the JSON text the value encodes to (`LuaLimits::max_result_bytes`): 250
/// references to one 1 MiB string are 250 KiB of Lua and 262 MB of JSON.
pub(crate) fn lua_to_json(lua: &Lua, value: &Value, max_bytes: usize) -> Result<Json, String> {
    to_json_within(lua, value, MAX_VALUES, max_bytes)
}

fn to_json_within(
    lua: &Lua,
    value: &Value,
    max_values: usize,
    max_bytes: usize,
) -> Result<Json, String> {
    let mut copied = Copied {
        values: 0,
        bytes: 0,
        max_values,
        max_bytes,
    };
    let bytes;
    let scalar = match value {
        Value::Table(_) => return raw::table_to_json(lua, value, &mut copied),
        Value::Nil => Scalar::Nil,
        Value::Boolean(b) => Scalar::Bool(*b),
        Value::Integer(i) => Scalar::Int(*i),
        Value::Number(f) => Scalar::Float(*f),
        Value::String(s) => {
            bytes = s.as_bytes();
            Scalar::Str(&bytes)
        }
        v if *v == Value::NULL => Scalar::Nil,
        other => Scalar::Other(other.type_name()),
    };
    scalar_to_json(scalar, 0, &mut copied)
}

/// A value that is not a table, as both the `Value` and the stack paths see it.
enum Scalar<'a> {
    /// nil, or the light userdata `NULL` (`json.null`).
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a [u8]),
    /// Any other type, by name: not convertible.
    Other(&'a str),
}

impl Copied {
    /// Counts one value of `len` encoded bytes (its separator included) at `depth`.
    fn count(&mut self, depth: usize, len: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "value nested deeper than {MAX_DEPTH} levels (or cyclic)"
            ));
        }
        self.values += 1;
        self.bytes += len;
        if self.values > self.max_values || self.bytes > self.max_bytes {
            return Err(format!(
                "value too large for JSON: over {} values or {} bytes encoded \
                 (a table held several times is counted each time; lua.limits.maxResultBytes)",
                self.max_values, self.max_bytes
            ));
        }
        Ok(())
    }
}

/// Bytes a scalar adds to the JSON text, its own separator included. Tables count 3 for their
/// brackets here and their contents as those are copied.
fn encoded_len(s: &Scalar) -> usize {
    1 + match s {
        Scalar::Nil => 4,
        Scalar::Bool(_) => 5,
        Scalar::Int(i) => i.unsigned_abs().checked_ilog10().unwrap_or(0) as usize + 2,
        Scalar::Float(_) => 24,
        // Quotes, and escapes of control characters at most 6 bytes each: counted as 1.
        Scalar::Str(b) => b.len() + 2,
        Scalar::Other(_) => 2,
    }
}

fn scalar_to_json(s: Scalar, depth: usize, copied: &mut Copied) -> Result<Json, String> {
    copied.count(depth, encoded_len(&s))?;
    match s {
        Scalar::Nil => Ok(Json::Null),
        Scalar::Bool(b) => Ok(Json::Bool(b)),
        Scalar::Int(i) => Ok(Json::from(i)),
        Scalar::Float(f) => serde_json::Number::from_f64(f)
            .map(Json::Number)
            .ok_or_else(|| format!("the number {f} cannot be represented in JSON")),
        Scalar::Str(b) => Ok(Json::String(String::from_utf8_lossy(b).into_owned())),
        Scalar::Other(name) => Err(format!("a {name} cannot be converted to JSON")),
    }
}

#[cfg(test)]
mod tests;
