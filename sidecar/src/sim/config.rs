//! The `simulation` config section: plain serde data, validated with field paths.
//!
//! These types are embedded in the sidecar config and later in a Kubernetes CRD, so they stay
//! plain data; everything that needs I/O (CSV files) is checked when a [`super::Fleet`] is built.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use edgeway_protocol::basetype::BaseType;
use edgeway_runtime::ConfigError;

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

/// A value generator; `kind` selects the variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum GeneratorConfig {
    /// Always the same value (the only kind for STRING).
    Constant {
        /// The value, of the property's base type.
        value: serde_json::Value,
    },
    /// `start`, `start + step`, ...; back to `start` on reaching `wrapAt`.
    Counter {
        /// First value.
        #[serde(default)]
        start: f64,
        /// Added on every update; non-zero.
        #[serde(default = "one")]
        step: f64,
        /// Restart at `start` when the next value would reach this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wrap_at: Option<f64>,
    },
    /// Sawtooth from `from` to `to` over `periodMs`, then jump back.
    Ramp {
        /// Value at the start of each period.
        from: f64,
        /// Value approached at the end of each period.
        to: f64,
        /// Length of one ramp.
        period_ms: u64,
    },
    /// Independent uniform draws in `[min, max)`.
    Uniform {
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
    /// Moves by up to `step` either way per update, clamped to `[min, max]`.
    RandomWalk {
        /// First value.
        start: f64,
        /// Largest move per update.
        step: f64,
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
    /// A sine wave between `min` and `max`.
    Sine {
        /// Trough.
        min: f64,
        /// Crest.
        max: f64,
        /// Length of one cycle.
        period_ms: u64,
        /// Phase shift as a fraction of the period, `[0, 1]`.
        #[serde(default)]
        phase: f64,
    },
    /// `high` for `duty` of each period, `low` for the rest.
    Square {
        /// Value in the off part.
        low: f64,
        /// Value in the on part.
        high: f64,
        /// Length of one cycle.
        period_ms: u64,
        /// Fraction of the period spent at `high`, `[0, 1]`.
        #[serde(default = "half")]
        duty: f64,
    },
    /// Replays one numeric column of a CSV file, one row per update.
    Csv {
        /// The CSV file (comma-separated; a header line when `column` is a name).
        file: PathBuf,
        /// Column name from the header, or 0-based index.
        column: CsvColumn,
        /// Start over after the last row; otherwise hold the last value.
        #[serde(default = "yes", rename = "loop")]
        looping: bool,
    },
}

/// A CSV column, by header name or by 0-based index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum CsvColumn {
    /// 0-based column index.
    Index(usize),
    /// Header name.
    Name(String),
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
fn one() -> f64 {
    1.0
}
fn half() -> f64 {
    0.5
}
fn yes() -> bool {
    true
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

impl GeneratorConfig {
    /// The `kind` tag, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            GeneratorConfig::Constant { .. } => "constant",
            GeneratorConfig::Counter { .. } => "counter",
            GeneratorConfig::Ramp { .. } => "ramp",
            GeneratorConfig::Uniform { .. } => "uniform",
            GeneratorConfig::RandomWalk { .. } => "randomWalk",
            GeneratorConfig::Sine { .. } => "sine",
            GeneratorConfig::Square { .. } => "square",
            GeneratorConfig::Csv { .. } => "csv",
        }
    }

    /// Checks parameters against each other and against the base type; `at` ends in `.generator`.
    pub fn validate_at(&self, at: &str, bt: BaseType) -> Result<(), ConfigError> {
        let p = |f: &str| format!("{at}.{f}");
        let err = |f: &str, m: String| Err(ConfigError::new(p(f), m));
        // Every number must be finite and, for INTEGER, within i32 after rounding.
        let num = |f: &str, v: f64| -> Result<(), ConfigError> {
            if !v.is_finite() {
                return err(f, "must be a finite number".into());
            }
            if bt == BaseType::Integer && v.round().abs() > f64::from(i32::MAX) {
                return err(f, format!("{v} does not fit an INTEGER"));
            }
            Ok(())
        };
        let period = |v: u64| -> Result<(), ConfigError> {
            if v == 0 {
                return err("periodMs", "must be positive".into());
            }
            Ok(())
        };
        let fraction = |f: &str, v: f64| -> Result<(), ConfigError> {
            if !(0.0..=1.0).contains(&v) {
                return err(f, "must be between 0 and 1".into());
            }
            Ok(())
        };
        let ordered = |min: f64, max: f64| -> Result<(), ConfigError> {
            num("min", min)?;
            num("max", max)?;
            if min >= max {
                return err("max", format!("must be greater than min ({min})"));
            }
            Ok(())
        };
        if bt == BaseType::String && !matches!(self, GeneratorConfig::Constant { .. }) {
            return err(
                "kind",
                format!("STRING properties need kind constant, not {}", self.kind()),
            );
        }
        match self {
            GeneratorConfig::Constant { value } => {
                if let Err(e) = bt.coerce_json(value) {
                    return err("value", e.to_string());
                }
            }
            GeneratorConfig::Counter {
                start,
                step,
                wrap_at,
            } => {
                num("start", *start)?;
                num("step", *step)?;
                if *step == 0.0 {
                    return err("step", "must not be 0".into());
                }
                match wrap_at {
                    Some(w) => {
                        num("wrapAt", *w)?;
                        if (*w - *start) * step.signum() <= 0.0 {
                            return err(
                                "wrapAt",
                                format!("must lie beyond start ({start}) in the direction of step"),
                            );
                        }
                    }
                    None if bt == BaseType::Boolean => {
                        return err("wrapAt", "required for a BOOLEAN counter".into());
                    }
                    None => {}
                }
            }
            GeneratorConfig::Ramp {
                from,
                to,
                period_ms,
            } => {
                num("from", *from)?;
                num("to", *to)?;
                if from == to {
                    return err("to", "must differ from `from`".into());
                }
                period(*period_ms)?;
            }
            GeneratorConfig::Uniform { min, max } => ordered(*min, *max)?,
            GeneratorConfig::RandomWalk {
                start,
                step,
                min,
                max,
            } => {
                ordered(*min, *max)?;
                num("start", *start)?;
                if !(*min..=*max).contains(start) {
                    return err("start", format!("must be within [{min}, {max}]"));
                }
                num("step", *step)?;
                if *step <= 0.0 {
                    return err("step", "must be positive".into());
                }
            }
            GeneratorConfig::Sine {
                min,
                max,
                period_ms,
                phase,
            } => {
                ordered(*min, *max)?;
                period(*period_ms)?;
                fraction("phase", *phase)?;
            }
            GeneratorConfig::Square {
                low,
                high,
                period_ms,
                duty,
            } => {
                num("low", *low)?;
                num("high", *high)?;
                if low == high {
                    return err("high", "must differ from low".into());
                }
                period(*period_ms)?;
                fraction("duty", *duty)?;
            }
            GeneratorConfig::Csv { file, column, .. } => {
                if file.as_os_str().is_empty() {
                    return err("file", "must not be empty".into());
                }
                if matches!(column, CsvColumn::Name(n) if n.is_empty()) {
                    return err("column", "must not be empty".into());
                }
            }
        }
        Ok(())
    }
}

/// Characters allowed in device, property and template names (as for Lua thing names).
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

#[cfg(test)]
mod tests;
