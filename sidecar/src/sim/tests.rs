//! Behaviour of whole fleets: naming, scheduling, quality, writes, JSON, reproducibility.

use serde_json::{json, Value};

use super::*;

fn cfg(v: Value) -> SimulationConfig {
    serde_json::from_value(v).unwrap()
}

/// A fleet of `count` devices with the three properties of the docs' example, plus a STRING.
fn example(count: u32, shard: Option<(u32, u32)>, seed: u64) -> Fleet {
    let mut v = json!({
        "namePrefix": "sensor-",
        "count": count,
        "seed": seed,
        "properties": [
            {"name": "temperature", "baseType": "NUMBER",
             "generator": {"kind": "sine", "min": 15, "max": 30, "periodMs": 60000},
             "quality": {"badRatio": 0.01}},
            {"name": "count", "baseType": "INTEGER",
             "generator": {"kind": "counter", "start": 0, "step": 1}},
            {"name": "level", "baseType": "NUMBER",
             "generator": {"kind": "randomWalk", "start": 50, "step": 2, "min": 0, "max": 100}},
            {"name": "model", "baseType": "STRING",
             "generator": {"kind": "constant", "value": "X-100"}}
        ]
    });
    if let Some((start, end)) = shard {
        v["shard"] = json!({"start": start, "end": end});
    }
    Fleet::new(&cfg(v)).unwrap()
}

/// Ticks from 0 to `until_ms` (exclusive) every `every` ms, returning the updates of each tick.
fn run(f: &mut Fleet, every: i64, until_ms: i64) -> Vec<Vec<Update>> {
    (0..until_ms / every)
        .map(|i| {
            let mut batch = Vec::new();
            f.tick(i * every, &mut |u| batch.push(u));
            batch
        })
        .collect()
}

#[test]
fn names_are_prefix_plus_index_and_lookup_is_shard_local() {
    let f = example(100, Some((10, 20)), 1);
    assert_eq!(f.device_count(), 100);
    assert_eq!(f.shard(), 10..20);
    assert_eq!(f.name(17), "sensor-17");
    assert_eq!(f.index_of("sensor-17"), Some(17));
    assert_eq!(f.index_of("sensor-10"), Some(10));
    for bad in [
        "sensor-5",
        "sensor-20",
        "sensor-017",
        "sensor-x",
        "sensor-",
        "sensor-+17",
        "sensor-17 ",
        "Sensor-17",
        "other-17",
        "sensor-99999999999",
    ] {
        assert_eq!(f.index_of(bad), None, "{bad}");
    }
    let other = example(100, Some((0, 10)), 1);
    assert_eq!(other.index_of("sensor-17"), None);
    assert_eq!(other.index_of("sensor-0"), Some(0));
    assert!(f.read(5, "temperature").is_none());
    assert!(f.read_all(20).is_none());
    assert!(f.read(17, "nope").is_none());
}

#[test]
fn a_thousand_devices_update_once_a_second_evenly_spread() {
    let mut f = example(1000, None, 1);
    let ticks = run(&mut f, 20, 10_000);
    let per_prop = |q: u16| ticks.iter().flatten().filter(|u| u.property == q).count();
    for q in 0..4 {
        let n = per_prop(q);
        assert!(
            (9_000..=11_000).contains(&n),
            "property {q}: {n} updates in 10 s"
        );
    }
    // Every device got its ten updates (the last lap is cut by the end of the run).
    let mut per_device = vec![0u32; 1000];
    for u in ticks.iter().flatten().filter(|u| u.property == 0) {
        per_device[u.device as usize] += 1;
    }
    assert!(per_device.iter().all(|c| (9..=10).contains(c)));
    // Smooth load: no tick carries more than twice the mean.
    let sizes: Vec<usize> = ticks.iter().map(Vec::len).collect();
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    let max = *sizes.iter().max().unwrap();
    assert!(max as f64 <= 2.0 * mean, "max {max}, mean {mean}");
    assert!(sizes[1..].iter().all(|s| *s > 0), "no idle ticks");
    // Times are the scheduled ones, inside the tick that produced them.
    for (i, batch) in ticks.iter().enumerate() {
        let now = i as i64 * 20;
        assert!(batch
            .iter()
            .all(|u| u.time_ms <= now && u.time_ms > now - 20));
    }
    assert_eq!(
        f.stats()
            .updates_generated
            .load(std::sync::atomic::Ordering::Relaxed),
        ticks.iter().map(|b| b.len() as u64).sum::<u64>()
    );
}

#[test]
fn properties_with_different_intervals_keep_their_own_rate() {
    let mut f = Fleet::new(&cfg(json!({
        "count": 200,
        "properties": [
            {"name": "fast", "baseType": "NUMBER", "intervalMs": 250,
             "generator": {"kind": "uniform", "min": 0, "max": 1}},
            {"name": "slow", "baseType": "BOOLEAN", "intervalMs": 5000,
             "generator": {"kind": "square", "low": 0, "high": 1, "periodMs": 10000}}
        ]
    })))
    .unwrap();
    let ticks = run(&mut f, 50, 10_000);
    let count = |q: u16| ticks.iter().flatten().filter(|u| u.property == q).count();
    assert!((7_800..=8_000).contains(&count(0)), "{}", count(0));
    assert!((390..=400).contains(&count(1)), "{}", count(1));
}

#[test]
fn intervals_shorter_than_the_driver_tick_lose_nothing() {
    // 10 ms updates ticked every 20 ms (the driver's period): each tick carries two intervals.
    let mut f = Fleet::new(&cfg(json!({
        "count": 10,
        "properties": [{"name": "n", "baseType": "INTEGER", "intervalMs": 10,
                        "generator": {"kind": "counter", "start": 0, "step": 1}}]
    })))
    .unwrap();
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); 10];
    for t in (0..=2_000).step_by(20) {
        f.tick(t, &mut |u| values[u.device as usize].push(u.value));
    }
    for (d, v) in values.iter().enumerate() {
        // Device d is due at k * 10 + d ms: 201 updates in 0..=2000 for d = 0, 200 for the rest.
        assert_eq!(v.len(), if d == 0 { 201 } else { 200 }, "device {d}");
        assert!(v.windows(2).all(|w| w[1] == w[0] + 1.0), "device {d}");
    }
    let skipped = f
        .stats()
        .updates_skipped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(skipped, 0);
}

#[test]
fn a_stalled_driver_catches_up_with_one_late_update_per_device() {
    let mut f = example(1000, None, 1);
    let mut n = 0;
    f.tick(0, &mut |_| n += 1);
    assert_eq!(n, 4, "device 0 is due at once");
    let mut late = Vec::new();
    f.tick(10_000, &mut |u| late.push(u));
    // At most one interval's worth (1000 devices x 4 properties), all from the last interval.
    assert!(late.len() <= 4 * 1000 + 4, "{}", late.len());
    assert!(late
        .iter()
        .all(|u| u.time_ms > 9_000 && u.time_ms <= 10_000));
    let stats = f.stats();
    let skipped = stats
        .updates_skipped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        skipped as usize + late.len() + 4,
        4 * 10_001,
        "nothing unaccounted"
    );
    // Afterwards the schedule is back to normal.
    let mut next = 0;
    f.tick(10_020, &mut |_| next += 1);
    assert_eq!(next, 4 * 20);
}

#[test]
fn generated_values_follow_their_generators() {
    let mut f = example(50, None, 3);
    let ticks = run(&mut f, 100, 20_000);
    let of = |q: u16, d: u32| -> Vec<f64> {
        ticks
            .iter()
            .flatten()
            .filter(|u| u.property == q && u.device == d)
            .map(|u| u.value)
            .collect()
    };
    // Counter per device: 0, 1, 2, ... one per second.
    assert_eq!(of(1, 7), (0..20).map(f64::from).collect::<Vec<_>>());
    let temps = of(0, 7);
    assert!(temps.iter().all(|v| (15.0..=30.0).contains(v)));
    let walk = of(2, 7);
    assert_eq!(walk[0], 50.0);
    assert!(walk.windows(2).all(|w| (w[1] - w[0]).abs() <= 2.0));
    assert!(walk.iter().all(|v| (0.0..=100.0).contains(v)));
    // Devices are not in lock-step.
    assert_ne!(of(0, 7), of(0, 8));
    assert_ne!(of(2, 7), of(2, 8));
}

#[test]
fn quality_injection_honours_the_ratios() {
    let mut f = Fleet::new(&cfg(json!({
        "count": 1000,
        "properties": [{"name": "v", "baseType": "NUMBER", "intervalMs": 100,
            "generator": {"kind": "uniform", "min": 0, "max": 1},
            "quality": {"badRatio": 0.1, "uncertainRatio": 0.2}}]
    })))
    .unwrap();
    let ticks = run(&mut f, 50, 10_000);
    let all: Vec<&Update> = ticks.iter().flatten().collect();
    assert!(all.len() > 95_000);
    let share =
        |q: Quality| all.iter().filter(|u| u.quality == q).count() as f64 / all.len() as f64;
    // Binomial standard deviation at n = 100k is about 0.001; allow 5x.
    assert!(
        (share(Quality::Bad) - 0.1).abs() < 0.005,
        "{}",
        share(Quality::Bad)
    );
    assert!((share(Quality::Uncertain) - 0.2).abs() < 0.005);
    assert!((share(Quality::Good) - 0.7).abs() < 0.005);
    // The example's temperature has badRatio 0.01, the others none.
    let mut f = example(1000, None, 9);
    let ticks = run(&mut f, 50, 10_000);
    let temp: Vec<&Update> = ticks.iter().flatten().filter(|u| u.property == 0).collect();
    let bad = temp.iter().filter(|u| u.quality == Quality::Bad).count() as f64 / temp.len() as f64;
    assert!((0.005..0.015).contains(&bad), "{bad}");
    assert!(ticks
        .iter()
        .flatten()
        .filter(|u| u.property != 0)
        .all(|u| u.quality == Quality::Good));
}

#[test]
fn reads_report_value_time_and_quality() {
    let mut f = example(10, None, 1);
    let (v, t, q) = f.read(3, "count").unwrap();
    assert_eq!(
        (v, t, q),
        (json!(0), 0, Quality::Unknown),
        "before any update"
    );
    run(&mut f, 100, 3_000);
    let (v, t, q) = f.read(3, "count").unwrap();
    assert_eq!(v, json!(2));
    assert_eq!(t, 2_300, "device 3 of 10 is due 300 ms into each second");
    assert_eq!(q, Quality::Good);
    let all = f.read_all(3).unwrap();
    let names: Vec<&str> = all.iter().map(|(p, _)| p.name.as_str()).collect();
    assert_eq!(names, ["temperature", "count", "level", "model"]);
    assert_eq!(all[3].1 .0, json!("X-100"));
    assert!(all[0].1 .0.is_f64());
}

#[test]
fn writes_are_type_checked_and_hold_until_the_next_update() {
    let mut f = example(10, None, 1);
    f.tick(0, &mut |_| {});
    assert_eq!(f.write_at(2, "temperature", &json!(99.5), 5), Ok(()));
    assert_eq!(
        f.read(2, "temperature").unwrap(),
        (json!(99.5), 5, Quality::Good)
    );
    let e = f.write_at(2, "count", &json!(2.5), 5).unwrap_err();
    assert!(matches!(e, WriteError::Type { .. }));
    assert_eq!(
        e.to_string(),
        "property \"count\": expected INTEGER, got the number 2.5"
    );
    assert!(f.write_at(2, "temperature", &json!("hot"), 5).is_err());
    assert!(f.write_at(2, "model", &json!(1), 5).is_err());
    assert_eq!(
        f.write_at(2, "nope", &json!(1), 5),
        Err(WriteError::UnknownProperty("nope".into()))
    );
    assert_eq!(
        f.write_at(10, "count", &json!(1), 5),
        Err(WriteError::UnknownDevice(10))
    );
    // After the first update (device 2 is due at 200 ms in each second): a counter continues
    // from a written value, a sine replaces it, a STRING reverts to its constant.
    run(&mut f, 100, 1_000);
    f.write_at(2, "temperature", &json!(99.5), 950).unwrap();
    f.write_at(2, "count", &json!(40), 950).unwrap();
    f.write_at(2, "model", &json!("custom"), 950).unwrap();
    assert_eq!(f.read(2, "count").unwrap(), (json!(40), 950, Quality::Good));
    assert_eq!(f.read(2, "model").unwrap().0, json!("custom"));
    assert_eq!(f.read(3, "model").unwrap().0, json!("X-100"));
    f.tick(1_200, &mut |_| {});
    assert_eq!(f.read(2, "count").unwrap().0, json!(41));
    assert_ne!(f.read(2, "temperature").unwrap().0, json!(99.5));
    assert_eq!(f.read(2, "model").unwrap().0, json!("X-100"));
}

#[test]
fn boolean_properties_threshold_at_the_midpoint_and_accept_writes() {
    let mut f = Fleet::new(&cfg(json!({
        "count": 4,
        "properties": [
            {"name": "on", "baseType": "BOOLEAN",
             "generator": {"kind": "sine", "min": -1, "max": 1, "periodMs": 4000, "phase": 0.1}},
            {"name": "flag", "baseType": "BOOLEAN",
             "generator": {"kind": "constant", "value": true}},
            {"name": "big", "baseType": "LONG",
             "generator": {"kind": "constant", "value": 5_000_000_000i64}}
        ]
    })))
    .unwrap();
    let ticks = run(&mut f, 100, 8_000);
    let on: Vec<f64> = ticks
        .iter()
        .flatten()
        .filter(|u| u.property == 0)
        .map(|u| u.value)
        .collect();
    assert!(on.iter().all(|v| *v == 0.0 || *v == 1.0));
    let trues = on.iter().filter(|v| **v == 1.0).count();
    assert_eq!(trues * 2, on.len(), "true for half of each period");
    assert_eq!(f.read(0, "flag").unwrap().0, json!(true));
    f.write_at(0, "flag", &json!(false), 1).unwrap();
    assert_eq!(f.read(0, "flag").unwrap().0, json!(false));
    f.write_at(0, "on", &json!(true), 1).unwrap();
    assert_eq!(f.read(0, "on").unwrap().0, json!(true));
    assert_eq!(f.read(1, "big").unwrap().0, json!(5_000_000_000i64));
}

#[test]
fn updates_render_as_json_of_their_base_type() {
    let mut f = example(5, None, 1);
    let mut batch = Vec::new();
    f.tick(0, &mut |u| batch.push(u));
    let schema = f.schema().clone();
    let by_prop = |q: u16| batch.iter().find(|u| u.property == q).unwrap();
    assert!(schema.value_json(by_prop(0)).is_f64());
    assert_eq!(schema.value_json(by_prop(1)), json!(0));
    assert_eq!(schema.value_json(by_prop(3)), json!("X-100"));
    let u = by_prop(1);
    assert_eq!(
        schema.update_json(u),
        json!({"thing": "sensor-0", "property": "count", "value": 0, "time": 0, "quality": "GOOD"})
    );
    assert_eq!(Quality::Uncertain.as_str(), "UNCERTAIN");
    for q in [
        Quality::Good,
        Quality::Bad,
        Quality::Uncertain,
        Quality::Unknown,
    ] {
        assert_eq!(quality_from_u8(quality_to_u8(q)), q);
    }
}

#[test]
fn same_seed_same_values_whatever_the_tick_cadence() {
    let sorted = |mut v: Vec<Update>| {
        v.sort_by_key(|u| (u.device, u.property, u.time_ms));
        v
    };
    let a: Vec<Update> = run(&mut example(300, None, 42), 20, 5_000).concat();
    let b: Vec<Update> = run(&mut example(300, None, 42), 20, 5_000).concat();
    assert_eq!(a, b);
    // Coarser ticks group updates differently but produce the same values at the same times.
    let c: Vec<Update> = run(&mut example(300, None, 42), 50, 5_000).concat();
    let cut =
        |v: Vec<Update>| -> Vec<Update> { v.into_iter().filter(|u| u.time_ms < 4_900).collect() };
    assert_eq!(sorted(cut(a.clone())), sorted(cut(c)));
    let d: Vec<Update> = run(&mut example(300, None, 43), 20, 5_000).concat();
    assert_ne!(a, d);
}

#[test]
fn random_values_do_not_depend_on_sharding() {
    let walk = |f: &mut Fleet, device: u32| -> Vec<f64> {
        run(f, 100, 10_000)
            .concat()
            .into_iter()
            .filter(|u| u.device == device && u.property == 2)
            .map(|u| u.value)
            .collect()
    };
    let whole = walk(&mut example(100, None, 5), 60);
    let shard = walk(&mut example(100, Some((50, 100)), 5), 60);
    assert_eq!(whole.len(), 10);
    assert_eq!(whole, shard);
}

#[test]
fn fleet_construction_reports_csv_problems_by_field() {
    let dir = std::env::temp_dir().join(format!("edgeway-sim-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("load.csv");
    std::fs::write(&file, "ts,load\n1,10\n2,20\n3,30\n").unwrap();
    let make = |column: Value| {
        Fleet::new(&cfg(json!({
            "count": 5,
            "properties": [
                {"name": "a", "baseType": "NUMBER", "generator": {"kind": "constant", "value": 1}},
                {"name": "load", "baseType": "INTEGER",
                 "generator": {"kind": "csv", "file": file, "column": column}}
            ]
        })))
    };
    let e = make(json!("watts")).err().unwrap();
    assert_eq!(e.field, "simulation.properties[1].generator.column");
    let mut f = make(json!("load")).unwrap();
    let values: Vec<f64> = run(&mut f, 100, 4_000)
        .concat()
        .into_iter()
        .filter(|u| u.device == 1 && u.property == 1)
        .map(|u| u.value)
        .collect();
    assert_eq!(values, [20.0, 30.0, 10.0, 20.0]);
    std::fs::remove_file(&file).unwrap();
    let e = make(json!("load")).err().unwrap();
    assert_eq!(e.field, "simulation.properties[1].generator.file");
}

#[test]
fn invalid_configs_are_refused_by_fleet_new() {
    let e = Fleet::new(&cfg(json!({"count": 0}))).err().unwrap();
    assert_eq!(e.to_string(), "simulation.count: must be positive");
}

#[test]
fn a_value_crossing_its_threshold_fires_the_event_once_per_crossing() {
    // A counter 0, 1, 2, ... per 100 ms: above 2.5 it crosses once, between 2 and 3.
    let mut f = Fleet::new(&cfg(json!({
        "namePrefix": "d-",
        "count": 2,
        "properties": [
            {"name": "n", "baseType": "INTEGER", "intervalMs": 100,
             "generator": {"kind": "counter", "start": 0, "step": 1}}
        ],
        "events": [{"name": "High", "property": "n", "above": 2.5}]
    })))
    .unwrap();
    assert_eq!(f.schema().events()[0].name, "High");
    let updates: Vec<Update> = run(&mut f, 100, 1_000).into_iter().flatten().collect();
    let fired: Vec<(u32, f64)> = updates
        .iter()
        .filter(|u| u.event == Some(0))
        .map(|u| (u.device, u.value))
        .collect();
    assert_eq!(fired, [(0, 3.0), (1, 3.0)], "each device fires once, on 3");
}

#[test]
fn falling_under_fires_and_the_first_value_never_does() {
    // Starts at 5 (already under 10: no predecessor, no event) and rises; never falls under.
    let mut f = Fleet::new(&cfg(json!({
        "count": 1,
        "properties": [
            {"name": "n", "baseType": "NUMBER", "intervalMs": 100,
             "generator": {"kind": "counter", "start": 5, "step": 1}}
        ],
        "events": [{"name": "Low", "property": "n", "below": 10}]
    })))
    .unwrap();
    let updates: Vec<Update> = run(&mut f, 100, 1_000).into_iter().flatten().collect();
    assert!(updates.iter().all(|u| u.event.is_none()));
    // A step of -1 from 12 falls under 10 between 10 and 9.
    let mut f = Fleet::new(&cfg(json!({
        "count": 1,
        "properties": [
            {"name": "n", "baseType": "NUMBER", "intervalMs": 100,
             "generator": {"kind": "counter", "start": 12, "step": -1}}
        ],
        "events": [{"name": "Low", "property": "n", "below": 10}]
    })))
    .unwrap();
    let updates: Vec<Update> = run(&mut f, 100, 1_000).into_iter().flatten().collect();
    let fired: Vec<f64> = updates
        .iter()
        .filter(|u| u.event.is_some())
        .map(|u| u.value)
        .collect();
    assert_eq!(fired, [9.0]);
}
