//! Simulated device fleets: many things from one template, cheap enough for 100,000 on one core.
//!
//! A [`Fleet`] holds the state of the devices of one shard in flat arrays (about 17 bytes per
//! device and property), and [`Fleet::tick`] advances only the updates that are due. The
//! [`spawn`] driver ticks it on a timer and sends batches of [`Update`]s to a channel; the REST
//! server and the tunnel query it with [`Fleet::read`] / [`Fleet::write`] and turn updates into
//! JSON through the shared [`FleetSchema`].
//!
//! ```text
//! config ──Fleet::new──► Fleet (Arc<Mutex<_>>) ──spawn──► mpsc<Vec<Update>> ──► tunnel
//!                          ▲ read / write (REST)                 └─ FleetSchema::value_json
//! ```

pub mod config;
pub mod driver;
pub mod fleet;
pub(crate) mod generator;

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;

pub use config::{QualityConfig, ShardRange, SimEventConfig, SimPropertyConfig, SimulationConfig};
pub use driver::spawn;
pub use fleet::{Fleet, FleetSchema, FleetStats, Reading, SimEvent, SimProperty, WriteError};
pub use generator::{CsvColumn, GeneratorConfig};

/// Quality is the sidecar's shared type, so updates pass to the tunnel unchanged.
pub use edgeway_protocol::basetype::Quality;

/// Packs a quality into the byte the fleet stores per value.
pub(crate) fn quality_to_u8(q: Quality) -> u8 {
    match q {
        Quality::Good => 0,
        Quality::Bad => 1,
        Quality::Uncertain => 2,
        Quality::Unknown => 3,
    }
}

/// Unpacks a stored quality byte.
pub(crate) fn quality_from_u8(b: u8) -> Quality {
    match b {
        0 => Quality::Good,
        1 => Quality::Bad,
        2 => Quality::Uncertain,
        _ => Quality::Unknown,
    }
}

/// One new property value of one device, as produced by [`Fleet::tick`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update {
    /// Global device index; [`FleetSchema::name`] gives the name.
    pub device: u32,
    /// Index into [`FleetSchema::properties`].
    pub property: u16,
    /// The value as the base type reads it: INTEGER/LONG rounded, BOOLEAN 0 or 1, STRING 0
    /// (its text is in the schema); [`FleetSchema::value_json`] gives the JSON form.
    pub value: f64,
    /// When the update was scheduled, in Unix milliseconds.
    pub time_ms: i64,
    /// Quality of this reading.
    pub quality: Quality,
    /// The event this value fired (index into [`FleetSchema::events`]): it crossed the
    /// event's threshold.
    pub event: Option<u16>,
}
