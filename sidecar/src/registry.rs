//! Every thing this gateway serves, whatever runs it: the one place the REST API and the
//! platform tunnel look things up. Lua things are checked first, then simulated devices.
//!
//! Simulated devices expose the services of the fleet's `template` (see docs/simulation.md):
//! they run on the template's hidden prototype VM ([`Things::call_service_as`]), which sees
//! the device's current values and whose changes are written back to the fleet.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use serde_json::{Map, Value};

use crate::lua::{ServiceResult, ThingError, Things};
use crate::sim::{Fleet, FleetSchema, WriteError};
use edgeway_protocol::basetype::BaseType;

mod events;
mod metadata;
pub use events::FireError;

/// A running simulated fleet: its state, and the read-only schema to name and render updates.
pub struct SimFleet {
    /// Device state, shared with the driver that ticks it.
    pub fleet: Arc<Mutex<Fleet>>,
    /// Names, properties and JSON rendering, readable without the lock.
    pub schema: Arc<FleetSchema>,
    /// Properties the fleet simulates and its template declares with a type their values
    /// fit: what a service call sees and may write back. Set by [`Registry::new`].
    shared: Arc<[String]>,
}

impl SimFleet {
    /// Wraps a fleet for sharing.
    pub fn new(fleet: Fleet) -> Self {
        let schema = fleet.schema().clone();
        Self {
            fleet: Arc::new(Mutex::new(fleet)),
            schema,
            shared: Arc::new([]),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Fleet> {
        lock(&self.fleet)
    }
}

fn lock(fleet: &Mutex<Fleet>) -> MutexGuard<'_, Fleet> {
    fleet.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether every value of a simulated property of type `device` fits a template property of
/// type `template`, so it can be handed to the template's services.
fn fits(device: BaseType, template: BaseType) -> bool {
    device == template
        || template == BaseType::Variant
        || matches!(
            (device, template),
            (BaseType::Integer, BaseType::Number | BaseType::Long)
                | (BaseType::Long, BaseType::Number)
        )
}

/// The gateway's things: Lua things and, with a simulation, simulated devices.
pub struct Registry {
    lua: Arc<Things>,
    sim: Option<SimFleet>,
    /// The `GET /things` body: things and the fleet's shape are fixed at start-up, and building
    /// it per request was two thirds of that route's CPU (callgrind).
    catalogue: OnceLock<Bytes>,
}

impl Registry {
    /// A registry over the loaded Lua things and an optional fleet. When the fleet names a
    /// template whose prototype `lua` has loaded ([`Things::load_prototype`]), its devices
    /// expose that template's services; otherwise they have none.
    pub fn new(lua: Arc<Things>, mut sim: Option<SimFleet>) -> Self {
        if let Some(sim) = &mut sim {
            let template = sim.schema.template();
            if let Some(info) = template.and_then(|t| lua.describe_prototype(t)) {
                let mut shared = Vec::new();
                for p in sim.schema.properties() {
                    let Some(def) = info.properties.iter().find(|d| d.name == p.name) else {
                        continue;
                    };
                    if fits(p.base_type, def.base_type) {
                        shared.push(p.name.clone());
                    } else {
                        tracing::warn!(
                            template = template.unwrap_or_default(),
                            property = %p.name,
                            "simulated {} property is not passed to the template's {} property",
                            p.base_type,
                            def.base_type
                        );
                    }
                }
                sim.shared = shared.into();
            }
        }
        Self {
            lua,
            sim,
            catalogue: OnceLock::new(),
        }
    }

    /// The Lua runtime, for its change notifications and task loops.
    pub fn lua(&self) -> &Arc<Things> {
        &self.lua
    }

    /// The `/things` catalogue, rendered by `render` on first use.
    pub fn catalogue(&self, render: impl FnOnce() -> Bytes) -> Bytes {
        self.catalogue.get_or_init(render).clone()
    }

    /// The simulated fleet, if any.
    pub fn sim(&self) -> Option<&SimFleet> {
        self.sim.as_ref()
    }

    /// Every thing name, for BIND: Lua things, then this shard's devices.
    pub fn thing_names(&self) -> Vec<String> {
        let mut names = self.lua.thing_names();
        if let Some(sim) = &self.sim {
            names.extend(sim.schema.shard().map(|i| sim.schema.name(i)));
        }
        names
    }

    /// A simulated device's index, when `thing` is one (and not a Lua thing).
    /// Whether `thing` is served here (a Lua thing or a simulated device).
    pub fn has_thing(&self, thing: &str) -> bool {
        self.lua.template(thing).is_some() || self.device(thing).is_some()
    }

    fn device(&self, thing: &str) -> Option<(&SimFleet, u32)> {
        let sim = self.sim.as_ref()?;
        if self.lua.describe(thing).is_some() {
            return None;
        }
        sim.schema.index_of(thing).map(|i| (sim, i))
    }

    /// One property with type, value, time and quality.
    pub async fn read_property(
        &self,
        thing: &str,
        prop: &str,
    ) -> Result<PropertyReading, ThingError> {
        if let Some((sim, i)) = self.device(thing) {
            let def = sim
                .schema
                .properties()
                .iter()
                .find(|p| p.name == prop)
                .ok_or_else(|| unknown_property(thing, prop))?;
            let (value, time_ms, _) = sim
                .lock()
                .read(i, prop)
                .ok_or_else(|| unknown_property(thing, prop))?;
            return Ok(PropertyReading {
                name: def.name.clone(),
                base_type: def.base_type,
                description: String::new(),
                value,
                time_ms,
            });
        }
        let (d, v) = self.lua.read_property(thing, prop).await?;
        Ok(PropertyReading {
            name: d.name,
            base_type: d.base_type,
            description: d.description,
            value: v.value,
            time_ms: v.time_ms,
        })
    }

    /// Every property of a thing with type, value, time and quality.
    pub async fn read_properties(&self, thing: &str) -> Result<Vec<PropertyReading>, ThingError> {
        if let Some((sim, i)) = self.device(thing) {
            let guard = sim.lock();
            let all = guard
                .read_all(i)
                .ok_or_else(|| ThingError::UnknownThing(thing.to_owned()))?;
            return Ok(all
                .into_iter()
                .map(|(p, (value, time_ms, _))| PropertyReading {
                    name: p.name.clone(),
                    base_type: p.base_type,
                    description: String::new(),
                    value,
                    time_ms,
                })
                .collect());
        }
        let props = self.lua.read_properties(thing).await?;
        Ok(props
            .into_iter()
            .map(|(d, v)| PropertyReading {
                name: d.name,
                base_type: d.base_type,
                description: d.description,
                value: v.value,
                time_ms: v.time_ms,
            })
            .collect())
    }

    /// Writes a property (type-checked by the owner).
    pub async fn write_property(
        &self,
        thing: &str,
        prop: &str,
        value: Value,
    ) -> Result<(), ThingError> {
        if let Some((sim, i)) = self.device(thing) {
            return sim.lock().write(i, prop, &value).map_err(|e| match e {
                WriteError::UnknownDevice(_) => ThingError::UnknownThing(thing.to_owned()),
                WriteError::UnknownProperty(_) => unknown_property(thing, prop),
                WriteError::Type { source, .. } => ThingError::WrongType {
                    name: prop.to_owned(),
                    expected: source.expected,
                },
            });
        }
        self.lua.write_property(thing, prop, value).await
    }

    /// Invokes a service with named parameters.
    pub async fn call_service(
        &self,
        thing: &str,
        service: &str,
        headers: Vec<(String, String)>,
        query: Vec<(String, String)>,
        params: Map<String, Value>,
    ) -> Result<ServiceResult, ThingError> {
        if let Some((sim, i)) = self.device(thing) {
            let template = sim
                .schema
                .template()
                .filter(|t| self.lua.describe_prototype(t).is_some());
            let Some(template) = template else {
                return Err(ThingError::UnknownService {
                    thing: thing.to_owned(),
                    service: service.to_owned(),
                });
            };
            let (fleet, shared) = (sim.fleet.clone(), sim.shared.clone());
            let values = move || {
                let f = lock(&fleet);
                shared
                    .iter()
                    .filter_map(|p| f.read(i, p).map(|(v, _, _)| (p.clone(), v)))
                    .collect()
            };
            let (fleet, device) = (sim.fleet.clone(), thing.to_owned());
            let store = move |changed: Map<String, Value>| {
                let mut f = lock(&fleet);
                let errors: Vec<String> = changed
                    .iter()
                    .filter_map(|(p, v)| f.write(i, p, v).err())
                    .map(|e| format!("thing {device:?}: cannot keep the service's value: {e}"))
                    .collect();
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(ThingError::Script(errors.join("; ")))
                }
            };
            return self
                .lua
                .call_service_as(
                    template, thing, service, headers, query, params, values, store,
                )
                .await;
        }
        self.lua
            .call_service(thing, service, headers, query, params)
            .await
    }
}

/// One property of a thing as the REST API lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyReading {
    /// Property name.
    pub name: String,
    /// Its base type.
    pub base_type: BaseType,
    /// Description from the template.
    pub description: String,
    /// Current value.
    pub value: Value,
    /// Unix ms of the value.
    pub time_ms: i64,
}

fn unknown_property(thing: &str, prop: &str) -> ThingError {
    ThingError::UnknownProperty {
        thing: thing.to_owned(),
        property: prop.to_owned(),
    }
}
