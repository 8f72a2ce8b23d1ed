//! Scale measurement, run by hand (one fleet size per process, so RSS numbers are clean):
//!
//! ```text
//! SIM_BENCH_DEVICES=100000 cargo test --release --lib sim::bench -- --ignored --nocapture
//! ```
//!
//! Builds a fleet with 3 properties at 1 update/s, drives it for `SIM_BENCH_SECS` (default 5)
//! on a current-thread runtime with a consumer draining the batches, and prints RSS growth per
//! device, CPU per second of simulated time and updates/s achieved vs expected. With
//! `SIM_BENCH_JSON=1` the consumer also renders every update as a JSON string, as a tunnel would.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{spawn, Fleet, SimulationConfig};

/// Resident set size in KiB, from /proc/self/status.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time of the calling thread in nanoseconds (the current-thread runtime runs on it).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU of the whole process in clock ticks (usually 10 ms), as a cross-check.
fn process_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

#[test]
#[ignore = "measurement; run in release, see the module docs"]
fn fleet_scale() {
    let devices: u32 = std::env::var("SIM_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let secs: u64 = std::env::var("SIM_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let render_json = std::env::var("SIM_BENCH_JSON").is_ok_and(|v| v == "1");
    let cfg: SimulationConfig = serde_json::from_value(serde_json::json!({
        "namePrefix": "sensor-",
        "count": devices,
        "properties": [
            {"name": "temperature", "baseType": "NUMBER",
             "generator": {"kind": "sine", "min": 15, "max": 30, "periodMs": 60000},
             "quality": {"badRatio": 0.01}},
            {"name": "count", "baseType": "INTEGER",
             "generator": {"kind": "counter", "start": 0, "step": 1}},
            {"name": "level", "baseType": "NUMBER",
             "generator": {"kind": "randomWalk", "start": 50, "step": 2, "min": 0, "max": 100}}
        ]
    }))
    .unwrap();

    let rss_before = rss_kib();
    let fleet = Fleet::new(&cfg).unwrap();
    let rss_built = rss_kib();
    let state_bytes = fleet.state_bytes();
    let stats = fleet.stats().clone();
    let fleet = Arc::new(Mutex::new(fleet));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (received, elapsed, cpu_ns, ticks, batches) = rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let driver = spawn(fleet.clone(), Duration::from_millis(20), tx);
        let schema = fleet.lock().unwrap().schema().clone();
        let consumer = tokio::spawn(async move {
            let (mut n, mut batches, mut checksum) = (0u64, 0u64, 0f64);
            while let Some(b) = rx.recv().await {
                n += b.len() as u64;
                batches += 1;
                if render_json {
                    // What a tunnel would do per update: name the device, render the value.
                    checksum += b
                        .iter()
                        .map(|u| schema.update_json(u).to_string().len() as f64)
                        .sum::<f64>();
                } else {
                    checksum += b.iter().map(|u| u.value).sum::<f64>();
                }
            }
            (n, batches, checksum)
        });
        // One interval of warm-up so every device is on its steady schedule.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let gen0 = stats.updates_generated.load(Ordering::Relaxed);
        let (cpu0, ticks0, t0) = (thread_cpu_ns(), process_cpu_ticks(), Instant::now());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (cpu1, ticks1, elapsed) = (thread_cpu_ns(), process_cpu_ticks(), t0.elapsed());
        let gen1 = stats.updates_generated.load(Ordering::Relaxed);
        driver.abort();
        let _ = driver.await;
        let (received, batches, checksum) = consumer.await.unwrap();
        assert!(checksum.is_finite());
        (
            gen1 - gen0,
            elapsed,
            cpu1 - cpu0,
            ticks1 - ticks0,
            (received, batches),
        )
    });
    let rss_after = rss_kib();

    let secs_f = elapsed.as_secs_f64();
    let per_dev = |kib: u64| kib as f64 * 1024.0 / f64::from(devices);
    println!(
        "devices                 {devices} x 3 properties, 1 update/s each, tick 20 ms{}",
        if render_json {
            ", consumer renders JSON"
        } else {
            ""
        }
    );
    println!(
        "state arrays            {:.1} B/device",
        state_bytes as f64 / f64::from(devices)
    );
    println!(
        "RSS growth after build  {:.1} B/device ({} KiB)",
        per_dev(rss_built.saturating_sub(rss_before)),
        rss_built.saturating_sub(rss_before)
    );
    println!(
        "RSS growth after run    {:.1} B/device ({} KiB; RSS {} KiB)",
        per_dev(rss_after.saturating_sub(rss_before)),
        rss_after.saturating_sub(rss_before),
        rss_after
    );
    println!(
        "CPU (runtime thread)    {:.2} ms per simulated second = {:.2}% of a core",
        cpu_ns as f64 / 1e6 / secs_f,
        cpu_ns as f64 / 1e7 / secs_f
    );
    println!("CPU (process, utime+stime) {ticks} clock ticks over {secs_f:.2} s",);
    println!(
        "updates/s               {:.0} generated, expected {}",
        received as f64 / secs_f,
        3 * devices
    );
    println!(
        "delivered               {} updates in {} batches, {} batches dropped",
        batches.0,
        batches.1,
        stats.batches_dropped.load(Ordering::Relaxed)
    );
}
