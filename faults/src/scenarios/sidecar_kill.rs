//! The sidecar SIGKILLed mid-batch with a persisted queue, then started again on the same
//! queue (its counters now starting at 1,000,000). Every value the first run generated reaches
//! the platform, and nothing the platform had acknowledged is sent again: the only resends are
//! updates whose acknowledgement the kill cut off.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use super::{devices, wait, Ctx, Outcome};
use crate::check::Audit;
use crate::procs::{Platform, Sidecar, ALWAYSON_PORT};

const DEVICES: u32 = 50;
const SECOND_RUN: i64 = 1_000_000;

/// Per device, the values the killed run's log holds unacknowledged, and the largest it pushed.
struct Log {
    unacked: BTreeMap<String, BTreeSet<i64>>,
    pushed: BTreeMap<String, i64>,
}

fn read_log(dir: &Path) -> Result<Log> {
    let text = std::fs::read_to_string(dir.join("queue.log")).context("the queue's log")?;
    let mut records = BTreeMap::new();
    let mut acked = BTreeSet::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue; // a torn last line
        };
        if let Some(a) = v["a"].as_array() {
            acked.extend(a.iter().filter_map(|s| s.as_u64()));
        } else if let (Some(s), Some(t), Some(n)) =
            (v["s"].as_u64(), v["t"].as_str(), v["v"].as_i64())
        {
            records.insert(s, (t.to_owned(), n));
        }
    }
    let mut unacked: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut pushed: BTreeMap<String, i64> = BTreeMap::new();
    for (s, (t, n)) in records {
        let m = pushed.entry(t.clone()).or_insert(n);
        *m = (*m).max(n);
        if !acked.contains(&s) {
            unacked.entry(t).or_default().insert(n);
        }
    }
    Ok(Log { unacked, pushed })
}

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let queue = ctx.files.dir.join("queue-sidecar-kill");
    let platform = Platform::start(&ctx.lab, &ctx.bins, &ctx.files, "sidecar-kill").await?;
    let mut spec = ctx.fleet(DEVICES, 20);
    spec.queue_dir = Some(queue.clone());
    let mut first = Sidecar::start(&ctx.bins, &ctx.files, &spec, "sidecar-kill-1").await?;
    wait("the tunnel up", Duration::from_secs(30), || first.up()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Mid-batch for certain: the platform stops taking packets, so what the sidecar sends
    // now stays unacknowledged (acknowledgements of what it took still arrive).
    ctx.lab.block_port(ALWAYSON_PORT)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill();
    ctx.lab.heal()?;
    let Log { unacked, pushed } = read_log(&queue)?;
    ensure!(!pushed.is_empty(), "the killed run's log holds no update");
    ensure!(
        unacked.values().any(|v| !v.is_empty()),
        "nothing was unacknowledged at the kill: not mid-batch"
    );
    let (_, dropped_before) = platform.stats().await?;
    // Every unacknowledged update is resent; the platform recognises those it got anyway (the
    // killed process's kernel retransmits what it had sent once the path is back). An
    // acknowledged update resent would be recognised too, and push the count past this.
    let backlog: usize = unacked.values().map(BTreeSet::len).sum();

    spec.start = SECOND_RUN;
    let t1 = Instant::now();
    let second = Sidecar::start(&ctx.bins, &ctx.files, &spec, "sidecar-kill-2").await?;
    wait("the tunnel up again", Duration::from_secs(30), || {
        second.up()
    })
    .await?;
    let recover = t1.elapsed();
    let mut total = Audit::default();
    for d in devices(DEVICES) {
        let last = pushed.get(&d).copied().unwrap_or(0);
        let first_run = wait(
            &format!("{d}: the first run's values up to {last}"),
            Duration::from_secs(60),
            || async {
                Ok(platform
                    .history(&d)
                    .await?
                    .iter()
                    .any(|v| *v >= last && *v < SECOND_RUN))
            },
        )
        .await;
        first_run?;
        let values: Vec<i64> = platform
            .history(&d)
            .await?
            .into_iter()
            .filter(|v| *v < SECOND_RUN)
            .collect();
        total.add(&Audit::of(&values));
    }
    super::ensure_clean(&total)?;
    let (_, dropped_after) = platform.stats().await?;
    let resent_stored = (dropped_after - dropped_before) as usize;
    ensure!(
        resent_stored <= backlog,
        "{resent_stored} resends were already stored, but only {backlog} were unacknowledged: acknowledged updates were sent again"
    );
    Ok(Outcome {
        fault: "sidecar SIGKILL mid-stream, restarted on its persisted queue".into(),
        audit: Some(total),
        resends_dropped: resent_stored as u64,
        detect: None,
        recover: Some(recover),
        note: format!(
            "{backlog} unacknowledged in the log at the kill; {resent_stored} of them reached the platform after the kill anyway (the killed process's kernel still retransmits what it had sent) and were dropped as resends"
        ),
    })
}
