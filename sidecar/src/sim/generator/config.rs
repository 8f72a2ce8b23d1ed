//! A generator's settings as the config file declares them (`kind` plus its parameters), and
//! their checks against the property's base type. [`super::Generator`] runs them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use edgeway_protocol::basetype::BaseType;
use edgeway_runtime::ConfigError;

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

fn one() -> f64 {
    1.0
}
fn half() -> f64 {
    0.5
}
fn yes() -> bool {
    true
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
