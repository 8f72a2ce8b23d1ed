//! Running an LSR template in a fresh VM: the LSR globals (`properties`, `serviceDefinitions`,
//! `input{}`, `module()`, ...) and turning what the script defined into typed definitions.

use super::convert::{json_to_lua, lua_to_json, raw_field};
use super::dialect::{lua51_escapes, Dialect};
use super::events::{install_definitions, install_fire, install_server_fire, RecordedEvents};
use super::links::{self, Link};
use super::sandbox::{caller_location, classify, message, Budget};
use super::{
    EventDef, EventHub, FieldDef, LuaLimits, PropertyDef, PushType, ServiceDef, ThingError,
};
use edgeway_protocol::basetype::BaseType;
use mlua::{ChunkMode, Function, Lua, Table, Value, Variadic};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// The script-side handles and the definitions a template produced for one thing.
pub(crate) struct Instance {
    /// The `properties` table (also `me.properties`).
    pub props: Table,
    /// The `services` table.
    pub services: Table,
    /// The `tasks` table.
    pub tasks: Table,
    /// The `me` argument passed to services and tasks.
    pub me: Table,
    /// Property definitions (sorted by name) with their initial, coerced values.
    pub properties: Vec<(PropertyDef, Json)>,
    /// Service definitions, sorted by name.
    pub service_defs: Vec<ServiceDef>,
    /// Event definitions, sorted by name.
    pub event_defs: Vec<EventDef>,
    /// Whether the template defines any task.
    pub has_tasks: bool,
    /// Properties whose value lives in another thing (`script`/`http` handlers).
    pub links: Vec<Link>,
}

/// Where each property / service definition was made (`path:line:`), for load errors.
type Locations = Arc<Mutex<HashMap<String, String>>>;
/// Service definitions recorded by `serviceDefinitions.X(...)`, with their location.
type Recorded = Arc<Mutex<BTreeMap<String, (ServiceDef, String)>>>;

/// Executes `source` (the template at `path`) in `lua` and collects its definitions.
/// Errors are messages starting with `path:line:` where the line is known.
#[allow(clippy::too_many_arguments)]
pub(crate) fn instantiate(
    lua: &Lua,
    budget: &Budget,
    limits: &LuaLimits,
    thing: &str,
    template: &str,
    path: &Path,
    source: &[u8],
    events: &EventHub,
) -> Result<Instance, String> {
    let setup = |e: mlua::Error| {
        format!(
            "{}: setting up the template: {}",
            path.display(),
            message(&e)
        )
    };
    let globals = lua.globals();
    let props = lua.create_table().map_err(setup)?;
    let services = lua.create_table().map_err(setup)?;
    let tasks = lua.create_table().map_err(setup)?;
    let prop_lines: Locations = Arc::default();
    let recorded: Recorded = Arc::default();
    install_globals(lua, &props, &services, &tasks, &prop_lines, &recorded).map_err(setup)?;
    let recorded_events: RecordedEvents = Arc::default();
    install_definitions(lua, &recorded_events, parse_service_def).map_err(setup)?;

    refuse_to_be_closed(path, source)?;
    budget.arm();
    let run = lua
        .load(source)
        .set_name(format!("@{}", path.display()))
        .set_mode(ChunkMode::Text)
        .exec();
    if let Some(e) = classify(thing, limits, budget, run.as_ref().err()) {
        let msg = match e {
            ThingError::Script(m) => m,
            other => format!("{other} while running the template"),
        };
        return Err(prefix_path(path, msg));
    }
    props.set_metatable(None).map_err(setup)?;

    // A script may replace the tables wholesale (`properties = {...}`); use what it left.
    let props = match globals.raw_get::<Value>("properties") {
        Ok(Value::Table(t)) => t,
        _ => props,
    };
    let services = table_global(&globals, "services", services, path)?;
    let tasks = table_global(&globals, "tasks", tasks, path)?;
    let me = lua.create_table().map_err(setup)?;
    me.raw_set("name", thing).map_err(setup)?;
    me.raw_set("template", template).map_err(setup)?;
    me.raw_set("properties", &props).map_err(setup)?;
    install_fire(lua, &me, &recorded_events, events, limits.max_result_bytes).map_err(setup)?;
    install_server_fire(lua, &me, events, limits.max_result_bytes).map_err(setup)?;
    // The `lsr` library's thing methods (`me:setProperty`, ...), when it is loaded.
    if let Ok(Value::Table(methods)) = globals.raw_get::<Value>("__lsr_thing") {
        let meta = lua.create_table().map_err(setup)?;
        meta.raw_set("__index", methods).map_err(setup)?;
        me.set_metatable(Some(meta)).map_err(setup)?;
    }

    let lines = prop_lines
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    // The `lsr` library fills what the LSR framework fills before the properties are read
    // (an INFOTABLE's empty table of its `dataShape`, a LOCATION's zeros).
    if let Ok(Value::Function(defaults)) = globals.raw_get::<Value>("__lsr_defaults") {
        budget.arm();
        let run = defaults.call::<()>(&props);
        if let Some(e) = classify(thing, limits, budget, run.as_ref().err()) {
            return Err(prefix_path(path, e.to_string()));
        }
    }
    let properties = property_defs(lua, &props, &lines, path, limits)?;
    let recorded = std::mem::take(&mut *recorded.lock().unwrap_or_else(PoisonError::into_inner));
    let service_defs = service_defs(&services, recorded, path)?;
    let links = lsr_handlers(lua, &props, &tasks, thing, path)?;
    let mut has_tasks = false;
    for pair in tasks.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(setup)?;
        if !matches!(v, Value::Function(_)) {
            return Err(format!(
                "{}: tasks.{} must be a function, not a {}",
                path.display(),
                key_name(&k),
                v.type_name()
            ));
        }
        has_tasks = true;
    }
    let event_defs = recorded_events
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .cloned()
        .collect();
    Ok(Instance {
        props,
        services,
        tasks,
        me,
        properties,
        service_defs,
        event_defs,
        has_tasks,
        links,
    })
}

/// Lua errors carry `path:line:` already; errors from elsewhere get the path at least.
/// Refuses `<close>` variables, naming file and line: Lua runs their `__close` handlers outside
/// the instruction and deadline limits when an error unwinds them.
fn refuse_to_be_closed(path: &Path, source: &[u8]) -> Result<(), String> {
    match super::to_be_closed::find(source) {
        Some(line) => Err(format!(
            "{}:{line}: to-be-closed variables (<close>) are not allowed in the sandbox: Lua runs \
             their __close handlers outside the instruction and deadline limits when an error \
             unwinds them",
            path.display()
        )),
        None => Ok(()),
    }
}

/// Most memory compiling one template may take (a 1 MiB script, the most a ConfigMap holds,
/// compiles in a few MiB).
const COMPILE_MEMORY: usize = 64 << 20;

/// Checks a template without running any of it: the load-time refusals, then compiling the
/// text in a bare VM with no libraries, whose function is never called. This is all the
/// operator does with tenant scripts; what their top-level code does shows when the sidecar
/// loads them. Errors start with `path:line:` where the line is known.
pub fn check(path: &Path, source: &[u8], dialect: Dialect) -> Result<(), String> {
    let source = match dialect {
        Dialect::Lsr => lua51_escapes(source),
        Dialect::Lua54 => std::borrow::Cow::Borrowed(source),
    };
    let source = source.as_ref();
    refuse_to_be_closed(path, source)?;
    let compile = |e: mlua::Error| prefix_path(path, message(&e));
    let lua = Lua::new_with(mlua::StdLib::NONE, mlua::LuaOptions::default()).map_err(compile)?;
    lua.set_memory_limit(COMPILE_MEMORY).map_err(compile)?;
    lua.load(source)
        .set_name(format!("@{}", path.display()))
        .set_mode(ChunkMode::Text)
        .into_function()
        .map(drop)
        .map_err(compile)
}

fn prefix_path(path: &Path, msg: String) -> String {
    let shown = path.display().to_string();
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
    let has_path = msg.contains(&shown) || file.is_some_and(|f| msg.contains(&f));
    if has_path {
        msg
    } else {
        format!("{shown}: {msg}")
    }
}

fn table_global(
    globals: &Table,
    name: &str,
    fallback: Table,
    path: &Path,
) -> Result<Table, String> {
    match globals.raw_get::<Value>(name) {
        Ok(Value::Table(t)) => Ok(t),
        Ok(Value::Nil) => Ok(fallback),
        Ok(other) => Err(format!(
            "{}: global {name} must be a table, not a {}",
            path.display(),
            other.type_name()
        )),
        Err(e) => Err(format!("{}: {}", path.display(), message(&e))),
    }
}

/// Installs the LSR globals the template script expects.
fn install_globals(
    lua: &Lua,
    props: &Table,
    services: &Table,
    tasks: &Table,
    prop_lines: &Locations,
    recorded: &Recorded,
) -> mlua::Result<()> {
    let globals = lua.globals();
    globals.raw_set("services", services)?;
    globals.raw_set("tasks", tasks)?;

    // While the template runs, remember where each property is first assigned.
    let lines = Arc::clone(prop_lines);
    let newindex = lua.create_function(move |lua, (t, k, v): (Table, Value, Value)| {
        if let Value::String(s) = &k {
            lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(s.to_string_lossy())
                .or_insert_with(|| caller_location(lua));
        }
        t.raw_set(k, v)
    })?;
    let meta = lua.create_table()?;
    meta.raw_set("__newindex", newindex)?;
    props.set_metatable(Some(meta))?;
    globals.raw_set("properties", props)?;

    // `serviceDefinitions.X(...)`: indexing yields a recorder for service X.
    let recorded = Arc::clone(recorded);
    let index = lua.create_function(move |lua, (_, name): (Value, String)| {
        let recorded = Arc::clone(&recorded);
        lua.create_function(move |lua, args: Variadic<Value>| {
            let location = caller_location(lua);
            let def = parse_service_def(&name, &args)
                .map_err(|e| mlua::Error::runtime(format!("{location} service {name:?}: {e}")))?;
            recorded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name.clone(), (def, location));
            Ok(())
        })
    })?;
    let defs = lua.create_table()?;
    let meta = lua.create_table()?;
    meta.raw_set("__index", index)?;
    defs.set_metatable(Some(meta))?;
    globals.raw_set("serviceDefinitions", defs)?;

    for kind in ["input", "output", "description"] {
        let tag = lua.create_function(move |lua, spec: Value| {
            let t = lua.create_table()?;
            t.raw_set("kind", kind)?;
            t.raw_set("spec", spec)?;
            Ok(t)
        })?;
        globals.raw_set(kind, tag)?;
    }

    // LSR boilerplate: `module("templates.x", thingworx.template.extend)` is accepted and ignored.
    let noop = lua.create_function(|_, _: Variadic<Value>| Ok(()))?;
    let template = lua.create_table()?;
    template.raw_set("extend", &noop)?;
    let thingworx = lua.create_table()?;
    thingworx.raw_set("template", template)?;
    globals.raw_set("thingworx", thingworx)?;
    globals.raw_set("module", noop)?;
    Ok(())
}

/// Parses the `input{...}`, `output{...}`, `description{...}` arguments of one definition.
fn parse_service_def(name: &str, args: &[Value]) -> Result<ServiceDef, String> {
    let mut def = ServiceDef {
        name: name.to_owned(),
        inputs: Vec::new(),
        output: None,
        description: String::new(),
    };
    for (i, arg) in args.iter().enumerate() {
        let tagged = match arg {
            Value::Table(t) => t,
            other => {
                return Err(format!(
                "argument {} must be input{{...}}, output{{...}} or description{{...}}, not a {}",
                i + 1,
                other.type_name()
            ))
            }
        };
        let kind: String = tagged
            .raw_get::<Option<String>>("kind")
            .ok()
            .flatten()
            .unwrap_or_default();
        let spec: Value = tagged.raw_get("spec").map_err(|e| e.to_string())?;
        match (kind.as_str(), spec) {
            ("description", Value::String(s)) => def.description = s.to_string_lossy(),
            ("description", Value::Table(t)) => {
                def.description = opt_string(&t, 1)?.unwrap_or_default();
            }
            ("input", Value::Table(t)) => {
                let input_name = opt_string(&t, "name")?
                    .ok_or_else(|| format!("input {} has no name", i + 1))?;
                let field = field_def(&t, input_name)?;
                def.inputs.push(field);
            }
            ("output", Value::Table(t)) => {
                let out_name = opt_string(&t, "name")?.unwrap_or_else(|| "result".into());
                def.output = Some(field_def(&t, out_name)?);
            }
            ("input" | "output" | "description", other) => {
                return Err(format!(
                    "{kind} expects a table, not a {}",
                    other.type_name()
                ))
            }
            _ => {
                return Err(format!(
                    "argument {} must be input{{...}}, output{{...}} or description{{...}}",
                    i + 1
                ))
            }
        }
    }
    Ok(def)
}

fn field_def(t: &Table, name: String) -> Result<FieldDef, String> {
    let type_name =
        opt_string(t, "baseType")?.ok_or_else(|| format!("{name:?} has no baseType"))?;
    let base_type = type_name
        .parse::<BaseType>()
        .map_err(|e| format!("{name:?}: {e}"))?;
    Ok(FieldDef {
        name,
        base_type,
        description: opt_string(t, "description")?.unwrap_or_default(),
    })
}

/// Reads an optional string field; numbers are accepted and written as text.
fn opt_string(
    t: &Table,
    key: impl mlua::IntoLua + Copy + std::fmt::Debug,
) -> Result<Option<String>, String> {
    match t.raw_get::<Value>(key).map_err(|e| e.to_string())? {
        Value::Nil => Ok(None),
        Value::String(s) => Ok(Some(s.to_string_lossy())),
        Value::Integer(i) => Ok(Some(i.to_string())),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(format!(
            "field {key:?} must be a string, not a {}",
            other.type_name()
        )),
    }
}

fn key_name(k: &Value) -> String {
    match k {
        Value::String(s) => s.to_string_lossy(),
        other => format!("<{}>", other.type_name()),
    }
}

/// Parses every entry of `properties`, fills in missing default values, sorted by name.
fn property_defs(
    lua: &Lua,
    props: &Table,
    lines: &HashMap<String, String>,
    path: &Path,
    limits: &LuaLimits,
) -> Result<Vec<(PropertyDef, Json)>, String> {
    let mut entries = Vec::new();
    for pair in props.pairs::<Value, Value>() {
        entries.push(pair.map_err(|e| format!("{}: {}", path.display(), message(&e)))?);
    }
    let mut out = Vec::new();
    for (k, v) in entries {
        let name = match &k {
            Value::String(s) => s.to_string_lossy(),
            other => {
                return Err(format!(
                    "{}: properties keys must be strings, found a {}",
                    path.display(),
                    other.type_name()
                ))
            }
        };
        let loc = lines
            .get(&name)
            .cloned()
            .unwrap_or_else(|| format!("{}:", path.display()));
        let fail = |e: String| format!("{loc} property {name:?}: {e}");
        let t = match v {
            Value::Table(t) => t,
            other => {
                return Err(fail(format!(
                    "must be a table, not a {}",
                    other.type_name()
                )))
            }
        };
        let type_name = opt_string(&t, "baseType")
            .map_err(fail)?
            .ok_or_else(|| fail("has no baseType".into()))?;
        let base_type = type_name
            .parse::<BaseType>()
            .map_err(|e| fail(e.to_string()))?;
        let push_type = match opt_string(&t, "pushType").map_err(fail)? {
            None => PushType::Value,
            Some(p) => PushType::parse(&p).ok_or_else(|| {
                fail(format!(
                    "unknown pushType {p:?} (expected ALWAYS, VALUE, NEVER, ON or OFF)"
                ))
            })?,
        };
        let push_threshold = match t
            .raw_get::<Value>("pushThreshold")
            .map_err(|e| fail(e.to_string()))?
        {
            Value::Nil => 0.0,
            Value::Integer(i) => i as f64,
            Value::Number(n) if n.is_finite() && n >= 0.0 => n,
            other => {
                return Err(fail(format!(
                    "pushThreshold must be a non-negative number, not {other:?}"
                )))
            }
        };
        let description = opt_string(&t, "description")
            .map_err(fail)?
            .unwrap_or_default();
        let raw: Value = t.raw_get("value").map_err(|e| fail(e.to_string()))?;
        let value = if raw.is_nil() {
            let default = base_type.default_value();
            let lua_default = json_to_lua(lua, &default).map_err(|e| fail(message(&e)))?;
            t.raw_set("value", lua_default)
                .map_err(|e| fail(message(&e)))?;
            default
        } else {
            let json = lua_to_json(lua, &raw, limits.max_result_bytes)
                .map_err(|e| fail(format!("value: {e}")))?;
            base_type
                .coerce_json(&json)
                .map_err(|e| fail(format!("value: {e}")))?
        };
        let def = PropertyDef {
            name,
            base_type,
            push_type,
            push_threshold,
            description,
        };
        out.push((def, value));
    }
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(out)
}

/// Pairs `services.X` functions with their recorded definitions; definitions without a
/// function are errors, functions without a definition are untyped services.
fn service_defs(
    services: &Table,
    mut recorded: BTreeMap<String, (ServiceDef, String)>,
    path: &Path,
) -> Result<Vec<ServiceDef>, String> {
    let mut out = Vec::new();
    for pair in services.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| format!("{}: {}", path.display(), message(&e)))?;
        let name = match &k {
            Value::String(s) => s.to_string_lossy(),
            other => {
                return Err(format!(
                    "{}: services keys must be strings, found a {}",
                    path.display(),
                    other.type_name()
                ))
            }
        };
        if !matches!(v, Value::Function(_)) {
            return Err(format!(
                "{}: services.{name} must be a function, not a {}",
                path.display(),
                v.type_name()
            ));
        }
        let def = match recorded.remove(&name) {
            Some((def, _)) => def,
            None => ServiceDef {
                name: name.clone(),
                inputs: Vec::new(),
                output: Some(FieldDef {
                    name: "result".into(),
                    base_type: BaseType::Variant,
                    description: String::new(),
                }),
                description: String::new(),
            },
        };
        out.push(def);
    }
    if let Some((name, (_, loc))) = recorded.into_iter().next() {
        return Err(format!(
            "{loc} service {name:?} is defined in serviceDefinitions but services.{name} is not a function"
        ));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Looks up `services.name` at call time (scripts may replace functions).
pub(crate) fn service_function(lua: &Lua, services: &Table, name: &str) -> Option<Function> {
    match raw_field(lua, services, name) {
        Ok(Value::Function(f)) => Some(f),
        _ => None,
    }
}

/// With the `lsr` library loaded (it defines `__lsr_generate`): properties with
/// `handler = "generator"` get the generator as a hidden task; `script`, `http` and `https`
/// handlers become [`Link`]s to another thing's property (a key to another host fails the
/// load, saying why); other handler names (the LSR's custom script handlers) are logged, and
/// such a property keeps the values written to it, as the `inmemory` handler does.
fn lsr_handlers(
    lua: &Lua,
    props: &Table,
    tasks: &Table,
    thing: &str,
    path: &Path,
) -> Result<Vec<Link>, String> {
    let setup = |e: mlua::Error| format!("{}: {}", path.display(), message(&e));
    let Ok(Value::Function(generate)) = lua.globals().raw_get::<Value>("__lsr_generate") else {
        return Ok(Vec::new());
    };
    let mut generators = false;
    let mut links = Vec::new();
    for pair in props.pairs::<Value, Value>() {
        let (name, def) = pair.map_err(setup)?;
        let Value::Table(def) = def else { continue };
        let handler = def.raw_get::<Option<String>>("handler").ok().flatten();
        match handler.as_deref() {
            None | Some("inmemory") => {}
            Some("generator") => generators = true,
            Some(h @ ("script" | "http" | "https")) => {
                let property = key_name(&name);
                let key = def.raw_get::<Option<String>>("key").ok().flatten();
                let parsed = key
                    .as_deref()
                    .ok_or_else(|| format!("handler {h:?} needs a key"))
                    .and_then(|k| links::parse_key(h, k));
                let (target_thing, target) =
                    parsed.map_err(|e| format!("{}: property {property}: {e}", path.display()))?;
                links.push(Link {
                    property,
                    thing: target_thing,
                    target,
                });
            }
            Some(other) => tracing::warn!(
                thing,
                property = %key_name(&name),
                handler = other,
                "LSR property handler not supported: the property keeps the values written to it"
            ),
        }
    }
    if generators {
        tasks.raw_set("__lsr_generate", generate).map_err(setup)?;
    }
    Ok(links)
}
