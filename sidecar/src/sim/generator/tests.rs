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
