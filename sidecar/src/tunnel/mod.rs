//! The persistent AlwaysOn tunnel from the gateway to its platform: one websocket per process,
//! every thing bound over it, updates store-and-forwarded, reconnects with backoff and jitter.

pub mod config;
pub mod connect;
pub mod downstream;
pub mod outbox;
pub mod proxy;
pub mod session;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use rand::RngExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::uplink::{self, Queue};
use config::TunnelConfig;
use connect::Connector;
use edgeway_runtime::ConfigError;
use outbox::Outbox;
use session::{Session, SessionError};

/// State shared by the reconnect loop, its sessions and the producers of updates.
pub struct Shared {
    config: TunnelConfig,
    app_key: String,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    queue: Queue,
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
        self.queue.lock()
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
        let (queue, queue_tasks) = Queue::start(
            &config.queue,
            "tunnel.queue",
            &registry,
            metrics.clone(),
            shutdown.clone(),
        )?;
        let shared = Arc::new(Shared {
            config,
            app_key,
            registry: registry.clone(),
            metrics,
            queue: queue.clone(),
            request_ids: AtomicU32::new(1),
            connected: AtomicBool::new(false),
        });
        let tunnel = Tunnel {
            shared: shared.clone(),
        };
        let mut tasks = vec![tokio::spawn(reconnect_loop(
            shared,
            connectors,
            shutdown.clone(),
        ))];
        tasks.extend(queue_tasks);
        Ok((tunnel, tasks))
    }

    /// The queue of updates this tunnel sends (push into it to send).
    pub fn queue(&self) -> &Queue {
        &self.shared.queue
    }

    /// Whether a session is established now.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// Updates waiting for acknowledgement, and updates dropped by the overflow policy.
    pub fn queue_state(&self) -> (usize, u64) {
        let s = self.shared.queue.stats();
        (s.len, s.dropped)
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
            SessionError::Unauthorized(_) => Some("credentials"),
            _ => None,
        });
        if matches!(outcome, SessionError::Shutdown) || *shutdown.borrow() {
            return;
        }
        shared.metrics.tunnel_disconnect(reason_label(&outcome));
        let delay = uplink::backoff(timing.backoff_initial_ms, timing.backoff_max_ms, attempt);
        attempt = attempt.saturating_add(1);
        tracing::warn!(url = %connector.url(), error = %outcome, retry_in_ms = delay.as_millis() as u64, "tunnel down");
        if sleep_or_shutdown(delay, &mut shutdown).await {
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
