//! Events in templates: `eventDefinitions.X(input{...}, description "...")` declares event X
//! and the fields of its data (as the SDK's `TW_EVENT` declares a data shape), and
//! `me:fireEvent("X", {field = value, ...})` fires it from a service or task.
//!
//! `fireEvent` is a C function: it copies the data with the same bound as results
//! (`LuaLimits::max_result_bytes`), checks it against the definition (unknown event or field,
//! a value not of the field's type: a Lua error at the caller's line), and hands it to the
//! [`EventHub`]'s sink, the tunnel's acknowledged outbox. Without a tunnel it returns
//! `false, "no platform tunnel is configured"`, so templates also run without a platform.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use mlua::{Lua, Table, Value, Variadic};
use serde_json::Value as Json;

use super::convert::lua_to_json;
use super::sandbox::caller_location;
use super::{now_ms, EventDef, EventHub, FiredEvent, ServiceDef};

/// Event definitions recorded while the template runs, by name, with their location.
pub(crate) type RecordedEvents = Arc<Mutex<BTreeMap<String, EventDef>>>;

/// Installs `eventDefinitions` (recording into `recorded`); `parse` reads one definition's
/// arguments as for services.
pub(crate) fn install_definitions(
    lua: &Lua,
    recorded: &RecordedEvents,
    parse: fn(&str, &[Value]) -> Result<ServiceDef, String>,
) -> mlua::Result<()> {
    let recorded = Arc::clone(recorded);
    let index = lua.create_function(move |lua, (_, name): (Value, String)| {
        let recorded = Arc::clone(&recorded);
        lua.create_function(move |lua, args: Variadic<Value>| {
            let location = caller_location(lua);
            let def = parse(&name, &args)
                .and_then(|s| match s.output {
                    Some(_) => Err("an event has no output{...}".to_owned()),
                    None => Ok(EventDef {
                        name: s.name,
                        fields: s.inputs,
                        description: s.description,
                    }),
                })
                .map_err(|e| mlua::Error::runtime(format!("{location} event {name:?}: {e}")))?;
            recorded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name.clone(), def);
            Ok(())
        })
    })?;
    let defs = lua.create_table()?;
    let meta = lua.create_table()?;
    meta.raw_set("__index", index)?;
    defs.set_metatable(Some(meta))?;
    lua.globals().raw_set("eventDefinitions", defs)
}

/// Sets `me.fireEvent` on `me`.
pub(crate) fn install_fire(
    lua: &Lua,
    me: &Table,
    defs: &RecordedEvents,
    hub: &EventHub,
    max_bytes: usize,
) -> mlua::Result<()> {
    let (defs, hub) = (Arc::clone(defs), Arc::clone(hub));
    let fire = lua.create_function(
        move |lua, (me, name, data): (Table, String, Option<Table>)| {
            let fail = |msg: String| {
                let at = caller_location(lua);
                mlua::Error::runtime(format!("{at} fireEvent {name:?}: {msg}"))
            };
            let thing: String = me.raw_get("name")?;
            let def = defs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&name)
                .cloned()
                .ok_or_else(|| fail("not defined in eventDefinitions".to_owned()))?;
            let data = match data {
                Some(t) => lua_to_json(lua, &Value::Table(t), max_bytes).map_err(fail)?,
                None => Json::Object(Default::default()),
            };
            let data = checked(&def, data).map_err(fail)?;
            let Some(sink) = hub.get() else {
                return Ok((false, Some("no platform tunnel is configured".to_owned())));
            };
            sink(FiredEvent {
                thing,
                event: name.clone(),
                data,
                time_ms: now_ms(),
            });
            Ok((true, None))
        },
    )?;
    me.raw_set("fireEvent", fire)
}

/// Sets `server.fireEvent(name, data)` when the `lsr` library made a `server` table: the LSR's
/// way to fire an event (docs/research/lsr-framework.md). `data` is an InfoTable table (its
/// first row is the event's data) or a table of fields; nothing is declared, so fields are not
/// checked. Returns what a service returns: `200`, or `503` and why without a tunnel.
pub(crate) fn install_server_fire(
    lua: &Lua,
    me: &Table,
    hub: &EventHub,
    max_bytes: usize,
) -> mlua::Result<()> {
    let Ok(Value::Table(server)) = lua.globals().raw_get::<Value>("server") else {
        return Ok(());
    };
    let (me, hub) = (me.clone(), Arc::clone(hub));
    let fire = lua.create_function(move |lua, (name, data): (String, Option<Table>)| {
        let fail = |msg: String| {
            let at = caller_location(lua);
            mlua::Error::runtime(format!("{at} server.fireEvent {name:?}: {msg}"))
        };
        let thing: String = me.raw_get("name")?;
        let data = match data {
            Some(t) => lua_to_json(lua, &Value::Table(t), max_bytes).map_err(fail)?,
            None => Json::Object(Default::default()),
        };
        let data = match data {
            Json::Object(mut o) if o.contains_key("rows") => match o.remove("rows") {
                Some(Json::Array(rows)) => match rows.into_iter().next() {
                    Some(Json::Object(row)) => row,
                    None => serde_json::Map::new(),
                    Some(other) => return Err(fail(format!("a row must be a table, not {other}"))),
                },
                _ => serde_json::Map::new(),
            },
            Json::Object(o) => o,
            Json::Array(a) if a.is_empty() => serde_json::Map::new(),
            other => return Err(fail(format!("data must be a table, not {other}"))),
        };
        let Some(sink) = hub.get() else {
            return Ok((503, Some("no platform tunnel is configured".to_owned())));
        };
        sink(FiredEvent {
            thing,
            event: name.clone(),
            data,
            time_ms: now_ms(),
        });
        Ok((200, None))
    })?;
    server.raw_set("fireEvent", fire)
}

/// The data as a JSON object with each declared field coerced to its type; an empty Lua table
/// converts to an empty array, which counts as no fields.
fn checked(def: &EventDef, data: Json) -> Result<serde_json::Map<String, Json>, String> {
    let obj = match data {
        Json::Object(m) => m,
        Json::Array(a) if a.is_empty() => serde_json::Map::new(),
        other => return Err(format!("data must be a table of fields, not {other}")),
    };
    let mut out = serde_json::Map::new();
    for (k, v) in obj {
        let field = def
            .fields
            .iter()
            .find(|f| f.name == k)
            .ok_or_else(|| format!("no field {k:?} in its definition"))?;
        let v = field
            .base_type
            .coerce_json(&v)
            .map_err(|_| format!("field {k:?} is not a {}", field.base_type))?;
        out.insert(k, v);
    }
    Ok(out)
}
