//! One thing: its VM, its property snapshot, and the blocking operations on them (service
//! calls, task runs, writes), each followed by a read-back pass that applies the push rules.

use super::convert::{json_to_lua, lua_to_json, pairs_to_lua, property_fields};
use super::dialect;
use super::links::Link;
use super::offload::{Caller, SLICE};
use super::sandbox::{classify, message, Budget};
use super::template::{instantiate, service_function};
use super::vm::new_vm;
use super::{
    now_ms, Dialect, EventHub, LuaError, LuaLimits, PropertyChange, PropertyDef, PropertyValue,
    PushType, Quality, ServiceDef, ServiceResult, TemplateSource, ThingError, ThingInfo, ThingSpec,
};
use mlua::{Function, Lua, MultiValue, Table, Value};
use serde_json::Value as Json;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::broadcast;

/// The Lua side of a thing. Only ever used by the thread holding `Thing::vm`.
pub(crate) struct Vm {
    lua: Lua,
    budget: Arc<Budget>,
    caller: Caller,
    props: Table,
    services: Table,
    tasks: Table,
    me: Table,
}

impl Vm {
    /// Marks the start of an operation on an async worker: Lua may run inline for one slice,
    /// until the returned guard drops (also when the operation panics).
    pub(crate) fn on_worker(&self) -> WorkerSlice<'_> {
        self.caller.take_moved();
        self.budget.start_slice(SLICE);
        WorkerSlice(self)
    }

    /// Runs a script function on the VM's call thread (see `offload`).
    fn call(&self, f: Function, args: impl mlua::IntoLuaMulti) -> mlua::Result<MultiValue> {
        self.caller.call(&self.lua, &self.budget, f, args)
    }
}

/// An operation's time on an async worker; dropping it ends the slice.
pub(crate) struct WorkerSlice<'a>(&'a Vm);

impl WorkerSlice<'_> {
    /// Whether a call of this operation outran its slice and finished off the worker.
    pub(crate) fn offloaded(&self) -> bool {
        self.0.caller.take_moved()
    }
}

impl Drop for WorkerSlice<'_> {
    fn drop(&mut self) {
        self.0.budget.end_slice();
    }
}

/// Rust's view of one property: the last good value and the last pushed one.
struct Slot {
    def: PropertyDef,
    name: Arc<str>,
    current: PropertyValue,
    last_pushed: Json,
}

/// Who a service call is for and what it carries.
pub(crate) struct ServiceCall<'a> {
    /// The thing (or, on a prototype, the device) named in errors and given as `me.name`.
    pub who: &'a str,
    /// Service name.
    pub service: &'a str,
    /// Request headers, passed as the `headers` table.
    pub headers: &'a [(String, String)],
    /// Query parameters, passed as the `query` table.
    pub query: &'a [(String, String)],
    /// Parameters, passed as `data`; typed inputs are coerced first.
    pub params: serde_json::Map<String, Json>,
}

/// What triggered a read-back pass; decides when `ALWAYS` properties are pushed.
#[derive(Clone, Copy)]
enum Pass {
    Task,
    Service,
    Write(usize),
}

/// A loaded thing. The VM mutex serialises Lua calls; it is an async mutex so callers queue
/// without occupying blocking threads (see `Things::run`). The snapshot has its own mutex so
/// property reads never wait for a running script.
pub(crate) struct Thing {
    pub name: Arc<str>,
    pub info: ThingInfo,
    pub scan_rate: Duration,
    pub has_tasks: bool,
    /// Linked properties as the template declared them; `Things::load` keeps the valid ones.
    pub links: Vec<Link>,
    pub limits: LuaLimits,
    pub vm: Arc<tokio::sync::Mutex<Vm>>,
    slots: Mutex<Vec<Slot>>,
}

/// Locks ignoring poison: the snapshot is updated slot by slot, so it is consistent even if a
/// pass panicked, and refusing all later reads would be worse.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Equality that treats `3` and `3.0` as the same number.
fn same(a: &Json, b: &Json) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

impl Thing {
    /// Creates the VM, runs the template in it and applies the spec's property overrides.
    pub(crate) fn load(
        spec: &ThingSpec,
        template: &TemplateSource,
        source: &[u8],
        limits: LuaLimits,
        events: &EventHub,
    ) -> Result<Thing, LuaError> {
        let path = template.path.as_path();
        let thing_err = |message: String| LuaError::Thing {
            thing: spec.name.clone(),
            message,
        };
        if spec.scan_rate.is_zero() {
            return Err(thing_err("scan rate must be greater than zero".into()));
        }
        let (lua, budget, caller) = new_vm(&spec.name, limits).map_err(|e| LuaError::Vm {
            thing: spec.name.clone(),
            message: message(&e),
        })?;
        if template.dialect == Dialect::Lsr {
            dialect::install_lsr(&lua, spec, &limits).map_err(|e| LuaError::Vm {
                thing: spec.name.clone(),
                message: message(&e),
            })?;
        }
        let inst = instantiate(
            &lua,
            &budget,
            &limits,
            &spec.name,
            &spec.template,
            path,
            source,
            events,
        )
        .map_err(|message| LuaError::Template {
            thing: spec.name.clone(),
            path: path.to_owned(),
            message,
        })?;

        let mut properties = inst.properties;
        for (name, value) in &spec.properties {
            let (def, current) = properties
                .iter_mut()
                .find(|(d, _)| d.name == *name)
                .ok_or_else(|| {
                    thing_err(format!(
                        "template {:?} has no property {name:?} to override",
                        spec.template
                    ))
                })?;
            let coerced = def
                .base_type
                .coerce_json(value)
                .map_err(|e| thing_err(format!("property {name:?}: {e}")))?;
            set_lua_value(&lua, &inst.props, def, &coerced)
                .map_err(|e| thing_err(format!("property {name:?}: {}", message(&e))))?;
            *current = coerced;
        }

        let time_ms = now_ms();
        let slots = properties
            .iter()
            .map(|(def, value)| Slot {
                def: def.clone(),
                name: Arc::from(def.name.as_str()),
                current: PropertyValue {
                    value: value.clone(),
                    time_ms,
                    quality: Quality::Good,
                },
                last_pushed: value.clone(),
            })
            .collect();
        Ok(Thing {
            name: Arc::from(spec.name.as_str()),
            info: ThingInfo {
                name: spec.name.clone(),
                template: spec.template.clone(),
                properties: properties.into_iter().map(|(d, _)| d).collect(),
                services: inst.service_defs,
                events: inst.event_defs,
            },
            scan_rate: spec.scan_rate,
            has_tasks: inst.has_tasks,
            links: inst.links,
            limits,
            vm: Arc::new(tokio::sync::Mutex::new(Vm {
                lua,
                budget,
                caller,
                props: inst.props,
                services: inst.services,
                tasks: inst.tasks,
                me: inst.me,
            })),
            slots: Mutex::new(slots),
        })
    }

    /// The current value of one property.
    pub(crate) fn read(&self, prop: &str) -> Result<(PropertyDef, PropertyValue), ThingError> {
        lock(&self.slots)
            .iter()
            .find(|s| s.def.name == prop)
            .map(|s| (s.def.clone(), s.current.clone()))
            .ok_or_else(|| ThingError::UnknownProperty {
                thing: self.name.to_string(),
                property: prop.to_owned(),
            })
    }

    /// The current values of all properties, sorted by name.
    pub(crate) fn read_all(&self) -> Vec<(PropertyDef, PropertyValue)> {
        lock(&self.slots)
            .iter()
            .map(|s| (s.def.clone(), s.current.clone()))
            .collect()
    }

    /// Blocking: type-checks and stores a property value, then pushes per the rules.
    pub(crate) fn write(
        &self,
        vm: &Vm,
        prop: &str,
        value: &Json,
        tx: &broadcast::Sender<PropertyChange>,
    ) -> Result<(), ThingError> {
        let (index, def) = self
            .info
            .properties
            .iter()
            .enumerate()
            .find(|(_, d)| d.name == prop)
            .ok_or_else(|| ThingError::UnknownProperty {
                thing: self.name.to_string(),
                property: prop.to_owned(),
            })?;
        let coerced = def
            .base_type
            .coerce_json(value)
            .map_err(|_| ThingError::WrongType {
                name: prop.to_owned(),
                expected: def.base_type,
            })?;
        vm.budget.arm();
        let stored = set_lua_value(&vm.lua, &vm.props, def, &coerced);
        let failure = classify(&self.name, &self.limits, &vm.budget, stored.as_ref().err());
        let readback = self.read_back(vm, Pass::Write(index), tx);
        match failure {
            Some(e) => Err(e),
            None => readback,
        }
    }

    /// Blocking: checks typed inputs, calls `services.<name>(me, headers, query, data)`.
    pub(crate) fn call_service(
        &self,
        vm: &Vm,
        service: &str,
        headers: &[(String, String)],
        query: &[(String, String)],
        params: serde_json::Map<String, Json>,
        tx: &broadcast::Sender<PropertyChange>,
    ) -> Result<ServiceResult, ThingError> {
        let call = ServiceCall {
            who: &self.name,
            service,
            headers,
            query,
            params,
        };
        self.invoke(
            vm,
            call,
            |_| Ok(()),
            |vm| self.read_back(vm, Pass::Service, tx),
        )
    }

    /// Blocking: runs a service of this (prototype) thing on behalf of `device`. Sets
    /// `me.name` to the device and every property to `values[name]` when given and of the
    /// property's type, else to the template's default; after the call, `store` receives the
    /// given properties whose values the service changed (also when the call then fails, as a
    /// Lua thing keeps what a failing call set). Errors name the device, not the prototype.
    pub(crate) fn call_service_as(
        &self,
        vm: &Vm,
        call: ServiceCall<'_>,
        values: &serde_json::Map<String, Json>,
        store: impl FnOnce(serde_json::Map<String, Json>) -> Result<(), ThingError>,
    ) -> Result<ServiceResult, ThingError> {
        let device = call.who;
        // (definition, value set before the call, whether it is the device's)
        let before: Vec<(&PropertyDef, Json, bool)> = lock(&self.slots)
            .iter()
            .zip(&self.info.properties)
            .map(|(slot, def)| {
                match values.get(&def.name).map(|v| def.base_type.coerce_json(v)) {
                    Some(Ok(v)) => (def, v, true),
                    // A prototype's snapshot is never read back into, so it holds the defaults.
                    _ => (def, slot.current.value.clone(), false),
                }
            })
            .collect();
        let prepare = |vm: &Vm| {
            vm.me.raw_set("name", device)?;
            for (def, value, _) in &before {
                set_lua_value(&vm.lua, &vm.props, def, value)?;
            }
            Ok(())
        };
        let after = |vm: &Vm| {
            let mut changed = serde_json::Map::new();
            let mut errors = Vec::new();
            for (def, old, _) in before.iter().filter(|(_, _, given)| *given) {
                match read_property(&vm.lua, &vm.props, def, self.limits.max_result_bytes).0 {
                    Ok(new) if !same(&new, old) => {
                        changed.insert(def.name.clone(), new);
                    }
                    Ok(_) => {}
                    Err(e) => errors.push(bad_value(device, &def.name, &e)),
                }
            }
            for msg in &errors {
                tracing::warn!(thing = %device, "{msg}");
            }
            let stored = if changed.is_empty() {
                Ok(())
            } else {
                store(changed)
            };
            match (errors.is_empty(), stored) {
                (true, stored) => stored,
                (false, Ok(())) => Err(ThingError::Script(errors.join("; "))),
                (false, Err(e)) => Err(ThingError::Script(format!("{}; {e}", errors.join("; ")))),
            }
        };
        self.invoke(vm, call, prepare, after)
    }

    /// The one service call path: looks the service up, coerces typed inputs, runs
    /// `prepare` and the service under a fresh budget, then `after` (the read-back) unless
    /// `prepare` failed, and shapes the result. Errors name `call.who`.
    fn invoke(
        &self,
        vm: &Vm,
        call: ServiceCall<'_>,
        prepare: impl FnOnce(&Vm) -> mlua::Result<()>,
        after: impl FnOnce(&Vm) -> Result<(), ThingError>,
    ) -> Result<ServiceResult, ThingError> {
        let ServiceCall {
            who,
            service,
            headers,
            query,
            mut params,
        } = call;
        let def = self
            .info
            .services
            .iter()
            .find(|s| s.name == service)
            .ok_or_else(|| ThingError::UnknownService {
                thing: who.to_owned(),
                service: service.to_owned(),
            })?;
        for input in &def.inputs {
            if let Some(v) = params.get_mut(&input.name).filter(|v| !v.is_null()) {
                *v = input
                    .base_type
                    .coerce_json(v)
                    .map_err(|_| ThingError::WrongType {
                        name: input.name.clone(),
                        expected: input.base_type,
                    })?;
            }
        }

        vm.budget.arm();
        let mut prepared = false;
        let outcome = (|| {
            prepare(vm)?;
            prepared = true;
            let f = service_function(&vm.lua, &vm.services, service).ok_or_else(|| {
                mlua::Error::runtime(format!("services.{service} is no longer a function"))
            })?;
            let headers = pairs_to_lua(&vm.lua, headers)?;
            let query = pairs_to_lua(&vm.lua, query)?;
            let data = json_to_lua(&vm.lua, &Json::Object(params))?;
            vm.call(f, (&vm.me, headers, query, data))
        })();
        let failure = classify(who, &self.limits, &vm.budget, outcome.as_ref().err());
        if matches!(failure, Some(ThingError::MemoryLimit { .. })) {
            // Reclaim what the failed call left behind before the next one.
            let _ = vm.lua.gc_collect();
        }
        let readback = if prepared { after(vm) } else { Ok(()) };
        if let Some(e) = failure {
            return Err(e);
        }
        let result = match outcome {
            Ok(values) => service_result(&vm.lua, def, values, self.limits.max_result_bytes)?,
            Err(e) => return Err(ThingError::Script(message(&e))),
        };
        readback.map(|()| result)
    }

    /// Blocking: runs every `tasks.*` function (by name order), each with its own budget,
    /// then one read-back pass. Errors are logged; the first one is returned.
    pub(crate) fn run_tasks(
        &self,
        vm: &Vm,
        tx: &broadcast::Sender<PropertyChange>,
    ) -> Result<(), ThingError> {
        let mut tasks: Vec<(String, Function)> = Vec::new();
        for pair in vm.tasks.pairs::<Value, Value>() {
            if let Ok((Value::String(k), Value::Function(f))) = pair {
                tasks.push((k.to_string_lossy(), f));
            }
        }
        tasks.sort_by(|a, b| a.0.cmp(&b.0));
        let mut first_error = None;
        for (task, f) in tasks {
            vm.budget.arm();
            let run = vm.call(f, &vm.me).map(|_| ());
            if let Some(e) = classify(&self.name, &self.limits, &vm.budget, run.as_ref().err()) {
                tracing::warn!(thing = %self.name, task = %task, error = %e, "Lua task failed");
                if matches!(e, ThingError::MemoryLimit { .. }) {
                    let _ = vm.lua.gc_collect();
                }
                first_error.get_or_insert(e);
            }
        }
        vm.budget.arm();
        let readback = self.read_back(vm, Pass::Task, tx);
        match first_error {
            Some(e) => Err(e),
            None => readback,
        }
    }

    /// Reads every property value back from Lua, keeps good values, restores bad ones and
    /// broadcasts changes per the push rules. Uses raw access only, so no script code runs.
    fn read_back(
        &self,
        vm: &Vm,
        pass: Pass,
        tx: &broadcast::Sender<PropertyChange>,
    ) -> Result<(), ThingError> {
        let mut slots = lock(&self.slots);
        let mut errors = Vec::new();
        for (i, slot) in slots.iter_mut().enumerate() {
            let (value, quality) =
                read_property(&vm.lua, &vm.props, &slot.def, self.limits.max_result_bytes);
            let value = match value {
                Ok(v) => v,
                Err(e) => {
                    let msg = bad_value(&self.name, &slot.def.name, &e);
                    tracing::warn!(thing = %self.name, property = %slot.def.name, "{msg}");
                    if let Err(e) =
                        set_lua_value(&vm.lua, &vm.props, &slot.def, &slot.current.value)
                    {
                        tracing::error!(thing = %self.name, property = %slot.def.name, error = %message(&e), "cannot restore property value");
                    }
                    errors.push(msg);
                    continue;
                }
            };
            let changed = !same(&value, &slot.current.value) || quality != slot.current.quality;
            if changed {
                slot.current = PropertyValue {
                    value: value.clone(),
                    time_ms: now_ms(),
                    quality,
                };
            }
            let forced = match pass {
                Pass::Task => true,
                Pass::Write(j) => i == j,
                Pass::Service => false,
            };
            let push = match slot.def.push_type {
                PushType::Always => forced || changed,
                PushType::Value | PushType::On => {
                    beyond_threshold(&value, &slot.last_pushed, slot.def.push_threshold)
                }
                PushType::Never | PushType::Off => false,
            };
            if push {
                slot.last_pushed = value;
                // No subscribers is not an error.
                let _ = tx.send(PropertyChange {
                    thing: Arc::clone(&self.name),
                    property: Arc::clone(&slot.name),
                    base_type: slot.def.base_type,
                    value: slot.current.clone(),
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ThingError::Script(errors.join("; ")))
        }
    }
}

/// The message for a property a script left with a value that does not fit its type.
fn bad_value(thing: &str, property: &str, problem: &str) -> String {
    format!("thing {thing:?}: property {property:?} {problem}; previous value kept")
}

/// Whether `new` differs from the last pushed value enough to push (numbers: by more than
/// the threshold; anything else: at all).
fn beyond_threshold(new: &Json, last: &Json, threshold: f64) -> bool {
    match (new.as_f64(), last.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() > threshold,
        _ => new != last,
    }
}

/// A property as the script left it: its value, typed by its definition, and the quality
/// the script gave it (`properties.X.quality`, e.g. `"BAD"`, as LSR handlers set it; `GOOD`
/// when none). Raw access only, so no script code runs.
fn read_property(
    lua: &Lua,
    props: &Table,
    def: &PropertyDef,
    max_bytes: usize,
) -> (Result<Json, String>, Quality) {
    let (entry, raw, quality) = match property_fields(lua, props, &def.name) {
        Ok(fields) => fields,
        Err(e) => return (Err(message(&e)), Quality::Good),
    };
    let quality = match quality {
        Value::String(q) => Quality::parse(&q.to_string_lossy()),
        _ => Quality::Good,
    };
    if !matches!(entry, Value::Table(_)) {
        return (
            Err(format!("was replaced by a {}", entry.type_name())),
            quality,
        );
    }
    let value = lua_to_json(lua, &raw, max_bytes)
        .map_err(|e| format!("has an invalid value: {e}"))
        .and_then(|json| {
            def.base_type
                .coerce_json(&json)
                .map_err(|e| format!("has a value of the wrong type: {e}"))
        });
    (value, quality)
}

/// Stores `properties[name].value = value`, recreating the entry if the script removed it.
fn set_lua_value(lua: &Lua, props: &Table, def: &PropertyDef, value: &Json) -> mlua::Result<()> {
    let entry = match props.raw_get::<Value>(def.name.as_str())? {
        Value::Table(t) => t,
        _ => {
            let t = lua.create_table()?;
            t.raw_set("baseType", def.base_type.name())?;
            t.raw_set("pushType", def.push_type.as_str())?;
            t.raw_set("pushThreshold", def.push_threshold)?;
            t.raw_set("description", def.description.as_str())?;
            props.raw_set(def.name.as_str(), &t)?;
            t
        }
    };
    entry.raw_set("value", json_to_lua(lua, value)?)
}

/// Interprets a service's return values: `status[, value]`, nothing meaning `200, nil`.
fn service_result(
    lua: &Lua,
    def: &ServiceDef,
    values: MultiValue,
    max_bytes: usize,
) -> Result<ServiceResult, ThingError> {
    let mut values = values.into_iter();
    let status_value = values.next().unwrap_or(Value::Nil);
    let value = values.next().unwrap_or(Value::Nil);
    let bad = |what: String| ThingError::Script(format!("service {:?} {what}", def.name));
    let status = match status_value {
        Value::Nil => 200,
        Value::Integer(i) => i,
        Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e6 => n as i64,
        other => {
            return Err(bad(format!(
                "must return a status code first (e.g. `return 200, value`), not a {}",
                other.type_name()
            )))
        }
    };
    let status = u16::try_from(status)
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| {
            bad(format!(
                "returned invalid status {status} (expected 100..=599)"
            ))
        })?;
    let mut json = lua_to_json(lua, &value, max_bytes)
        .map_err(|e| bad(format!("returned an unconvertible value: {e}")))?;
    if (200..300).contains(&status) && !json.is_null() {
        if let Some(out) = &def.output {
            json = out
                .base_type
                .coerce_json(&json)
                .map_err(|e| bad(format!("returned a result of the wrong type: {e}")))?;
        }
    }
    Ok(ServiceResult {
        status,
        value: json,
        output: def.output.clone(),
    })
}
