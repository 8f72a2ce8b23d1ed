//! JSON and string pairs into Lua values, built through the C API inside one protected call.
//!
//! Through mlua's safe API every string is its own protected call plus a reference slot taken
//! and given back under the VM's lock: building a service call's `headers`, `query` and `data`
//! (four headers, two parameters) was 15 such round trips and 13 % of the sidecar's CPU on the
//! bench's service call (`perf`, 2026-12-07). Here a table is built in one.
//!
//! Only raw sets are used, so no script code (metamethods) runs. A memory error raised while
//! building unwinds (longjmp) out of the closures below into `exec_raw`'s protected call and is
//! returned as an error; that is sound because their frames hold only references and integers,
//! nothing with a destructor.

use super::MAX_DEPTH;
use mlua::{ffi, Lua, Table, Value};
use serde_json::Value as Json;
use std::os::raw::c_int;

/// Converts JSON to a Lua value: null becomes nil, objects and arrays become tables.
pub(crate) fn json_to_lua(lua: &Lua, value: &Json) -> mlua::Result<Value> {
    match value {
        // Scalars need no table: no protected call at all.
        Json::Null => return Ok(Value::Nil),
        Json::Bool(b) => return Ok(Value::Boolean(*b)),
        Json::Number(n) => {
            return Ok(match n.as_i64() {
                Some(i) => Value::Integer(i),
                None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            })
        }
        Json::String(_) | Json::Array(_) | Json::Object(_) => {}
    }
    if nesting(value, 0) > MAX_DEPTH {
        return Err(mlua::Error::runtime(format!(
            "JSON value nested deeper than {MAX_DEPTH} levels"
        )));
    }
    let mut room = true;
    // SAFETY: the closure only pushes onto the stack of `state` (after making room for the
    // deepest nesting, each level holding a table, a key and a value) and sets raw fields of
    // tables it created; see the module doc on errors raised inside it.
    let built: Value = unsafe {
        lua.exec_raw((), |state| {
            // Bounded above by MAX_DEPTH, so the cast cannot truncate.
            room = ffi::lua_checkstack(state, (3 * MAX_DEPTH + 3) as c_int) != 0;
            if room {
                push_json(state, value);
            }
        })?
    };
    if !room {
        return Err(mlua::Error::runtime(
            "no room on the Lua stack for a JSON value",
        ));
    }
    Ok(built)
}

/// Builds a Lua table of string pairs (service `headers` and `query`); later duplicates win.
pub(crate) fn pairs_to_lua(lua: &Lua, pairs: &[(String, String)]) -> mlua::Result<Table> {
    // SAFETY: `exec_raw` makes room for three values: the table, a key and its value; the
    // closure pushes no more than that at a time. See the module doc on errors.
    unsafe {
        lua.exec_raw((), |state| {
            ffi::lua_createtable(state, 0, size_hint(pairs.len()));
            for (k, v) in pairs {
                push_str(state, k);
                push_str(state, v);
                ffi::lua_rawset(state, -3);
            }
        })
    }
}

/// How deeply `value` nests arrays and objects (a scalar at the top is 0).
fn nesting(value: &Json, depth: usize) -> usize {
    if depth > MAX_DEPTH {
        return depth;
    }
    match value {
        Json::Array(items) => items
            .iter()
            .map(|v| nesting(v, depth + 1))
            .max()
            .unwrap_or(depth),
        Json::Object(map) => map
            .values()
            .map(|v| nesting(v, depth + 1))
            .max()
            .unwrap_or(depth),
        _ => depth,
    }
}

/// A table size hint; a wrong one only costs a rehash.
fn size_hint(len: usize) -> c_int {
    c_int::try_from(len).unwrap_or(c_int::MAX)
}

/// # Safety
/// `state` is a live Lua state with room for one more value.
unsafe fn push_str(state: *mut ffi::lua_State, s: &str) {
    // SAFETY: per the function's contract; Lua copies the bytes.
    unsafe { ffi::lua_pushlstring(state, s.as_ptr().cast(), s.len()) };
}

/// Pushes `value`, recursively.
///
/// # Safety
/// `state` is a live Lua state with room for three values per nesting level left in `value`.
unsafe fn push_json(state: *mut ffi::lua_State, value: &Json) {
    // SAFETY: per the function's contract; each level holds at most its table, a key and the
    // value being built, and the value's own level pushes on top of those.
    unsafe {
        match value {
            Json::Null => ffi::lua_pushnil(state),
            Json::Bool(b) => ffi::lua_pushboolean(state, c_int::from(*b)),
            Json::Number(n) => match n.as_i64() {
                Some(i) => ffi::lua_pushinteger(state, i),
                None => ffi::lua_pushnumber(state, n.as_f64().unwrap_or(f64::NAN)),
            },
            Json::String(s) => push_str(state, s),
            Json::Array(items) => {
                ffi::lua_createtable(state, size_hint(items.len()), 0);
                for (i, item) in (1..).zip(items) {
                    push_json(state, item);
                    ffi::lua_rawseti(state, -2, i);
                }
            }
            Json::Object(map) => {
                ffi::lua_createtable(state, 0, size_hint(map.len()));
                for (k, v) in map {
                    push_str(state, k);
                    push_json(state, v);
                    ffi::lua_rawset(state, -3);
                }
            }
        }
    }
}

/// Reads `props[name]` raw and, when it is a table, its raw `value` and `quality` fields, in
/// one protected call (a read-back pass does this for every property after every call).
/// Returns the entry (for the error naming what replaced it), the value and the quality.
pub(crate) fn property_fields(
    lua: &Lua,
    props: &Table,
    name: &str,
) -> mlua::Result<(Value, Value, Value)> {
    // SAFETY: `props` is at index 1; the closure pushes at most three values (entry, field
    // name, field value) at a time, within the room `exec_raw` makes, then leaves exactly
    // entry, value and quality after removing `props`.
    unsafe {
        lua.exec_raw(props, |state| {
            push_str(state, name);
            if ffi::lua_rawget(state, 1) == ffi::LUA_TTABLE {
                push_str(state, "value");
                ffi::lua_rawget(state, 2);
                push_str(state, "quality");
                ffi::lua_rawget(state, 2);
            } else {
                ffi::lua_pushnil(state);
                ffi::lua_pushnil(state);
            }
            ffi::lua_remove(state, 1);
        })
    }
}

/// `table[name]`, raw, in one protected call (mlua's `raw_get` with a `&str` key is two).
pub(crate) fn raw_field(lua: &Lua, table: &Table, name: &str) -> mlua::Result<Value> {
    // SAFETY: `table` is at index 1; the closure pushes one key, replaced by its value, and
    // leaves only that value after removing `table`.
    unsafe {
        lua.exec_raw(table, |state| {
            push_str(state, name);
            ffi::lua_rawget(state, 1);
            ffi::lua_remove(state, 1);
        })
    }
}
