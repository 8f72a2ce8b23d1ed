//! The async driver: ticks a fleet on a timer and sends each tick's updates as one batch.
//!
//! The fleet sits behind a `std::sync::Mutex`: a tick holds it only while it computes the due
//! updates (about a millisecond for 100,000 devices at a 50 ms tick) and never across an
//! `.await`, and REST reads and writes hold it for a single lookup. An async mutex would add a
//! wake-up per acquisition for no benefit. Sending happens after the lock is released, with
//! `try_send`: a full channel drops the batch (counted) instead of stalling the schedule.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::fleet::{now_unix_ms, Fleet};
use super::Update;

/// How often a full channel is reported in the log, at most.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Ticks `fleet` every `tick` on the current runtime and sends one `Vec<Update>` per non-empty
/// tick to `sink`. Ends when the receiver is dropped. Tick at 10–50 ms: shorter ticks cost
/// wake-ups, longer ones make batches burstier.
pub fn spawn(
    fleet: Arc<Mutex<Fleet>>,
    tick: Duration,
    sink: mpsc::Sender<Vec<Update>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let stats = lock(&fleet).stats().clone();
        let mut timer = tokio::time::interval(tick.max(Duration::from_millis(1)));
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Sized from the previous tick so the Vec rarely regrows.
        let mut expected = 16usize;
        let mut last_log: Option<Instant> = None;
        let mut dropped_since_log = 0u64;
        // Wall time at start advanced by a monotonic clock: stamps read as Unix time, and a
        // wall-clock step (NTP, suspend) neither silences the schedule nor bursts it.
        let (origin_wall, origin) = (now_unix_ms(), Instant::now());
        loop {
            timer.tick().await;
            let now_ms = origin_wall + origin.elapsed().as_millis() as i64;
            let mut batch = Vec::with_capacity(expected + expected / 4);
            lock(&fleet).tick(now_ms, &mut |u| batch.push(u));
            if batch.is_empty() {
                continue;
            }
            expected = batch.len();
            match sink.try_send(batch) {
                Ok(()) => {}
                Err(TrySendError::Closed(_)) => {
                    tracing::debug!("simulation consumer gone; driver stops");
                    return;
                }
                Err(TrySendError::Full(batch)) => {
                    stats.batches_dropped.fetch_add(1, Ordering::Relaxed);
                    stats
                        .updates_dropped
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    dropped_since_log += 1;
                    if last_log.is_none_or(|t| t.elapsed() >= DROP_LOG_EVERY) {
                        tracing::warn!(
                            dropped_batches = dropped_since_log,
                            total = stats.batches_dropped.load(Ordering::Relaxed),
                            "simulation consumer is slow; dropping update batches"
                        );
                        last_log = Some(Instant::now());
                        dropped_since_log = 0;
                    }
                }
            }
        }
    })
}

/// Locks the fleet; a panic in another holder leaves plain data, so poisoning is ignored.
fn lock(fleet: &Mutex<Fleet>) -> std::sync::MutexGuard<'_, Fleet> {
    fleet.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimulationConfig;

    fn fleet(count: u32) -> Arc<Mutex<Fleet>> {
        let cfg: SimulationConfig = serde_json::from_value(serde_json::json!({
            "count": count,
            "properties": [{"name": "v", "baseType": "NUMBER", "intervalMs": 100,
                            "generator": {"kind": "uniform", "min": 0, "max": 1}}]
        }))
        .unwrap();
        Arc::new(Mutex::new(Fleet::new(&cfg).unwrap()))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn driver_sends_batches_at_the_configured_rate() {
        // 100 devices every 100 ms: one update per wall-clock millisecond.
        let f = fleet(100);
        let (tx, mut rx) = mpsc::channel(1024);
        let began = Instant::now();
        let h = spawn(f.clone(), Duration::from_millis(20), tx);
        let mut got = 0usize;
        let mut batches = 0usize;
        while began.elapsed() < Duration::from_millis(500) {
            let b = rx.recv().await.unwrap();
            assert!(!b.is_empty());
            got += b.len();
            batches += 1;
        }
        h.abort();
        let elapsed = began.elapsed().as_millis() as usize;
        // Every due update is produced however late a tick is, so the count follows the clock
        // within one interval's worth (100 updates) plus a tick's worth.
        assert!(
            got + 130 >= elapsed && got <= elapsed + 130,
            "{got} updates in {elapsed} ms"
        );
        assert!(batches >= 10, "{batches} batches");
        let stats = lock(&f).stats().clone();
        assert!(stats.updates_generated.load(Ordering::Relaxed) >= got as u64);
        assert_eq!(stats.batches_dropped.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_channel_drops_batches_instead_of_blocking() {
        let f = fleet(1000);
        let (tx, rx) = mpsc::channel(2);
        let h = spawn(f.clone(), Duration::from_millis(10), tx);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = lock(&f).stats().clone();
        // Nobody reads: two batches fit, the rest are dropped while ticks continue.
        assert!(stats.batches_dropped.load(Ordering::Relaxed) >= 5);
        assert!(stats.updates_generated.load(Ordering::Relaxed) >= 1000);
        drop(rx);
        // The driver notices the closed channel on its next send and ends.
        tokio::time::timeout(Duration::from_secs(2), h)
            .await
            .expect("driver ends when the receiver is gone")
            .unwrap();
    }
}
