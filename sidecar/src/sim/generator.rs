//! Compiled generators: the per-property parameters in the form the hot loop wants.
//!
//! Randomness is counter-based: the draw for (seed, device, property, update number) is a hash,
//! not the next output of a stored PRNG. That costs no memory per device, and a device's values
//! depend only on the seed and the schedule, not on how ticks happen to group updates (a stateful
//! per-device PRNG would hand out draws in tick order, which differs with tick cadence).

use std::path::Path;
use std::sync::Arc;

use edgeway_runtime::ConfigError;

use super::config::{CsvColumn, GeneratorConfig};

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
mod tests {
    use super::*;

    fn step(device: u32, k: u64, elapsed_ms: i64) -> Step {
        Step {
            device,
            k,
            elapsed_ms,
            bits: draw(7, device, 0, k, 0),
        }
    }

    /// Runs a generator for one device at a fixed interval, threading state like the fleet.
    fn series(g: &Gen, device: u32, interval: i64, n: u64) -> Vec<f64> {
        let mut v = g.initial(device);
        (0..n)
            .map(|k| {
                v = g.next(v, &step(device, k, k as i64 * interval));
                v
            })
            .collect()
    }

    #[test]
    fn sine_stays_in_range_and_repeats_each_period() {
        let g = Gen::Sine {
            mid: 22.5,
            amp: 7.5,
            period: 1000.0,
            phase: 0.0,
        };
        let s = series(&g, 3, 50, 200);
        assert!(s.iter().all(|v| (15.0..=30.0).contains(v)));
        for i in 0..180 {
            assert!((s[i] - s[i + 20]).abs() < 1e-9, "periodic at {i}");
        }
        // It really oscillates: close to both ends within a period.
        let (lo, hi) = s[..20]
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        assert!(lo < 15.5 && hi > 29.5, "{lo} {hi}");
        // Devices differ in phase.
        assert_ne!(series(&g, 4, 50, 1)[0], s[0]);
    }

    #[test]
    fn square_alternates_with_its_duty() {
        let g = Gen::Square {
            low: 0.0,
            high: 5.0,
            period: 1000.0,
            duty: 0.25,
        };
        let s = series(&g, 0, 10, 1000);
        assert!(s.iter().all(|v| *v == 0.0 || *v == 5.0));
        let high = s.iter().filter(|v| **v == 5.0).count();
        assert_eq!(high, 250);
        let switches = s.windows(2).filter(|w| w[0] != w[1]).count();
        assert_eq!(
            switches, 19,
            "two edges per period, less the rising edge at t=0"
        );
    }

    #[test]
    fn ramp_is_a_sawtooth() {
        let g = Gen::Ramp {
            from: 10.0,
            to: 20.0,
            period: 1000.0,
        };
        let s = series(&g, 0, 100, 30);
        assert_eq!(&s[..3], &[10.0, 11.0, 12.0]);
        for w in s.windows(2) {
            let d = w[1] - w[0];
            assert!((d - 1.0).abs() < 1e-9 || (d + 9.0).abs() < 1e-9, "{w:?}");
        }
        assert!(s.iter().all(|v| (10.0..20.0).contains(v)));
        assert_eq!(s.windows(2).filter(|w| w[1] < w[0]).count(), 2);
    }

    #[test]
    fn counter_counts_and_wraps() {
        let g = Gen::Counter {
            start: 5.0,
            step: 2.0,
            wrap_at: Some(11.0),
        };
        assert_eq!(
            series(&g, 9, 1000, 8),
            [5.0, 7.0, 9.0, 5.0, 7.0, 9.0, 5.0, 7.0]
        );
        let down = Gen::Counter {
            start: 3.0,
            step: -1.0,
            wrap_at: Some(0.0),
        };
        assert_eq!(series(&down, 0, 1000, 5), [3.0, 2.0, 1.0, 3.0, 2.0]);
        let up = Gen::Counter {
            start: 0.0,
            step: 1.0,
            wrap_at: None,
        };
        assert_eq!(series(&up, 0, 1000, 4), [0.0, 1.0, 2.0, 3.0]);
        // Stateful: continues from a written value.
        assert_eq!(up.next(100.0, &step(0, 5, 5000)), 101.0);
    }

    #[test]
    fn random_walk_is_bounded_and_moves() {
        let g = Gen::RandomWalk {
            start: 5.0,
            step: 1.0,
            min: 0.0,
            max: 10.0,
        };
        let s = series(&g, 1, 1000, 10_000);
        assert_eq!(s[0], 5.0);
        assert!(s.iter().all(|v| (0.0..=10.0).contains(v)));
        assert!(s.windows(2).all(|w| (w[1] - w[0]).abs() <= 1.0));
        let distinct = s.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(distinct > 9000);
        // Over many steps it explores the range.
        assert!(s.iter().any(|v| *v < 1.0) && s.iter().any(|v| *v > 9.0));
    }

    #[test]
    fn uniform_is_bounded_and_spread() {
        let g = Gen::Uniform {
            min: -1.0,
            max: 1.0,
        };
        let s = series(&g, 2, 1000, 10_000);
        assert!(s.iter().all(|v| (-1.0..1.0).contains(v)));
        let mean = s.iter().sum::<f64>() / s.len() as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
        let below = s.iter().filter(|v| **v < -0.5).count();
        assert!((2200..2800).contains(&below), "{below}");
    }

    #[test]
    fn constant_is_constant() {
        let g = Gen::Constant(4.5);
        assert!(series(&g, 0, 1000, 10).iter().all(|v| *v == 4.5));
    }

    #[test]
    fn draws_are_independent_per_key() {
        let a = draw(1, 0, 0, 0, 0);
        for (s, d, p, k, salt) in [
            (2, 0, 0, 0, 0),
            (1, 1, 0, 0, 0),
            (1, 0, 1, 0, 0),
            (1, 0, 0, 1, 0),
            (1, 0, 0, 0, 1),
        ] {
            assert_ne!(draw(s, d, p, k, salt), a);
        }
        assert_eq!(draw(1, 0, 0, 0, 0), a);
    }

    fn temp_csv(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("edgeway-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn csv_replays_in_order_from_a_device_offset_and_loops() {
        let p = temp_csv("a.csv", "time,temp\n0,1.5\n1,2.5\n\n2,3.5\n");
        let cfg = GeneratorConfig::Csv {
            file: p.clone(),
            column: CsvColumn::Name("temp".into()),
            looping: true,
        };
        let g = Gen::compile(&cfg, 0.0, "g").unwrap();
        assert_eq!(series(&g, 0, 1000, 5), [1.5, 2.5, 3.5, 1.5, 2.5]);
        assert_eq!(series(&g, 4, 1000, 3), [2.5, 3.5, 1.5]);
        let once = GeneratorConfig::Csv {
            file: p.clone(),
            column: CsvColumn::Index(1),
            looping: false,
        };
        let g = Gen::compile(&once, 0.0, "g").unwrap();
        assert_eq!(series(&g, 1, 1000, 4), [2.5, 3.5, 3.5, 3.5]);
        assert_eq!(g.range(), (1.5, 3.5));
        // Index column without a header.
        let p2 = temp_csv("b.csv", "7,8\n9,10\n");
        let g = Gen::compile(
            &GeneratorConfig::Csv {
                file: p2,
                column: CsvColumn::Index(1),
                looping: true,
            },
            0.0,
            "g",
        )
        .unwrap();
        assert_eq!(series(&g, 0, 1000, 3), [8.0, 10.0, 8.0]);
    }

    #[test]
    fn csv_errors_name_the_field() {
        let at = "simulation.properties[0].generator";
        let p = temp_csv("c.csv", "a,b\n1,x\n");
        let compile = |file: std::path::PathBuf, column: CsvColumn| {
            Gen::compile(
                &GeneratorConfig::Csv {
                    file,
                    column,
                    looping: true,
                },
                0.0,
                at,
            )
            .unwrap_err()
        };
        let e = compile(p.with_file_name("missing.csv"), CsvColumn::Index(0));
        assert_eq!(e.field, format!("{at}.file"));
        let e = compile(p.clone(), CsvColumn::Name("c".into()));
        assert_eq!(e.field, format!("{at}.column"));
        let e = compile(p.clone(), CsvColumn::Index(5));
        assert_eq!(e.field, format!("{at}.column"));
        let e = compile(p.clone(), CsvColumn::Name("b".into()));
        assert_eq!(e.field, format!("{at}.file"));
        assert!(e.message.contains("line 2"), "{e}");
        let e = compile(temp_csv("d.csv", "a\n"), CsvColumn::Name("a".into()));
        assert!(e.message.contains("no data rows"), "{e}");
    }
}
