//! JSON <-> Lua value conversion with the LSR conventions (sequences are arrays, other tables
//! objects). Only raw table access is used, so converting never runs script code (metamethods).

use mlua::Value;
use serde_json::Value as Json;

/// Nesting bound: deep or cyclic tables become an error instead of a stack overflow.
const MAX_DEPTH: usize = 64;

mod push;
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
pub(crate) fn lua_to_json(value: &Value, max_bytes: usize) -> Result<Json, String> {
    to_json_within(value, MAX_VALUES, max_bytes)
}

fn to_json_within(value: &Value, max_values: usize, max_bytes: usize) -> Result<Json, String> {
    let mut copied = Copied {
        values: 0,
        bytes: 0,
        max_values,
        max_bytes,
    };
    to_json(value, 0, &mut copied)
}

/// Bytes `value` adds to the JSON text, its own separator included; tables count their
/// brackets here and their contents as those are copied.
fn encoded_len(value: &Value) -> usize {
    1 + match value {
        Value::Nil => 4,
        Value::Boolean(_) => 5,
        Value::Integer(i) => i.unsigned_abs().checked_ilog10().unwrap_or(0) as usize + 2,
        Value::Number(_) => 24,
        // Quotes, and escapes of control characters at most 6 bytes each: counted as 1.
        Value::String(s) => s.as_bytes().len() + 2,
        _ => 2,
    }
}

fn to_json(value: &Value, depth: usize, copied: &mut Copied) -> Result<Json, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "value nested deeper than {MAX_DEPTH} levels (or cyclic)"
        ));
    }
    copied.values += 1;
    copied.bytes += encoded_len(value);
    if copied.values > copied.max_values || copied.bytes > copied.max_bytes {
        return Err(format!(
            "value too large for JSON: over {} values or {} bytes encoded \
             (a table held several times is counted each time; lua.limits.maxResultBytes)",
            copied.max_values, copied.max_bytes
        ));
    }
    match value {
        Value::Nil => Ok(Json::Null),
        Value::Boolean(b) => Ok(Json::Bool(*b)),
        Value::Integer(i) => Ok(Json::from(*i)),
        Value::Number(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| format!("the number {f} cannot be represented in JSON")),
        Value::String(s) => Ok(Json::String(s.to_string_lossy())),
        Value::Table(t) => table_to_json(t, depth, copied),
        v if *v == Value::NULL => Ok(Json::Null),
        other => Err(format!(
            "a {} cannot be converted to JSON",
            other.type_name()
        )),
    }
}

fn table_to_json(table: &mlua::Table, depth: usize, copied: &mut Copied) -> Result<Json, String> {
    let mut entries = Vec::new();
    for pair in table.pairs::<Value, Value>() {
        entries.push(pair.map_err(|e| e.to_string())?);
    }
    let len = table.raw_len();
    // A proper sequence: keys are exactly 1..=len. An empty table becomes an object.
    if len > 0 && entries.len() == len {
        let mut items = Vec::with_capacity(len);
        for i in 1..=len {
            let v: Value = table.raw_get(i).map_err(|e| e.to_string())?;
            items.push(to_json(&v, depth + 1, copied)?);
        }
        return Ok(Json::Array(items));
    }
    let mut map = serde_json::Map::new();
    for (k, v) in entries {
        let key = match &k {
            Value::String(s) => s.to_string_lossy(),
            Value::Integer(i) => i.to_string(),
            Value::Number(f) => f.to_string(),
            Value::Boolean(b) => b.to_string(),
            other => {
                return Err(format!(
                    "a table with a {} key cannot be converted to JSON",
                    other.type_name()
                ))
            }
        };
        copied.bytes += key.len() + 3;
        map.insert(key, to_json(&v, depth + 1, copied)?);
    }
    Ok(Json::Object(map))
}

#[cfg(test)]
mod tests;
