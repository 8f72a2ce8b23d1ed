//! An LSR `config.lua` read as data, for `edgeway-operator import`: the file is a Lua script
//! assigning fields of the `scripts` table, so it is run, in the same sandbox as templates
//! (instruction, time and memory limits; no io, os.execute, require or bytecode) and with the
//! LSR's Lua 5.1 escapes, and what it left in `scripts` comes back as JSON. It runs where the
//! user runs the import (their own file), never in the cluster's operator.

use super::convert::lua_to_json;
use super::dialect::lua51_escapes;
use super::sandbox::{classify, message};
use super::vm::new_vm;
use super::{LuaLimits, ThingError};
use mlua::{ChunkMode, Value};
use serde_json::{Map, Value as Json};
use std::path::Path;
use std::time::Duration;

/// Generous for a settings file, small against a hostile one.
const LIMITS: LuaLimits = LuaLimits {
    instructions: 1_000_000,
    deadline: Duration::from_secs(2),
    memory_bytes: 16 << 20,
    max_result_bytes: 4 << 20,
};

/// The `scripts` table `config.lua` fills, each entry as JSON. Errors name the file, and the
/// line or the `scripts.<key>` that is not data (a function, say).
pub fn read_lsr_config(path: &Path, source: &[u8]) -> Result<Map<String, Json>, String> {
    let shown = path.display();
    let fail = |e: mlua::Error| format!("{shown}: {}", message(&e));
    let (lua, budget, _caller) = new_vm("config.lua", LIMITS).map_err(fail)?;
    let scripts = lua.create_table().map_err(fail)?;
    lua.globals().raw_set("scripts", &scripts).map_err(fail)?;
    let source = lua51_escapes(source);
    budget.arm();
    let run = lua
        .load(source.as_ref())
        .set_name(format!("@{shown}"))
        .set_mode(ChunkMode::Text)
        .exec();
    if let Some(e) = classify("config.lua", &LIMITS, &budget, run.as_ref().err()) {
        return Err(match e {
            ThingError::Script(m) => m,
            other => format!("{shown}: {other} while reading it"),
        });
    }
    // A script may replace the table (`scripts = {...}`): read what the global holds.
    let scripts = match lua.globals().raw_get::<Value>("scripts") {
        Ok(Value::Table(t)) => t,
        _ => return Err(format!("{shown}: `scripts` is no longer a table")),
    };
    let mut out = Map::new();
    for pair in scripts.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(fail)?;
        let key = match &k {
            Value::String(s) => s.to_string_lossy(),
            other => {
                return Err(format!(
                    "{shown}: scripts has a {} key; only names are settings",
                    other.type_name()
                ))
            }
        };
        let json = lua_to_json(&lua, &v, LIMITS.max_result_bytes)
            .map_err(|e| format!("{shown}: scripts.{key}: {e}"))?;
        out.insert(key, json);
    }
    Ok(out)
}
