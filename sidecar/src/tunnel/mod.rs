//! The persistent AlwaysOn tunnel from the gateway to its platform: one websocket per process,
//! every thing bound over it, updates store-and-forwarded, reconnects with backoff and jitter.

pub mod config;
pub mod connect;
pub mod downstream;
pub mod outbox;
pub mod proxy;
pub mod session;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::RngExt;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::registry::Registry;
use config::TunnelConfig;
use connect::Connector;
use edgeway_protocol::basetype::{BaseType, Quality};
use edgeway_runtime::ConfigError;
use outbox::{Outbox, Update};
use session::{Session, SessionError};

/// State shared by the reconnect loop, its sessions and the producers of updates.
pub struct Shared {
    config: TunnelConfig,
    app_key: String,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    outbox: Mutex<Outbox>,
    /// Signalled when updates are queued, so an idle session sends them at once.
    wake: Notify,
    request_ids: AtomicU32,
    connected: AtomicBool,
}

impl Shared {
    fn next_id(&self) -> u32 {
        // Request ids start at 1 as in the SDK; 0 is never used.
        let id = self.request_ids.fetch_add(1, Ordering::Relaxed);
        if id == 0 {
            self.request_ids.fetch_add(1, Ordering::Relaxed)
        } else {
            id
        }
    }

    fn outbox_mut(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Handle to the running tunnel: push updates, read its state, stop it.
#[derive(Clone)]
pub struct Tunnel {
    shared: Arc<Shared>,
}

impl Tunnel {
    /// Reads the key and certificate files, opens the offline queue and starts connecting.
    pub fn start(
        config: TunnelConfig,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Tunnel, Vec<JoinHandle<()>>), ConfigError> {
        config.validate()?;
        let app_key = std::fs::read_to_string(&config.app_key_file)
            .map_err(|e| {
                ConfigError::new(
                    "tunnel.appKeyFile",
                    format!("cannot read {}: {e}", config.app_key_file.display()),
                )
            })?
            .trim()
            .to_owned();
        if app_key.is_empty() {
            return Err(ConfigError::new(
                "tunnel.appKeyFile",
                format!("{} is empty", config.app_key_file.display()),
            ));
        }
        let connectors = Connector::all(&config)?;
        let q = &config.queue;
        let outbox = match &q.dir {
            Some(dir) => Outbox::open(dir, q)
                .map_err(|e| ConfigError::new("tunnel.queue.dir", e.to_string()))?,
            None => Outbox::in_memory(q),
        };
        metrics.tunnel_queue(&outbox.stats());
        let persisted = q.dir.is_some();
        let tick = Duration::from_millis(q.fsync_interval_ms.min(1000));
        let shared = Arc::new(Shared {
            config,
            app_key,
            registry: registry.clone(),
            metrics,
            outbox: Mutex::new(outbox),
            wake: Notify::new(),
            request_ids: AtomicU32::new(1),
            connected: AtomicBool::new(false),
        });
        let tunnel = Tunnel {
            shared: shared.clone(),
        };
        let mut tasks = vec![tokio::spawn(reconnect_loop(
            shared.clone(),
            connectors,
            shutdown.clone(),
        ))];
        if persisted {
            tasks.push(tokio::spawn(flush_periodically(
                shared,
                tick,
                shutdown.clone(),
            )));
        }
        let sink = tunnel.clone();
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
        tasks.push(tokio::spawn(collect_lua_changes(
            tunnel.clone(),
            registry.lua().subscribe(),
            shutdown,
        )));
        Ok((tunnel, tasks))
    }

    /// Queues an update for the platform (store-and-forward).
    pub fn push(&self, update: Update) {
        self.push_many(std::iter::once(update));
    }

    /// Queues many updates under one lock.
    pub fn push_many(&self, updates: impl IntoIterator<Item = Update>) {
        {
            let mut o = self.shared.outbox_mut();
            for u in updates {
                o.push(u);
            }
            // To the kernel before the producer goes on (a failing volume was logged once).
            let _ = o.flush();
            self.shared.metrics.tunnel_queue(&o.stats());
        }
        self.shared.wake.notify_one();
    }

    /// Whether a session is established now.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// Updates waiting for acknowledgement, and updates dropped by the overflow policy.
    pub fn queue_state(&self) -> (usize, u64) {
        let s = self.queue_stats();
        (s.len, s.dropped)
    }

    /// The offline queue's counts and its persistence's state.
    pub fn queue_stats(&self) -> outbox::QueueStats {
        self.shared.outbox_mut().stats()
    }

    /// Writes the offline queue to disk (called at shutdown).
    pub fn flush(&self) {
        let mut o = self.shared.outbox_mut();
        if let Err(e) = o.flush() {
            tracing::error!(
                error = %e,
                queued = o.len(),
                "offline queue not written at shutdown: the updates it holds are lost"
            );
        }
    }
}

/// Flushes the persisted queue on a timer, so the `interval` fsync policy holds while nothing
/// new is pushed and a full volume is retried while the tunnel is down.
async fn flush_periodically(
    shared: Arc<Shared>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if sleep_or_shutdown(every, &mut shutdown).await {
            return;
        }
        let mut o = shared.outbox_mut();
        let _ = o.flush();
        shared.metrics.tunnel_queue(&o.stats());
    }
}

/// Connects, runs a session, and reconnects with capped exponential backoff and full jitter;
/// a failed connect moves on to the next platform address (`url`, then each of `failoverUrls`,
/// round and round); a connection that was up and is lost is retried at its address first.
async fn reconnect_loop(
    shared: Arc<Shared>,
    connectors: Vec<Connector>,
    mut shutdown: watch::Receiver<bool>,
) {
    let timing = shared.config.timing.clone();
    let startup = rand::rng().random_range(0..=timing.startup_jitter_ms);
    if sleep_or_shutdown(Duration::from_millis(startup), &mut shutdown).await {
        return;
    }
    let mut attempt: u32 = 0;
    let mut current = 0;
    loop {
        let connector = &connectors[current % connectors.len()];
        current += 1;
        let outcome = match connector.connect().await {
            Ok(ws) => match Session::establish(&shared, ws).await {
                Ok(session) => {
                    attempt = 0;
                    shared.connected.store(true, Ordering::SeqCst);
                    shared.metrics.tunnel_connected(true);
                    shared.metrics.tunnel_connect_failing(None);
                    tracing::info!(url = %connector.url(), "tunnel up: authenticated and bound");
                    // Stay with this address while it works.
                    current -= 1;
                    let e = session.run(shutdown.clone()).await;
                    shared.connected.store(false, Ordering::SeqCst);
                    shared.metrics.tunnel_connected(false);
                    e
                }
                Err(e) => e,
            },
            Err(e) => SessionError::Connect(e.stage(), e.to_string()),
        };
        shared.metrics.tunnel_connect_failing(match &outcome {
            SessionError::Connect(stage, _) => Some(stage),
            _ => None,
        });
        if matches!(outcome, SessionError::Shutdown) || *shutdown.borrow() {
            return;
        }
        shared.metrics.tunnel_disconnect(reason_label(&outcome));
        let cap = timing.backoff_max_ms;
        let base = timing
            .backoff_initial_ms
            .saturating_mul(1u64 << attempt.min(20))
            .min(cap);
        let delay = rand::rng().random_range(base / 2..=base);
        attempt = attempt.saturating_add(1);
        tracing::warn!(url = %connector.url(), error = %outcome, retry_in_ms = delay, "tunnel down");
        if sleep_or_shutdown(Duration::from_millis(delay), &mut shutdown).await {
            return;
        }
    }
}

fn reason_label(e: &SessionError) -> &'static str {
    match e {
        SessionError::Unauthorized(_) => "unauthorized",
        SessionError::BindRefused(_) => "bind_refused",
        SessionError::Timeout(_) => "timeout",
        SessionError::KeepAlive(_) => "keep_alive",
        SessionError::Connect(stage, _) => stage,
        SessionError::Ws(_) => "connection",
        SessionError::Protocol(_) => "protocol",
        SessionError::Shutdown => "shutdown",
    }
}

/// Sleeps; `true` when shutdown was requested meanwhile.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.changed() => true,
    }
}

/// Feeds Lua property changes (already filtered by their push rules) into the outbox.
async fn collect_lua_changes(
    tunnel: Tunnel,
    mut changes: broadcast::Receiver<crate::lua::PropertyChange>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let change = tokio::select! {
            c = changes.recv() => c,
            _ = shutdown.changed() => return,
        };
        match change {
            Ok(c) => {
                tunnel.push(Update {
                    thing: c.thing,
                    property: c.property,
                    base_type: c.base_type,
                    value: c.value.value,
                    time_ms: c.value.time_ms,
                    quality: c.value.quality,
                    event: false,
                });
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "Lua change feed lagged; updates lost before queueing"
                );
                tunnel.shared.metrics.tunnel_lagged(n);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
