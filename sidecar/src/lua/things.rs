//! [`Things`]: the async, shareable API over all loaded things.
//!
//! Execution model: each thing's VM sits behind a mutex, locked with a bounded wait so a VM
//! stuck where the budget cannot reach (inside a C function) answers later callers with `Busy`
//! instead of queueing them forever. The mutex is tokio's: queued callers hold no thread. On a
//! multi-thread runtime the operation then runs on the caller's worker and moves off it only
//! if it runs long (see `offload`); elsewhere it runs on tokio's blocking pool.

use super::dialect::lua51_escapes;
use super::links::Link;
use super::offload;
use super::thing::{ServiceCall, Thing, Vm};
use super::{
    Dialect, EventHub, EventSink, FiredEvent, LuaError, LuaLimits, PropertyChange, PropertyDef,
    PropertyValue, ServiceResult, TemplateSource, ThingError, ThingInfo, ThingSpec,
};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio::time::MissedTickBehavior;

/// Callback observing each operation: kind (`"service"`, `"task"`, `"property"`), duration
/// and how it ended; lets the server export metrics without this module depending on them.
pub type Observer = Arc<dyn Fn(&str, Duration, Ended) + Send + Sync>;

/// How an observed operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// Whether it succeeded.
    pub ok: bool,
    /// Whether Lua outran its slice on an async worker and finished off it (see `offload`).
    pub offloaded: bool,
    /// Whether it was aborted at its deadline ([`ThingError::Timeout`]).
    pub timed_out: bool,
}

/// Buffered changes per subscriber before a slow subscriber starts missing some.
const CHANGE_BUFFER: usize = 1024;

/// All loaded things; `Send + Sync`, shared as `Arc<Things>`.
pub struct Things {
    things: HashMap<String, Arc<Thing>>,
    /// Hidden instances by template name, for devices that expose a template's services.
    prototypes: HashMap<String, Arc<Thing>>,
    changes: broadcast::Sender<PropertyChange>,
    observer: RwLock<Option<Observer>>,
    /// Where `me:fireEvent` and [`Things::fire_event`] send events.
    events: EventHub,
    /// Linked properties by thing (LSR `script`/`http` handlers), each target checked.
    links: HashMap<String, Vec<Link>>,
}

impl std::fmt::Debug for Things {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Things")
            .field("things", &self.thing_names())
            .finish_non_exhaustive()
    }
}

impl Things {
    /// Reads every template and instantiates every thing in its own VM; the first problem
    /// (unreadable file, script error, unknown template, duplicate name, ...) is returned.
    pub fn load(
        templates: &[TemplateSource],
        things: &[ThingSpec],
        limits: LuaLimits,
    ) -> Result<Things, LuaError> {
        let mut sources: HashMap<&str, (&TemplateSource, Vec<u8>)> = HashMap::new();
        for t in templates {
            let source = read_template(t)?;
            if sources.insert(t.name.as_str(), (t, source)).is_some() {
                return Err(LuaError::Duplicate {
                    kind: "template",
                    name: t.name.clone(),
                });
            }
        }
        let events = EventHub::default();
        let mut loaded = HashMap::new();
        let mut declared = Vec::new();
        for spec in things {
            if loaded.contains_key(&spec.name) {
                return Err(LuaError::Duplicate {
                    kind: "thing",
                    name: spec.name.clone(),
                });
            }
            let (template, source) =
                sources
                    .get(spec.template.as_str())
                    .ok_or_else(|| LuaError::UnknownTemplate {
                        thing: spec.name.clone(),
                        template: spec.template.clone(),
                    })?;
            let mut thing = Thing::load(spec, template, source, limits, &events)?;
            declared.push((spec.name.clone(), std::mem::take(&mut thing.links)));
            loaded.insert(spec.name.clone(), Arc::new(thing));
        }
        let links = checked_links(&loaded, declared);
        let (changes, _) = broadcast::channel(CHANGE_BUFFER);
        Ok(Things {
            things: loaded,
            prototypes: HashMap::new(),
            changes,
            observer: RwLock::new(None),
            events,
            links,
        })
    }

    /// Names of all things, sorted.
    pub fn thing_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.things.keys().cloned().collect();
        names.sort();
        names
    }

    /// Definitions of one thing's properties and services, or `None` if unknown.
    pub fn describe(&self, thing: &str) -> Option<ThingInfo> {
        self.things.get(thing).map(|t| t.info.clone())
    }

    /// The template a thing was made from (no copy of its definitions, unlike `describe`).
    pub fn template(&self, thing: &str) -> Option<&str> {
        self.things.get(thing).map(|t| t.info.template.as_str())
    }

    /// Sets where fired events go (the tunnel's outbox; once, at start).
    pub fn set_event_sink(&self, sink: EventSink) {
        let _ = self.events.set(sink);
    }

    /// Hands `event` to the sink; false when there is none (no tunnel).
    pub fn fire_event(&self, event: FiredEvent) -> bool {
        match self.events.get() {
            Some(sink) => {
                sink(event);
                true
            }
            None => false,
        }
    }

    /// Installs the metrics observer (replacing any previous one).
    pub fn set_observer(&self, observer: Observer) {
        *self
            .observer
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(observer);
    }

    /// Current value of one property (never waits for a running script).
    pub async fn read_property(
        &self,
        thing: &str,
        prop: &str,
    ) -> Result<(PropertyDef, PropertyValue), ThingError> {
        let (def, value) = self.get(thing)?.read(prop)?;
        Ok((def, self.linked_value(thing, prop).unwrap_or(value)))
    }

    /// Current values of all of a thing's properties, sorted by name.
    pub async fn read_properties(
        &self,
        thing: &str,
    ) -> Result<Vec<(PropertyDef, PropertyValue)>, ThingError> {
        let mut all = self.get(thing)?.read_all();
        for (def, value) in &mut all {
            if let Some(v) = self.linked_value(thing, &def.name) {
                *value = v;
            }
        }
        Ok(all)
    }

    /// The linked property's target, as (thing, property).
    fn link(&self, thing: &str, prop: &str) -> Option<&Link> {
        self.links.get(thing)?.iter().find(|l| l.property == prop)
    }

    /// The current value of a linked property's target.
    fn linked_value(&self, thing: &str, prop: &str) -> Option<PropertyValue> {
        let l = self.link(thing, prop)?;
        self.things
            .get(&l.thing)?
            .read(&l.target)
            .ok()
            .map(|(_, v)| v)
    }

    /// Sets a property after checking it against its base type ([`ThingError::WrongType`]).
    pub async fn write_property(
        &self,
        thing: &str,
        prop: &str,
        value: Json,
    ) -> Result<(), ThingError> {
        // A linked property is written where its value lives; the next scan copies it back.
        let (thing, prop) = match self.link(thing, prop) {
            Some(l) => (l.thing.as_str(), l.target.as_str()),
            None => (thing, prop),
        };
        let tx = self.changes.clone();
        let prop = prop.to_owned();
        self.run(self.get(thing)?, "property", move |t, vm| {
            t.write(vm, &prop, &value, &tx)
        })
        .await
    }

    /// Calls a service with the given headers, query and parameters; typed inputs are checked.
    pub async fn call_service(
        &self,
        thing: &str,
        service: &str,
        headers: Vec<(String, String)>,
        query: Vec<(String, String)>,
        params: serde_json::Map<String, Json>,
    ) -> Result<ServiceResult, ThingError> {
        let tx = self.changes.clone();
        let service = service.to_owned();
        self.run(self.get(thing)?, "service", move |t, vm| {
            t.call_service(vm, &service, &headers, &query, params, &tx)
        })
        .await
    }

    /// Runs all of a thing's tasks once, now (the same work as one scan-rate tick); for
    /// manual triggers and deterministic tests.
    pub async fn run_tasks_now(&self, thing: &str) -> Result<(), ThingError> {
        let tx = self.changes.clone();
        self.run(self.get(thing)?, "task", move |t, vm| t.run_tasks(vm, &tx))
            .await
    }

    /// A receiver of property changes, filtered by each property's push rules.
    pub fn subscribe(&self) -> broadcast::Receiver<PropertyChange> {
        self.changes.subscribe()
    }

    /// Starts one loop per thing that has tasks, running them at its scan rate. Failures
    /// are logged (with the thing name) and the loop goes on. Abort the handles to stop.
    pub fn spawn_tasks(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut names = self.thing_names();
        names.retain(|n| {
            self.links.contains_key(n) || self.things.get(n).is_some_and(|t| t.has_tasks)
        });
        names
            .into_iter()
            .filter_map(|name| self.things.get(&name).map(Arc::clone))
            .map(|thing| {
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    let mut interval = tokio::time::interval(thing.scan_rate);
                    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    loop {
                        interval.tick().await;
                        let tx = this.changes.clone();
                        // Linked properties take their targets' values first, so their push
                        // rules see them on this scan.
                        let linked: Vec<(String, Json)> = this
                            .links
                            .get(&*thing.name)
                            .into_iter()
                            .flatten()
                            .filter_map(|l| {
                                let v = this.linked_value(&thing.name, &l.property)?;
                                Some((l.property.clone(), v.value))
                            })
                            .collect();
                        let run = this.run(&thing, "task", move |t, vm| {
                            for (prop, value) in &linked {
                                if let Err(e) = t.write(vm, prop, value, &tx) {
                                    tracing::warn!(thing = %t.name, property = %prop, error = %e, "linked property not updated");
                                }
                            }
                            t.run_tasks(vm, &tx)
                        });
                        // Task errors were already logged per task by `run_tasks`.
                        if let Err(e @ ThingError::Busy { .. }) = run.await {
                            tracing::warn!(thing = %thing.name, error = %e, "Lua tasks skipped");
                        }
                    }
                })
            })
            .collect()
    }

    /// Holds `thing`'s VM as a call stuck where no budget reaches would (tests of `Busy`).
    #[cfg(test)]
    pub(super) async fn hold_vm(&self, thing: &str) -> tokio::sync::OwnedMutexGuard<Vm> {
        let t = self.get(thing).expect("known thing");
        Arc::clone(&t.vm).lock_owned().await
    }

    fn get(&self, thing: &str) -> Result<&Arc<Thing>, ThingError> {
        self.things
            .get(thing)
            .ok_or_else(|| ThingError::UnknownThing(thing.to_owned()))
    }

    /// Runs a Lua operation while holding the thing's VM: inline on a multi-thread runtime's
    /// worker, else on the blocking pool; reports it to the observer. Waiting for the VM is
    /// bounded (10 deadlines, at least 1 s).
    async fn run<T: Send + 'static>(
        &self,
        thing: &Arc<Thing>,
        kind: &'static str,
        op: impl FnOnce(&Thing, &Vm) -> Result<T, ThingError> + Send + 'static,
    ) -> Result<T, ThingError> {
        let start = Instant::now();
        let wait = thing
            .limits
            .deadline
            .saturating_mul(10)
            .max(Duration::from_secs(1));
        let (result, offloaded) =
            match tokio::time::timeout(wait, Arc::clone(&thing.vm).lock_owned()).await {
                Ok(vm) if offload::inline_allowed() => {
                    let slice = vm.on_worker();
                    let result = op(thing, &vm);
                    (result, slice.offloaded())
                }
                Ok(vm) => {
                    let t = Arc::clone(thing);
                    let result = tokio::task::spawn_blocking(move || op(&t, &vm))
                        .await
                        .unwrap_or_else(|e| {
                            Err(ThingError::Internal(format!("Lua call failed: {e}")))
                        });
                    (result, false)
                }
                Err(_) => (
                    Err(ThingError::Busy {
                        thing: thing.name.to_string(),
                        waited: wait,
                    }),
                    false,
                ),
            };
        let observer = self
            .observer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(observe) = observer {
            let ended = Ended {
                ok: result.is_ok(),
                offloaded,
                timed_out: matches!(result, Err(ThingError::Timeout { .. })),
            };
            observe(kind, start.elapsed(), ended);
        }
        result
    }
}

/// Prototypes: hidden instances of a template whose services run on behalf of many devices
/// (a simulated fleet) in one shared VM. Calls for different devices are serialised on it,
/// which keeps memory independent of the number of devices. A prototype is not a thing: it
/// is not listed by [`Things::thing_names`], not bound, and its tasks never run.
impl Things {
    /// Loads the prototype of `template` (once; later calls for the same name are no-ops).
    pub fn load_prototype(
        &mut self,
        template: &TemplateSource,
        limits: LuaLimits,
    ) -> Result<(), LuaError> {
        if self.prototypes.contains_key(&template.name) {
            return Ok(());
        }
        let source = read_template(template)?;
        let spec = ThingSpec {
            name: format!("prototype of {}", template.name),
            template: template.name.clone(),
            scan_rate: Duration::from_secs(1),
            properties: serde_json::Map::new(),
        };
        let thing = Thing::load(&spec, template, &source, limits, &self.events)?;
        self.prototypes
            .insert(template.name.clone(), Arc::new(thing));
        Ok(())
    }

    /// The property and service definitions of a loaded prototype.
    pub fn describe_prototype(&self, template: &str) -> Option<&ThingInfo> {
        self.prototypes.get(template).map(|t| &t.info)
    }

    /// Calls `service` of `template`'s prototype as device `device`. Once the VM is free,
    /// `values()` gives the device's current values by property name; the call sees those
    /// the template declares (and whose value fits its type) as `properties.X.value`, every
    /// other property at its template default, and `me.name == device`. Afterwards `store`
    /// receives the given properties whose values the service changed, still holding the VM,
    /// so service calls on one device never interleave. Inputs, result, limits and errors
    /// are as for [`Things::call_service`], with errors naming the device.
    #[allow(clippy::too_many_arguments)]
    pub async fn call_service_as(
        &self,
        template: &str,
        device: &str,
        service: &str,
        headers: Vec<(String, String)>,
        query: Vec<(String, String)>,
        params: serde_json::Map<String, Json>,
        values: impl FnOnce() -> serde_json::Map<String, Json> + Send + 'static,
        store: impl FnOnce(serde_json::Map<String, Json>) -> Result<(), ThingError> + Send + 'static,
    ) -> Result<ServiceResult, ThingError> {
        let proto = self.prototypes.get(template).ok_or_else(|| {
            ThingError::Internal(format!("no prototype of template {template:?} is loaded"))
        })?;
        let device = device.to_owned();
        let service = service.to_owned();
        self.run(proto, "service", move |t, vm| {
            let call = ServiceCall {
                who: &device,
                service: &service,
                headers: &headers,
                query: &query,
                params,
            };
            t.call_service_as(vm, call, &values(), store)
        })
        .await
    }
}

/// A template's source as its dialect reads it (see [`super::dialect`]).
fn read_template(t: &TemplateSource) -> Result<Vec<u8>, LuaError> {
    let source = std::fs::read(&t.path).map_err(|source| LuaError::Read {
        path: t.path.clone(),
        source,
    })?;
    Ok(match t.dialect {
        Dialect::Lsr => lua51_escapes(&source).into_owned(),
        Dialect::Lua54 => source,
    })
}

/// Keeps the links whose target thing and property exist (and are not the property itself);
/// the others are logged, and their property keeps the values written to it. Not an error: the
/// LSR's sample links to script resources a gateway may not have.
fn checked_links(
    loaded: &HashMap<String, Arc<Thing>>,
    declared: Vec<(String, Vec<Link>)>,
) -> HashMap<String, Vec<Link>> {
    let mut out: HashMap<String, Vec<Link>> = HashMap::new();
    for (thing, links) in declared {
        for l in links {
            let target = loaded.get(&l.thing);
            let known =
                target.is_some_and(|t| t.info.properties.iter().any(|p| p.name == l.target));
            if !known || (l.thing == thing && l.target == l.property) {
                tracing::warn!(
                    %thing,
                    property = %l.property,
                    target = %format!("{}/property/{}", l.thing, l.target),
                    "linked property's target is not on this gateway: the property keeps the values written to it"
                );
                continue;
            }
            out.entry(thing.clone()).or_default().push(l);
        }
    }
    out
}
