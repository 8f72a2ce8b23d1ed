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
mod tests;
