//! Generators: their declared settings ([`config`]) and, compiled from them, the per-property
//! parameters in the form the hot loop wants.
//!
//! Randomness is counter-based: the draw for (seed, device, property, update number) is a hash,
//! not the next output of a stored PRNG. That costs no memory per device, and a device's values
//! depend only on the seed and the schedule, not on how ticks happen to group updates (a stateful
//! per-device PRNG would hand out draws in tick order, which differs with tick cadence).

use std::path::Path;
use std::sync::Arc;

use edgeway_runtime::ConfigError;

mod config;
pub use config::{CsvColumn, GeneratorConfig};

/// Golden-ratio increment (2^64 / phi), the splitmix64 stream constant.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64's finaliser (Steele, Lea, Flood 2014): a fast, well-mixing 64-bit bijection.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Independent 64 random bits for one (device, property, update number, purpose).
pub(crate) fn draw(seed: u64, device: u32, property: u16, k: u64, salt: u8) -> u64 {
    let key = mix(seed ^ mix(u64::from(device).wrapping_add(1).wrapping_mul(GOLDEN)));
    let key = mix(key ^ (u64::from(property) << 8 | u64::from(salt)).wrapping_mul(GOLDEN));
    mix(key.wrapping_add(k.wrapping_mul(GOLDEN)))
}

/// Maps random bits to a uniform float in `[0, 1)`.
pub(crate) fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A per-device phase in `[0, 1)`: golden-ratio steps spread any number of devices evenly.
pub(crate) fn device_phase(device: u32) -> f64 {
    (f64::from(device) * 0.618_033_988_749_894_9).fract()
}

/// A generator ready to run; numbers only (STRING constants live in the schema).
#[derive(Debug, Clone)]
pub(crate) enum Gen {
    Constant(f64),
    Counter {
        start: f64,
        step: f64,
        wrap_at: Option<f64>,
    },
    Ramp {
        from: f64,
        to: f64,
        period: f64,
    },
    Uniform {
        min: f64,
        max: f64,
    },
    RandomWalk {
        start: f64,
        step: f64,
        min: f64,
        max: f64,
    },
    Sine {
        mid: f64,
        amp: f64,
        period: f64,
        phase: f64,
    },
    Square {
        low: f64,
        high: f64,
        period: f64,
        duty: f64,
    },
    Csv {
        rows: Arc<[f64]>,
        looping: bool,
    },
}

/// What one update needs to know besides the previous value.
pub(crate) struct Step {
    /// Global device index.
    pub device: u32,
    /// Update number of this device for this property (0 = first).
    pub k: u64,
    /// Milliseconds since the fleet started.
    pub elapsed_ms: i64,
    /// Random bits for this update.
    pub bits: u64,
}

impl Gen {
    /// Compiles a validated config; `constant` carries its numeric value (bool as 0/1).
    /// CSV files are read here; `at` is the generator's field path for errors.
    pub fn compile(cfg: &GeneratorConfig, constant: f64, at: &str) -> Result<Gen, ConfigError> {
        Ok(match cfg {
            GeneratorConfig::Constant { .. } => Gen::Constant(constant),
            GeneratorConfig::Counter {
                start,
                step,
                wrap_at,
            } => Gen::Counter {
                start: *start,
                step: *step,
                wrap_at: *wrap_at,
            },
            GeneratorConfig::Ramp {
                from,
                to,
                period_ms,
            } => Gen::Ramp {
                from: *from,
                to: *to,
                period: *period_ms as f64,
            },
            GeneratorConfig::Uniform { min, max } => Gen::Uniform {
                min: *min,
                max: *max,
            },
            GeneratorConfig::RandomWalk {
                start,
                step,
                min,
                max,
            } => Gen::RandomWalk {
                start: *start,
                step: *step,
                min: *min,
                max: *max,
            },
            GeneratorConfig::Sine {
                min,
                max,
                period_ms,
                phase,
            } => Gen::Sine {
                mid: (min + max) / 2.0,
                amp: (max - min) / 2.0,
                period: *period_ms as f64,
                phase: *phase,
            },
            GeneratorConfig::Square {
                low,
                high,
                period_ms,
                duty,
            } => Gen::Square {
                low: *low,
                high: *high,
                period: *period_ms as f64,
                duty: *duty,
            },
            GeneratorConfig::Csv {
                file,
                column,
                looping,
            } => Gen::Csv {
                rows: load_csv(file, column, at)?.into(),
                looping: *looping,
            },
        })
    }

    /// The range the generator's values span, for BOOLEAN thresholds and boolean writes.
    pub fn range(&self) -> (f64, f64) {
        let ordered = |a: f64, b: f64| (a.min(b), a.max(b));
        match self {
            Gen::Constant(v) => (v.min(0.0), v.max(1.0)),
            Gen::Counter { start, wrap_at, .. } => ordered(*start, wrap_at.unwrap_or(*start)),
            Gen::Ramp { from, to, .. } => ordered(*from, *to),
            Gen::Uniform { min, max } | Gen::RandomWalk { min, max, .. } => (*min, *max),
            Gen::Sine { mid, amp, .. } => (mid - amp, mid + amp),
            Gen::Square { low, high, .. } => ordered(*low, *high),
            Gen::Csv { rows, .. } => rows
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(*v), hi.max(*v))
                }),
        }
    }

    /// The value before the first update.
    pub fn initial(&self, device: u32) -> f64 {
        self.next(
            f64::NAN,
            &Step {
                device,
                k: 0,
                elapsed_ms: 0,
                bits: 0,
            },
        )
    }

    /// The next raw value. Stateful kinds (counter, random walk) continue from `prev`, so a
    /// written value carries on; the others overwrite it.
    pub fn next(&self, prev: f64, s: &Step) -> f64 {
        // Position within the period, shifted per device so the fleet is not in lock-step.
        let cycle = |period: f64, phase: f64| {
            (s.elapsed_ms as f64 / period + phase + device_phase(s.device)).rem_euclid(1.0)
        };
        match self {
            Gen::Constant(v) => *v,
            Gen::Counter {
                start,
                step,
                wrap_at,
            } => {
                if s.k == 0 || prev.is_nan() {
                    return *start;
                }
                let next = prev + step;
                match wrap_at {
                    Some(w) if (next - w) * step.signum() >= 0.0 => *start,
                    _ => next,
                }
            }
            Gen::Ramp { from, to, period } => from + (to - from) * cycle(*period, 0.0),
            Gen::Uniform { min, max } => min + (max - min) * unit(s.bits),
            Gen::RandomWalk {
                start,
                step,
                min,
                max,
            } => {
                if s.k == 0 || prev.is_nan() {
                    return *start;
                }
                (prev + step * (2.0 * unit(s.bits) - 1.0)).clamp(*min, *max)
            }
            Gen::Sine {
                mid,
                amp,
                period,
                phase,
            } => mid + amp * (std::f64::consts::TAU * cycle(*period, *phase)).sin(),
            Gen::Square {
                low,
                high,
                period,
                duty,
            } => {
                if cycle(*period, 0.0) < *duty {
                    *high
                } else {
                    *low
                }
            }
            Gen::Csv { rows, looping } => {
                let len = rows.len() as u64;
                let row = u64::from(s.device) % len + s.k;
                let row = if *looping {
                    row % len
                } else {
                    row.min(len - 1)
                };
                rows[row as usize]
            }
        }
    }
}

/// Reads one numeric column. Deliberately simple: comma-separated, no quoted fields. With a
/// named column the first line is the header; with an index it is skipped if not a number.
fn load_csv(file: &Path, column: &CsvColumn, at: &str) -> Result<Vec<f64>, ConfigError> {
    let file_field = format!("{at}.file");
    let text = std::fs::read_to_string(file).map_err(|e| {
        ConfigError::new(&file_field, format!("cannot read {}: {e}", file.display()))
    })?;
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .peekable();
    let col = match column {
        CsvColumn::Index(i) => {
            if let Some((_, first)) = lines.peek() {
                if cell(first, *i).is_some_and(|c| c.parse::<f64>().is_err()) {
                    lines.next();
                }
            }
            *i
        }
        CsvColumn::Name(name) => {
            let (_, header) = lines
                .next()
                .ok_or_else(|| ConfigError::new(&file_field, "empty file, expected a header"))?;
            header
                .split(',')
                .position(|h| h.trim().trim_matches('"') == name)
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("{at}.column"),
                        format!("no column {name:?} in the header of {}", file.display()),
                    )
                })?
        }
    };
    let mut rows = Vec::new();
    for (n, line) in lines {
        let c = cell(line, col).ok_or_else(|| {
            ConfigError::new(
                format!("{at}.column"),
                format!("line {n} of {} has no column {col}", file.display()),
            )
        })?;
        let v = c
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| {
                ConfigError::new(
                    &file_field,
                    format!(
                        "line {n} of {}: {c:?} is not a number (quoted fields are not supported)",
                        file.display()
                    ),
                )
            })?;
        rows.push(v);
    }
    if rows.is_empty() {
        return Err(ConfigError::new(
            file_field,
            format!("{} has no data rows", file.display()),
        ));
    }
    Ok(rows)
}

/// One cell of a CSV line, trimmed and unquoted.
fn cell(line: &str, col: usize) -> Option<&str> {
    line.split(',').nth(col).map(|c| c.trim().trim_matches('"'))
}

#[cfg(test)]
mod tests;
