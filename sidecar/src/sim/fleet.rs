//! The fleet: device state in flat arrays, a cursor schedule, and the query API.
//!
//! # Memory
//! Per (device, property) the fleet keeps the raw generator value (`f64`), the time of the last
//! update (`i64`) and the quality (`u8`): 17 bytes, in three arrays laid out device-major so one
//! device's properties sit together. Random walks and counters keep their state in the value
//! itself; randomness is a hash of (seed, device, property, update number), so there is no PRNG
//! state at all. Names are prefix + index, computed on demand. STRING values are constants held
//! once in the schema; a write to one goes to a sparse map until the next update.
//!
//! # Scheduling
//! Properties are grouped by interval `I`. In a group, local device `j` of `n` is due at
//! `t0 + k*I + floor(j*I/n)` for its `k`-th update, so the due times of the whole group form one
//! non-decreasing sequence indexed by `s = k*n + j`. A single cursor `s` per group is the next
//! due update: a tick fires updates while `due(cursor) <= now` and stops at the first one in the
//! future. That is O(updates due) per tick with no per-device timers and no heap, and because
//! due times are evenly spread over the interval, every tick carries about the same load.
//! (A timer wheel would also be O(due) but needs a slot entry per device; the cursor needs
//! 8 bytes per group.) If ticks stall for longer than one interval (and 100 ms), the cursor skips
//! ahead so each device gets at most one late update; skipped updates are counted in
//! [`FleetStats`].

/// A lag up to this is the driver's tick granularity, not a stall: the driver ticks every
/// 20 ms and intervals go down to 10 ms, so a 10 ms group is always one interval behind at a
/// tick. Before this bound every such tick counted as a stall and skipped half the updates
/// (the fault suite offered 10,000 updates/s and saw 5,000 generated).
const STALL_MS: u64 = 100;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;

use edgeway_protocol::basetype::BaseType;
use edgeway_runtime::ConfigError;

use super::config::SimulationConfig;
use super::generator::GeneratorConfig;
use super::generator::{draw, unit, Gen, Step};
use super::{quality_from_u8, quality_to_u8, Quality, Update};

/// A simulated property's definition, for REST metadata and the tunnel's data shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct SimProperty {
    /// Property name.
    pub name: String,
    /// Its ThingWorx base type.
    pub base_type: BaseType,
    /// Time between updates on one device, in milliseconds.
    pub interval_ms: u64,
}

/// A property value with its time (Unix ms; 0 before the first update) and quality.
pub type Reading = (Value, i64, Quality);

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    /// The device index is not run by this shard.
    #[error("no simulated device with index {0} in this shard")]
    UnknownDevice(u32),
    /// The fleet has no such property.
    #[error("no simulated property {0:?}")]
    UnknownProperty(String),
    /// The value does not fit the property's base type.
    #[error("property {property:?}: {source}")]
    Type {
        /// The property written.
        property: String,
        /// What was wrong with the value.
        source: edgeway_protocol::basetype::TypeMismatch,
    },
}

/// The immutable part of a fleet, shared (`Arc`) with consumers so they can name devices and
/// render updates without taking the fleet's lock.
#[derive(Debug)]
pub struct FleetSchema {
    prefix: String,
    count: u32,
    shard: Range<u32>,
    template: Option<String>,
    properties: Vec<SimProperty>,
    /// Per property: the BOOLEAN threshold and the raw values a boolean write stores.
    bool_map: Vec<(f64, f64, f64)>,
    /// Per property: the STRING constant, if it is one.
    text: Vec<Option<Arc<str>>>,
    /// Events, indexed by [`Update::event`].
    events: Vec<SimEvent>,
    /// Per property: its event's index and threshold, if one watches it.
    watch: Vec<Option<(u16, Threshold)>>,
}

/// A simulated event: fired by a device when `property` crosses its threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct SimEvent {
    /// Event name.
    pub name: String,
    /// The watched property.
    pub property: String,
}

/// When a watched value fires its event.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Threshold {
    Above(f64),
    Below(f64),
}

impl Threshold {
    fn crossed(self, before: f64, after: f64) -> bool {
        match self {
            Threshold::Above(t) => before <= t && after > t,
            Threshold::Below(t) => before >= t && after < t,
        }
    }
}

impl FleetSchema {
    /// Devices in the whole fleet.
    pub fn device_count(&self) -> u32 {
        self.count
    }

    /// Global indexes this process runs.
    pub fn shard(&self) -> Range<u32> {
        self.shard.clone()
    }

    /// The Lua template the devices expose, if any.
    pub fn template(&self) -> Option<&str> {
        self.template.as_deref()
    }

    /// Event definitions, indexed by [`Update::event`].
    pub fn events(&self) -> &[SimEvent] {
        &self.events
    }

    /// Property definitions, indexed by [`Update::property`].
    pub fn properties(&self) -> &[SimProperty] {
        &self.properties
    }

    /// A property's index by name.
    pub fn property_index(&self, name: &str) -> Option<u16> {
        self.properties
            .iter()
            .position(|p| p.name == name)
            .and_then(|i| u16::try_from(i).ok())
    }

    /// A device's name: the prefix followed by the global index (no padding).
    pub fn name(&self, index: u32) -> String {
        format!("{}{index}", self.prefix)
    }

    /// The global index of a device of this shard, from its exact name (`sensor-017` is not
    /// `sensor-17`: only the canonical spelling is accepted, so names stay one-to-one).
    pub fn index_of(&self, name: &str) -> Option<u32> {
        let digits = name.strip_prefix(self.prefix.as_str())?;
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if !canonical {
            return None;
        }
        let index: u32 = digits.parse().ok()?;
        self.shard.contains(&index).then_some(index)
    }

    /// An update's value as JSON of its property's base type.
    pub fn value_json(&self, update: &Update) -> Value {
        self.out_json(usize::from(update.property), update.value)
    }

    /// An update as the JSON object the tunnel and logs use.
    pub fn update_json(&self, update: &Update) -> Value {
        let prop = self
            .properties
            .get(usize::from(update.property))
            .map(|p| p.name.as_str())
            .unwrap_or("");
        serde_json::json!({
            "thing": self.name(update.device),
            "property": prop,
            "value": self.value_json(update),
            "time": update.time_ms,
            "quality": update.quality.as_str(),
        })
    }

    /// Converts a raw generator value to what the base type reads.
    fn output(&self, prop: usize, raw: f64) -> f64 {
        match self.properties[prop].base_type {
            BaseType::Integer => raw.round().clamp(f64::from(i32::MIN), f64::from(i32::MAX)),
            BaseType::Long => raw.round().clamp(-MAX_SAFE, MAX_SAFE),
            BaseType::Boolean => f64::from(u8::from(raw >= self.bool_map[prop].0)),
            BaseType::String => 0.0,
            _ => raw,
        }
    }

    /// JSON for an output-domain value.
    fn out_json(&self, prop: usize, out: f64) -> Value {
        let Some(p) = self.properties.get(prop) else {
            return Value::Null;
        };
        match p.base_type {
            BaseType::Integer | BaseType::Long => Value::from(out as i64),
            BaseType::Boolean => Value::Bool(out != 0.0),
            BaseType::String => self.text[prop]
                .as_deref()
                .map_or(Value::Null, |s| Value::String(s.to_owned())),
            _ => Value::from(out),
        }
    }
}

/// Largest integer an f64 holds exactly; LONG values are clamped to it.
const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
/// Salt separating quality draws from value draws.
const SALT_QUALITY: u8 = 1;

/// Properties sharing an interval, advanced by one cursor (see the module docs).
#[derive(Debug)]
struct Group {
    interval: u64,
    props: Vec<u16>,
    cursor: u64,
}

/// The simulated devices of one shard: state, schedule and the query API.
pub struct Fleet {
    schema: Arc<FleetSchema>,
    gens: Vec<Gen>,
    /// Per property: quality thresholds (bad, bad + uncertain); `None` when always GOOD.
    quality: Vec<Option<(f64, f64)>>,
    groups: Vec<Group>,
    seed: u64,
    start_ms: Option<i64>,
    values: Vec<f64>,
    times: Vec<i64>,
    qualities: Vec<u8>,
    text_writes: HashMap<(u32, u16), String>,
    stats: Arc<FleetStats>,
}

impl Fleet {
    /// Validates the config, loads CSV files and builds the shard's state (not yet started).
    pub fn new(cfg: &SimulationConfig) -> Result<Fleet, ConfigError> {
        cfg.validate()?;
        let shard = cfg.shard_range();
        let n = (shard.end - shard.start) as usize;
        let p = cfg.properties.len();
        let mut gens = Vec::with_capacity(p);
        let mut bool_map = Vec::with_capacity(p);
        let mut text = Vec::with_capacity(p);
        for (i, prop) in cfg.properties.iter().enumerate() {
            let at = format!("simulation.properties[{i}].generator");
            let (constant, txt) = match &prop.generator {
                GeneratorConfig::Constant { value } => match value {
                    Value::Bool(b) => (f64::from(u8::from(*b)), None),
                    Value::String(s) => (0.0, Some(Arc::from(s.as_str()))),
                    v => (v.as_f64().unwrap_or(0.0), None),
                },
                _ => (0.0, None),
            };
            let gen = Gen::compile(&prop.generator, constant, &at)?;
            let (lo, hi) = gen.range();
            bool_map.push(((lo + hi) / 2.0, lo, hi));
            text.push(txt);
            gens.push(gen);
        }
        let quality = cfg
            .properties
            .iter()
            .map(|p| {
                p.quality
                    .filter(|q| q.bad_ratio > 0.0 || q.uncertain_ratio > 0.0)
                    .map(|q| (q.bad_ratio, q.bad_ratio + q.uncertain_ratio))
            })
            .collect();
        let mut groups: Vec<Group> = Vec::new();
        for (i, prop) in cfg.properties.iter().enumerate() {
            let q = i as u16; // at most u16::MAX properties, checked by validate
            match groups.iter_mut().find(|g| g.interval == prop.interval_ms) {
                Some(g) => g.props.push(q),
                None => groups.push(Group {
                    interval: prop.interval_ms,
                    props: vec![q],
                    cursor: 0,
                }),
            }
        }
        let mut values = Vec::with_capacity(n * p);
        for j in 0..n as u32 {
            values.extend(gens.iter().map(|g| g.initial(shard.start + j)));
        }
        let schema = Arc::new(FleetSchema {
            prefix: cfg.name_prefix.clone(),
            count: cfg.count,
            shard,
            template: cfg.template.clone(),
            properties: cfg
                .properties
                .iter()
                .map(|p| SimProperty {
                    name: p.name.clone(),
                    base_type: p.base_type,
                    interval_ms: p.interval_ms,
                })
                .collect(),
            bool_map,
            text,
            events: cfg
                .events
                .iter()
                .map(|e| SimEvent {
                    name: e.name.clone(),
                    property: e.property.clone(),
                })
                .collect(),
            watch: cfg
                .properties
                .iter()
                .map(|p| {
                    let (i, e) = cfg
                        .events
                        .iter()
                        .enumerate()
                        .find(|(_, e)| e.property == p.name)?;
                    let t = match (e.above, e.below) {
                        (Some(t), _) => Threshold::Above(t),
                        (None, t) => Threshold::Below(t.unwrap_or_default()),
                    };
                    Some((i as u16, t)) // at most one event per property, checked by validate
                })
                .collect(),
        });
        Ok(Fleet {
            schema,
            gens,
            quality,
            groups,
            seed: cfg.seed,
            start_ms: None,
            values,
            times: vec![0; n * p],
            qualities: vec![quality_to_u8(Quality::Unknown); n * p],
            text_writes: HashMap::new(),
            stats: Arc::new(FleetStats::default()),
        })
    }

    /// The shared immutable part: names, property definitions, JSON rendering.
    pub fn schema(&self) -> &Arc<FleetSchema> {
        &self.schema
    }

    /// Counters shared with the driver and the metrics endpoint.
    pub fn stats(&self) -> &Arc<FleetStats> {
        &self.stats
    }

    /// Devices in the whole fleet.
    pub fn device_count(&self) -> u32 {
        self.schema.count
    }

    /// Global indexes this process runs.
    pub fn shard(&self) -> Range<u32> {
        self.schema.shard()
    }

    /// A device's name.
    pub fn name(&self, index: u32) -> String {
        self.schema.name(index)
    }

    /// The global index of a device of this shard, by name.
    pub fn index_of(&self, name: &str) -> Option<u32> {
        self.schema.index_of(name)
    }

    /// Property definitions.
    pub fn properties(&self) -> &[SimProperty] {
        self.schema.properties()
    }

    /// Fixes the schedule's origin; otherwise the first tick does. Device `j` of the shard is
    /// first due at `start + j * interval / n`.
    pub fn start(&mut self, start_ms: i64) {
        self.start_ms.get_or_insert(start_ms);
    }

    /// When the schedule started, once it has.
    pub fn started_at(&self) -> Option<i64> {
        self.start_ms
    }

    /// Advances every update due at or before `now_ms`, in due order per interval group, and
    /// hands each to `sink`. Returns how many were produced.
    pub fn tick(&mut self, now_ms: i64, sink: &mut impl FnMut(Update)) -> u64 {
        let t0 = *self.start_ms.get_or_insert(now_ms);
        let shard = self.schema.shard.clone();
        let n = u64::from(shard.end - shard.start);
        let p = self.schema.properties.len();
        let mut produced = 0u64;
        let mut skipped = 0u64;
        for g in &mut self.groups {
            let interval = g.interval;
            let due = |s: u64| t0 + ((s / n) * interval + (s % n) * interval / n) as i64;
            // A stall longer than one interval: move to the first update due after now - I.
            if now_ms - due(g.cursor) > interval.max(STALL_MS) as i64 {
                let rel = (now_ms - interval as i64 - t0) as u64;
                let (k, r) = (rel / interval, rel % interval);
                let first = k * n + ((r + 1) * n).div_ceil(interval);
                if first > g.cursor {
                    skipped += (first - g.cursor) * g.props.len() as u64;
                    g.cursor = first;
                }
            }
            loop {
                let s = g.cursor;
                let time_ms = due(s);
                if time_ms > now_ms {
                    break;
                }
                let (k, j) = (s / n, (s % n) as usize);
                let device = shard.start + j as u32;
                let elapsed_ms = time_ms - t0;
                for &q in &g.props {
                    let qi = usize::from(q);
                    let idx = j * p + qi;
                    let step = Step {
                        device,
                        k,
                        elapsed_ms,
                        bits: draw(self.seed, device, q, k, 0),
                    };
                    let raw = self.gens[qi].next(self.values[idx], &step);
                    let quality = match self.quality[qi] {
                        None => Quality::Good,
                        Some((bad, bad_or_uncertain)) => {
                            let u = unit(draw(self.seed, device, q, k, SALT_QUALITY));
                            if u < bad {
                                Quality::Bad
                            } else if u < bad_or_uncertain {
                                Quality::Uncertain
                            } else {
                                Quality::Good
                            }
                        }
                    };
                    let value = self.schema.output(qi, raw);
                    let event = self.schema.watch[qi].and_then(|(e, t)| {
                        let before = self.schema.output(qi, self.values[idx]);
                        // The first value of a device has no predecessor to cross from.
                        (self.times[idx] != 0 && t.crossed(before, value)).then_some(e)
                    });
                    self.values[idx] = raw;
                    self.times[idx] = time_ms;
                    self.qualities[idx] = quality_to_u8(quality);
                    if !self.text_writes.is_empty() {
                        self.text_writes.remove(&(device, q));
                    }
                    sink(Update {
                        device,
                        property: q,
                        value,
                        time_ms,
                        quality,
                        event,
                    });
                    produced += 1;
                }
                g.cursor += 1;
            }
        }
        self.stats.record_tick(produced, skipped);
        produced
    }

    /// Position of a (device, property) pair in the state arrays, if this shard has it.
    fn slot(&self, index: u32, prop: &str) -> Option<(usize, usize)> {
        let shard = &self.schema.shard;
        if !shard.contains(&index) {
            return None;
        }
        let q = usize::from(self.schema.property_index(prop)?);
        let j = (index - shard.start) as usize;
        Some((q, j * self.schema.properties.len() + q))
    }

    /// A property's current value, time and quality (UNKNOWN with time 0 before its first
    /// update); `None` for a device outside the shard or an unknown property.
    pub fn read(&self, index: u32, prop_name: &str) -> Option<Reading> {
        let (q, idx) = self.slot(index, prop_name)?;
        Some(self.reading(index, q, idx))
    }

    /// All of a device's properties, in definition order.
    pub fn read_all(&self, index: u32) -> Option<Vec<(&SimProperty, Reading)>> {
        let shard = &self.schema.shard;
        if !shard.contains(&index) {
            return None;
        }
        let p = self.schema.properties.len();
        let base = (index - shard.start) as usize * p;
        Some(
            self.schema
                .properties
                .iter()
                .enumerate()
                .map(|(q, def)| (def, self.reading(index, q, base + q)))
                .collect(),
        )
    }

    fn reading(&self, index: u32, q: usize, idx: usize) -> Reading {
        let value = match self.text_writes.get(&(index, q as u16)) {
            Some(s) => Value::String(s.clone()),
            None => self
                .schema
                .out_json(q, self.schema.output(q, self.values[idx])),
        };
        (value, self.times[idx], quality_from_u8(self.qualities[idx]))
    }

    /// Sets a property now (wall clock); see [`Fleet::write_at`].
    pub fn write(&mut self, index: u32, prop_name: &str, value: &Value) -> Result<(), WriteError> {
        self.write_at(index, prop_name, value, now_unix_ms())
    }

    /// Sets a property, type-checked against its base type, with quality GOOD. The value holds
    /// until the generator's next update of that property: counters and random walks continue
    /// from it, the other generators replace it. A BOOLEAN write stores the top (true) or bottom
    /// (false) of the generator's range, so stateful generators continue from there.
    pub fn write_at(
        &mut self,
        index: u32,
        prop_name: &str,
        value: &Value,
        now_ms: i64,
    ) -> Result<(), WriteError> {
        if !self.schema.shard.contains(&index) {
            return Err(WriteError::UnknownDevice(index));
        }
        let (q, idx) = self
            .slot(index, prop_name)
            .ok_or_else(|| WriteError::UnknownProperty(prop_name.to_owned()))?;
        let bt = self.schema.properties[q].base_type;
        let v = bt.coerce_json(value).map_err(|source| WriteError::Type {
            property: prop_name.to_owned(),
            source,
        })?;
        let raw = match (bt, &v) {
            (BaseType::Boolean, Value::Bool(b)) => {
                let (_, lo, hi) = self.schema.bool_map[q];
                if *b {
                    hi
                } else {
                    lo
                }
            }
            (BaseType::String, Value::String(s)) => {
                self.text_writes.insert((index, q as u16), s.clone());
                0.0
            }
            (_, v) => v.as_f64().unwrap_or(0.0),
        };
        self.values[idx] = raw;
        self.times[idx] = now_ms;
        self.qualities[idx] = quality_to_u8(Quality::Good);
        Ok(())
    }

    /// Bytes of per-device state this fleet holds (arrays only, excluding allocator overhead).
    pub fn state_bytes(&self) -> usize {
        self.values.capacity() * 8 + self.times.capacity() * 8 + self.qualities.capacity()
    }
}

/// The wall clock in Unix milliseconds (0 if the clock is before 1970).
pub(crate) fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Counters for metrics and tests: what the fleet produced and what was lost.
#[derive(Debug, Default)]
pub struct FleetStats {
    /// Updates produced by ticks.
    pub updates_generated: AtomicU64,
    /// Updates skipped because ticks stalled for more than one interval.
    pub updates_skipped: AtomicU64,
    /// Batches dropped because the consumer's channel was full.
    pub batches_dropped: AtomicU64,
    /// Updates in those dropped batches.
    pub updates_dropped: AtomicU64,
}

impl FleetStats {
    /// Adds one tick's counts.
    pub(crate) fn record_tick(&self, produced: u64, skipped: u64) {
        if produced > 0 {
            self.updates_generated
                .fetch_add(produced, Ordering::Relaxed);
        }
        if skipped > 0 {
            self.updates_skipped.fetch_add(skipped, Ordering::Relaxed);
        }
    }
}
