//! What every platform protocol shares below the wire: the acknowledged queue of updates and the
//! producers that feed it (Lua property changes, fired events, the simulated fleet).
//!
//! A protocol (the AlwaysOn [`crate::tunnel`]) owns a [`Queue`]: producers push into it, the
//! protocol's session hands out what is unsent, and an entry leaves only when the platform
//! acknowledged it. [`Queue::start`] opens one and connects the registry's producers to it;
//! [`backoff`] is the reconnect rule every protocol follows.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::RngExt;
use tokio::sync::futures::Notified;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::tunnel::config::QueueConfig;
use crate::tunnel::outbox::{Outbox, QueueStats, Update};
use edgeway_protocol::basetype::{BaseType, Quality};
use edgeway_runtime::ConfigError;

/// Handle to the store-and-forward queue: cheap to clone, shared by producers and the session.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    outbox: Mutex<Outbox>,
    /// Signalled when updates are queued, so an idle session sends them at once.
    wake: Notify,
    metrics: Arc<Metrics>,
}

impl Queue {
    /// Opens the queue `config` describes (persisted when it names a `dir`); `field` is the
    /// config path reported with an error.
    pub fn open(
        config: &QueueConfig,
        field: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ConfigError> {
        let outbox = match &config.dir {
            Some(dir) => Outbox::open(dir, config)
                .map_err(|e| ConfigError::new(format!("{field}.dir"), e.to_string()))?,
            None => Outbox::in_memory(config),
        };
        metrics.tunnel_queue(&outbox.stats());
        Ok(Self {
            inner: Arc::new(Inner {
                outbox: Mutex::new(outbox),
                wake: Notify::new(),
                metrics,
            }),
        })
    }

    /// Opens the queue and starts what keeps it: the periodic flush of a persisted queue and
    /// [`feed`] from the registry's producers. `field` names the queue section in errors.
    pub fn start(
        config: &QueueConfig,
        field: &str,
        registry: &Registry,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Self, Vec<JoinHandle<()>>), ConfigError> {
        let queue = Self::open(config, field, metrics)?;
        let mut tasks = Vec::new();
        if config.dir.is_some() {
            // At most a second between flushes, so a full volume is retried while offline.
            let every = Duration::from_millis(config.fsync_interval_ms.min(1000));
            tasks.push(queue.spawn_flusher(every, shutdown.clone()));
        }
        tasks.push(feed(&queue, registry, shutdown));
        Ok((queue, tasks))
    }

    /// Queues an update for the platform.
    pub fn push(&self, update: Update) {
        self.push_many(std::iter::once(update));
    }

    /// Queues many updates under one lock.
    pub fn push_many(&self, updates: impl IntoIterator<Item = Update>) {
        {
            let mut o = self.lock();
            for u in updates {
                o.push(u);
            }
            // To the kernel before the producer goes on (a failing volume was logged once).
            let _ = o.flush();
            self.inner.metrics.tunnel_queue(&o.stats());
        }
        self.inner.wake.notify_one();
    }

    /// The queue itself, for a session handing out, acknowledging or rewinding.
    pub fn lock(&self) -> MutexGuard<'_, Outbox> {
        self.inner.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Completes when updates were pushed since the last wake-up.
    pub fn pushed(&self) -> Notified<'_> {
        self.inner.wake.notified()
    }

    /// The queue's counts and its persistence's state.
    pub fn stats(&self) -> QueueStats {
        self.lock().stats()
    }

    /// Writes the persisted queue to disk (called at shutdown).
    pub fn flush(&self) {
        let mut o = self.lock();
        if let Err(e) = o.flush() {
            tracing::error!(
                error = %e,
                queued = o.len(),
                "offline queue not written at shutdown: the updates it holds are lost"
            );
        }
    }

    /// Flushes the persisted queue every `every`, so the `interval` fsync policy holds while
    /// nothing new is pushed and a full volume is retried while the platform is unreachable.
    fn spawn_flusher(
        &self,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let queue = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.changed() => return,
                }
                let mut o = queue.lock();
                let _ = o.flush();
                queue.inner.metrics.tunnel_queue(&o.stats());
            }
        })
    }
}

/// Connects the registry's producers to `queue`: events fired by things, and Lua property
/// changes (already filtered by their push rules). The simulated fleet is fed by its driver.
fn feed(queue: &Queue, registry: &Registry, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    let sink = queue.clone();
    registry.set_event_sink(Box::new(move |e| {
        sink.push(Update {
            thing: e.thing.into(),
            property: e.event.into(),
            base_type: BaseType::Infotable,
            value: serde_json::Value::Object(e.data),
            time_ms: e.time_ms,
            quality: Quality::Good,
            event: true,
        });
    }));
    tokio::spawn(collect_lua_changes(
        queue.clone(),
        registry.lua().subscribe(),
        shutdown,
    ))
}

async fn collect_lua_changes(
    queue: Queue,
    mut changes: broadcast::Receiver<crate::lua::PropertyChange>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let change = tokio::select! {
            c = changes.recv() => c,
            _ = shutdown.changed() => return,
        };
        match change {
            Ok(c) => queue.push(Update {
                thing: c.thing,
                property: c.property,
                base_type: c.base_type,
                value: c.value.value,
                time_ms: c.value.time_ms,
                quality: c.value.quality,
                event: false,
            }),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "Lua change feed lagged; updates lost before queueing"
                );
                queue.inner.metrics.tunnel_lagged(n);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The wait before reconnect attempt `attempt` (0 first): `initial_ms` doubled per attempt,
/// capped at `max_ms`, then a random point in its upper half, so a fleet that lost its platform
/// at once does not come back at once.
pub fn backoff(initial_ms: u64, max_ms: u64, attempt: u32) -> Duration {
    let base = initial_ms
        .saturating_mul(1u64 << attempt.min(20))
        .min(max_ms);
    Duration::from_millis(rand::rng().random_range(base / 2..=base))
}
