//! `outbox`: what persisting the tunnel's queue costs, per fsync policy. Updates are pushed in
//! batches as the simulation's driver pushes them (one `flush` per batch, as `Queue::push_many`
//! does), and each batch is acknowledged after the next one is pushed (an acknowledgement line
//! per answered request burst). Cases run interleaved (memory, never,
//! interval, always, memory, ...) so the disk's moods fall on every case alike; each figure is
//! the median of the rounds with its range.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use edgeway_protocol::basetype::{BaseType, Quality};
use edgeway_sidecar::tunnel::config::{FsyncPolicy, QueueConfig};
use edgeway_sidecar::tunnel::outbox::{Outbox, Update};

#[derive(clap::Args)]
pub struct Args {
    /// Interleaved rounds of every case.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Updates per case and round.
    #[arg(long, default_value_t = 20_000)]
    updates: usize,
    /// Updates per push batch (a driver tick's worth).
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Where the queues are written (the disk under test).
    #[arg(long)]
    dir: PathBuf,
}

const CASES: [(&str, Option<FsyncPolicy>); 4] = [
    ("memory", None),
    ("never", Some(FsyncPolicy::Never)),
    ("interval", Some(FsyncPolicy::Interval)),
    ("always", Some(FsyncPolicy::Always)),
];

fn update(i: usize) -> Update {
    let thing: Arc<str> = Arc::from(format!("sensor-{}", i % 1000).as_str());
    Update {
        thing,
        property: Arc::from("temperature"),
        base_type: BaseType::Number,
        value: serde_json::json!(20.0 + (i % 100) as f64 / 10.0),
        time_ms: 1_700_000_000_000 + i as i64,
        quality: Quality::Good,
        event: false,
    }
}

fn one(a: &Args, fsync: Option<FsyncPolicy>, dir: &std::path::Path) -> Result<f64> {
    let _ = std::fs::remove_dir_all(dir);
    let config = QueueConfig {
        capacity: a.updates + 1,
        fsync: fsync.unwrap_or_default(),
        ..QueueConfig::default()
    };
    let mut o = match fsync {
        None => Outbox::in_memory(&config),
        Some(_) => Outbox::open(dir, &config)?,
    };
    let t0 = Instant::now();
    let mut previous: Vec<u64> = Vec::new();
    for start in (0..a.updates).step_by(a.batch) {
        for i in start..(start + a.batch).min(a.updates) {
            o.push(update(i));
        }
        o.flush()?;
        o.ack(previous.drain(..));
        previous = o.next_batch(a.batch).into_iter().map(|(s, _)| s).collect();
    }
    o.ack(previous);
    let secs = t0.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(dir);
    Ok(a.updates as f64 / secs)
}

pub fn run(a: Args) -> Result<()> {
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); CASES.len()];
    for round in 0..a.rounds {
        for (i, (name, fsync)) in CASES.iter().enumerate() {
            rates[i].push(one(&a, *fsync, &a.dir.join(format!("{name}-{round}")))?);
        }
    }
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    let memory = median(&rates[0]);
    let cases: Vec<serde_json::Value> = CASES
        .iter()
        .zip(&rates)
        .map(|((name, _), r)| {
            let m = median(r);
            serde_json::json!({
                "case": name,
                "median_updates_per_s": m,
                "min": r.iter().copied().fold(f64::INFINITY, f64::min),
                "max": r.iter().copied().fold(0.0, f64::max),
                "vs_memory": m / memory,
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({"rounds": a.rounds, "updates": a.updates, "batch": a.batch, "cases": cases})
    );
    Ok(())
}
