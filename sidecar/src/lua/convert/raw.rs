//! Lua tables into JSON, read through the C API inside one protected call.
//!
//! Through mlua's safe API every key, value and lookup is a lock of the VM plus a reference
//! slot taken and given back: converting a service's InfoTable result (about 30 values) that
//! way was ~6 µs of mlua bookkeeping per call (`perf`, `bench/run.sh lua`, the LSR-style
//! `Read`), more than the script itself. Here the whole table is walked in one.
//!
//! Only raw reads are used (`lua_next`, `lua_rawgeti`, `lua_rawlen`), so no script code
//! (metamethods) runs, and none of the calls below allocates in the VM or raises a Lua error:
//! nothing unwinds across these frames, which hold Rust values with destructors.

use super::{scalar_to_json, Copied, Scalar, MAX_DEPTH};
use mlua::{ffi, Lua, Value};
use serde_json::Value as Json;
use std::ffi::CStr;
use std::os::raw::c_int;

/// Converts `table` (a `Value::Table`) to JSON within `copied`'s bounds.
pub(super) fn table_to_json(lua: &Lua, table: &Value, copied: &mut Copied) -> Result<Json, String> {
    let mut out = Err(String::from("the table was not converted"));
    // SAFETY: `exec_raw` pushes `table` as the protected call's only argument (index 1); the
    // closure reads it and what it holds with raw, non-allocating calls, makes room before each
    // level's pushes, and leaves the stack empty. See the module doc on errors.
    let ran: mlua::Result<()> = unsafe {
        lua.exec_raw(table, |state| {
            out = to_json(state, 1, 0, copied);
            ffi::lua_settop(state, 0);
        })
    };
    ran.map_err(|e| e.to_string())?;
    out
}

/// The value at `idx` (an absolute index) as JSON.
///
/// # Safety
/// `idx` is a valid absolute index on `state`'s stack.
unsafe fn to_json(
    state: *mut ffi::lua_State,
    idx: c_int,
    depth: usize,
    copied: &mut Copied,
) -> Result<Json, String> {
    if ffi::lua_type(state, idx) == ffi::LUA_TTABLE {
        return table(state, idx, depth, copied);
    }
    scalar_to_json(scalar_at(state, idx), depth, copied)
}

/// The value at `idx` as a [`Scalar`]: the one rule for which Lua types convert, and how, for
/// values and keys alike. A table is `Other("table")`: callers walk tables themselves.
///
/// # Safety
/// `idx` is a valid absolute index on `state`'s stack. A string is read in place (no
/// allocation, no conversion); its bytes live while it stays on the stack.
unsafe fn scalar_at<'a>(state: *mut ffi::lua_State, idx: c_int) -> Scalar<'a> {
    match ffi::lua_type(state, idx) {
        ffi::LUA_TNIL => Scalar::Nil,
        ffi::LUA_TBOOLEAN => Scalar::Bool(ffi::lua_toboolean(state, idx) != 0),
        ffi::LUA_TNUMBER if ffi::lua_isinteger(state, idx) != 0 => {
            Scalar::Int(ffi::lua_tointegerx(state, idx, std::ptr::null_mut()))
        }
        ffi::LUA_TNUMBER => Scalar::Float(ffi::lua_tonumberx(state, idx, std::ptr::null_mut())),
        ffi::LUA_TSTRING => Scalar::Str(string_at(state, idx)),
        // `json.null` (mlua's `Value::NULL`) is the light userdata NULL.
        ffi::LUA_TLIGHTUSERDATA if ffi::lua_touserdata(state, idx).is_null() => Scalar::Nil,
        t => Scalar::Other(type_name(state, t)),
    }
}

/// A table: an array when its keys are exactly `1..=#t` (and it is not empty), else an object.
///
/// # Safety
/// `idx` is a valid absolute index on `state`'s stack holding a table.
unsafe fn table(
    state: *mut ffi::lua_State,
    idx: c_int,
    depth: usize,
    copied: &mut Copied,
) -> Result<Json, String> {
    copied.count(depth, 3)?;
    // A key and a value at a time (and one more for the deepest call's reads).
    if ffi::lua_checkstack(state, 3) == 0 {
        return Err(format!(
            "no room on the Lua stack (value nested deeper than {MAX_DEPTH} levels?)"
        ));
    }
    let len = ffi::lua_rawlen(state, idx);
    let mut entries = 0usize;
    ffi::lua_pushnil(state);
    while ffi::lua_next(state, idx) != 0 {
        entries += 1;
        ffi::lua_settop(state, -2);
    }
    let top = ffi::lua_gettop(state);
    if len > 0 && entries == len {
        let mut items = Vec::with_capacity(len);
        for i in 1..=len {
            ffi::lua_rawgeti(state, idx, i as ffi::lua_Integer);
            let item = to_json(state, top + 1, depth + 1, copied);
            ffi::lua_settop(state, top);
            items.push(item?);
        }
        return Ok(Json::Array(items));
    }
    let mut map = serde_json::Map::new();
    ffi::lua_pushnil(state);
    while ffi::lua_next(state, idx) != 0 {
        // The key at top + 1, its value at top + 2.
        let key = key_text(state, top + 1)?;
        copied.bytes += key.len() + 3;
        let value = to_json(state, top + 2, depth + 1, copied)?;
        map.insert(key, value);
        ffi::lua_settop(state, top + 1);
    }
    Ok(Json::Object(map))
}

/// An object key: strings as they are, numbers and booleans as text.
///
/// # Safety
/// `idx` is a valid absolute index on `state`'s stack. [`scalar_at`] reads a number key as a
/// number, never as text, which would change the key in place and break `lua_next`.
unsafe fn key_text(state: *mut ffi::lua_State, idx: c_int) -> Result<String, String> {
    match scalar_at(state, idx) {
        Scalar::Str(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Scalar::Int(i) => Ok(i.to_string()),
        Scalar::Float(f) => Ok(f.to_string()),
        Scalar::Bool(b) => Ok(b.to_string()),
        // A nil key cannot exist; the light userdata `json.null` can.
        Scalar::Nil => Err("a table with a json.null key cannot be converted to JSON".into()),
        Scalar::Other(name) => Err(format!(
            "a table with a {name} key cannot be converted to JSON"
        )),
    }
}

/// The bytes of the string at `idx`, valid while it stays on the stack.
///
/// # Safety
/// The value at `idx` is a string.
unsafe fn string_at<'a>(state: *mut ffi::lua_State, idx: c_int) -> &'a [u8] {
    let mut len = 0usize;
    let ptr = ffi::lua_tolstring(state, idx, &mut len);
    std::slice::from_raw_parts(ptr.cast::<u8>(), len)
}

/// Lua's name of type `t` ("function", "userdata", "thread").
///
/// # Safety
/// `t` is a type tag `lua_type` returned.
unsafe fn type_name<'a>(state: *mut ffi::lua_State, t: c_int) -> &'a str {
    CStr::from_ptr(ffi::lua_typename(state, t))
        .to_str()
        .unwrap_or("value")
}
