//! The `simulation` config section: plain serde data, validated with field paths.
//!
//! These types are embedded in the sidecar config and later in a Kubernetes CRD, so they stay
//! plain data; everything that needs I/O (CSV files) is checked when a [`super::Fleet`] is built.

use serde::{Deserialize, Serialize};

use edgeway_protocol::basetype::BaseType;
use edgeway_runtime::ConfigError;

use super::generator::GeneratorConfig;

/// A simulated fleet: how many devices, which slice of them this process runs, what they report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SimulationConfig {
    /// Device names are this prefix followed by the global index, e.g. `sensor-17`.
    #[serde(default = "default_prefix")]
    pub name_prefix: String,
    /// Devices in the whole fleet, across all shards.
    pub count: u32,
    /// Index range `[start, end)` this process runs; the whole fleet when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRange>,
    /// Seed for every random draw, so runs are reproducible.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Lua template whose services the devices expose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// What every device reports.
    #[serde(default)]
    pub properties: Vec<SimPropertyConfig>,
    /// Events devices fire when a numeric property crosses a threshold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<SimEventConfig>,
}

/// An event a device fires when a new value of `property` crosses a threshold: with `above`,
/// when the previous value was at most `above` and the new one is over it; with `below`, when
/// the previous value was at least `below` and the new one is under it. The event's data is
/// `{property: <name>, value: <new value>}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SimEventConfig {
    /// Event name.
    pub name: String,
    /// The NUMBER, INTEGER or LONG property watched (one event per property).
    pub property: String,
    /// Fire on rising over this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Fire on falling under this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
}

/// A half-open range of global device indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ShardRange {
    /// First index run here.
    pub start: u32,
    /// One past the last index run here.
    pub end: u32,
}

/// One simulated property, the same on every device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SimPropertyConfig {
    /// Property name, unique among the properties.
    pub name: String,
    /// NUMBER, INTEGER, LONG, BOOLEAN or STRING.
    pub base_type: BaseType,
    /// Time between two updates of this property on one device, in milliseconds.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// How values are produced.
    pub generator: GeneratorConfig,
    /// Optional injection of BAD / UNCERTAIN quality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualityConfig>,
}

/// Share of updates reported with a quality other than GOOD.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QualityConfig {
    /// Fraction of updates with quality BAD, in `[0, 1]`.
    #[serde(default)]
    pub bad_ratio: f64,
    /// Fraction of updates with quality UNCERTAIN, in `[0, 1]`.
    #[serde(default)]
    pub uncertain_ratio: f64,
}

fn default_prefix() -> String {
    "sim-".into()
}
fn default_seed() -> u64 {
    0x5eed
}
fn default_interval() -> u64 {
    1000
}

/// Shortest update interval: faster than the driver's tick is not meaningful.
pub const MIN_INTERVAL_MS: u64 = 10;
/// Longest update interval (one day), so schedule arithmetic stays far from overflow.
pub const MAX_INTERVAL_MS: u64 = 86_400_000;
/// Upper bound on (device, property) pairs in one shard (about 17 bytes each).
pub const MAX_PAIRS: u64 = 50_000_000;
/// Longest name prefix, leaving room for the index within the 256-byte name limit.
const MAX_PREFIX: usize = 200;

impl SimulationConfig {
    /// Validates as the `simulation` section of the sidecar config.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_at("simulation")
    }

    /// Validates with error paths rooted at `path` (e.g. `spec.simulation` in a CRD).
    pub fn validate_at(&self, path: &str) -> Result<(), ConfigError> {
        let p = |f: &str| format!("{path}.{f}");
        if self.name_prefix.len() > MAX_PREFIX || !self.name_prefix.chars().all(name_char) {
            return Err(ConfigError::new(
                p("namePrefix"),
                format!(
                    "{:?} is not a valid name prefix (at most {MAX_PREFIX} letters, digits, '_', '-', '.')",
                    self.name_prefix
                ),
            ));
        }
        if self.count == 0 {
            return Err(ConfigError::new(p("count"), "must be positive"));
        }
        let shard = self.shard_range();
        if let Some(s) = &self.shard {
            if s.start >= s.end {
                return Err(ConfigError::new(
                    p("shard"),
                    format!("empty range [{}, {})", s.start, s.end),
                ));
            }
            if s.end > self.count {
                return Err(ConfigError::new(
                    p("shard.end"),
                    format!("{} is beyond count {}", s.end, self.count),
                ));
            }
        }
        if let Some(t) = &self.template {
            if t.is_empty() || !t.chars().all(name_char) {
                return Err(ConfigError::new(
                    p("template"),
                    format!("{t:?} is not a valid template name"),
                ));
            }
        }
        if self.properties.len() > usize::from(u16::MAX) {
            return Err(ConfigError::new(
                p("properties"),
                "at most 65535 properties",
            ));
        }
        let pairs = u64::from(shard.end - shard.start) * self.properties.len() as u64;
        if pairs > MAX_PAIRS {
            return Err(ConfigError::new(
                p("properties"),
                format!("{pairs} (device, property) pairs in this shard; at most {MAX_PAIRS} (use more shards)"),
            ));
        }
        for (i, prop) in self.properties.iter().enumerate() {
            let at = format!("{path}.properties[{i}]");
            if self.properties[..i].iter().any(|o| o.name == prop.name) {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    format!("duplicate property {:?}", prop.name),
                ));
            }
            prop.validate_at(&at)?;
        }
        for (i, ev) in self.events.iter().enumerate() {
            let at = |f: &str| format!("{path}.events[{i}].{f}");
            if ev.name.is_empty() || ev.name.len() > 256 || !ev.name.chars().all(name_char) {
                return Err(ConfigError::new(
                    at("name"),
                    format!(
                        "{:?} is not a valid event name (letters, digits, '_', '-', '.')",
                        ev.name
                    ),
                ));
            }
            let Some(prop) = self.properties.iter().find(|p| p.name == ev.property) else {
                return Err(ConfigError::new(
                    at("property"),
                    format!("no simulated property {:?}", ev.property),
                ));
            };
            if !matches!(
                prop.base_type,
                BaseType::Number | BaseType::Integer | BaseType::Long
            ) {
                return Err(ConfigError::new(
                    at("property"),
                    format!(
                        "{:?} is a {}; thresholds need NUMBER, INTEGER or LONG",
                        prop.name, prop.base_type
                    ),
                ));
            }
            if self.events[..i].iter().any(|o| o.property == ev.property) {
                return Err(ConfigError::new(
                    at("property"),
                    format!(
                        "{:?} already has an event; one event per property",
                        ev.property
                    ),
                ));
            }
            match (ev.above, ev.below) {
                (Some(t), None) | (None, Some(t)) if t.is_finite() => {}
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        at("above"),
                        "give `above` or `below`, not both",
                    ))
                }
                (None, None) => {
                    return Err(ConfigError::new(at("above"), "give `above` or `below`"))
                }
                _ => return Err(ConfigError::new(at("above"), "must be a finite number")),
            }
        }
        Ok(())
    }

    /// The global index range this process runs.
    pub fn shard_range(&self) -> std::ops::Range<u32> {
        match self.shard {
            Some(s) => s.start..s.end,
            None => 0..self.count,
        }
    }
}

impl SimPropertyConfig {
    /// Validates one property; `at` is its path, e.g. `simulation.properties[2]`.
    pub fn validate_at(&self, at: &str) -> Result<(), ConfigError> {
        let p = |f: &str| format!("{at}.{f}");
        if self.name.is_empty() || self.name.len() > 256 || !self.name.chars().all(name_char) {
            return Err(ConfigError::new(
                p("name"),
                format!(
                    "{:?} is not a valid property name (letters, digits, '_', '-', '.')",
                    self.name
                ),
            ));
        }
        let bt = self.base_type;
        if !matches!(
            bt,
            BaseType::Number
                | BaseType::Integer
                | BaseType::Long
                | BaseType::Boolean
                | BaseType::String
        ) {
            return Err(ConfigError::new(
                p("baseType"),
                format!("{bt} cannot be simulated (use NUMBER, INTEGER, LONG, BOOLEAN or STRING)"),
            ));
        }
        if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&self.interval_ms) {
            return Err(ConfigError::new(
                p("intervalMs"),
                format!("must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS}"),
            ));
        }
        if let Some(q) = &self.quality {
            let ratio = |v: f64, f: &str| {
                if (0.0..=1.0).contains(&v) {
                    Ok(())
                } else {
                    Err(ConfigError::new(p(f), "must be between 0 and 1"))
                }
            };
            ratio(q.bad_ratio, "quality.badRatio")?;
            ratio(q.uncertain_ratio, "quality.uncertainRatio")?;
            if q.bad_ratio + q.uncertain_ratio > 1.0 {
                return Err(ConfigError::new(
                    p("quality"),
                    "badRatio + uncertainRatio must not exceed 1",
                ));
            }
        }
        self.generator.validate_at(&p("generator"), bt)
    }
}

/// Characters allowed in device, property and template names (as for Lua thing names).
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

#[cfg(test)]
mod tests;
