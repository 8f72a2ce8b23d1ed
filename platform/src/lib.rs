//! Edgeway reference platform: the server side of the ThingWorx AlwaysOn protocol over a TLS
//! websocket, a registry of gateways and their things' property values, and a JSON REST API.
//!
//! [`start`] turns a validated [`config::PlatformConfig`] into running listeners; the binary,
//! the demos and the tests all go through it. [`Running::registry`] gives Rust callers the same
//! view the REST API has, and [`edge::EdgeSession`] the same tunnel calls.

#![deny(missing_docs)]

pub mod auth;
pub mod config;
pub mod edge;
pub mod metrics;
pub mod registry;
pub mod rest;
pub mod scope;
pub mod session;
pub mod sync;
pub mod throttle;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edgeway_runtime::admin::{self, Readiness};
use edgeway_runtime::tls::reload::ReloadingServerConfig;
use edgeway_runtime::ConfigError;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use auth::{AppKeys, BearerToken};
use config::{AuthMethod, PlatformConfig};
use edge::EdgeContext;
use metrics::Metrics;
use registry::Registry;

/// Why the platform could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config or a file it names is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("{what}: cannot listen on {addr}: {source}")]
    Bind {
        /// Which listener (config field).
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A started platform: bound addresses, shared state, and the handle to stop it.
pub struct Running {
    /// Address of the AlwaysOn websocket listener.
    pub alwayson_addr: SocketAddr,
    /// Address of the REST API.
    pub rest_addr: SocketAddr,
    /// Address of the admin listener.
    pub admin_addr: SocketAddr,
    /// Sessions, bindings and stored values.
    pub registry: Arc<Registry>,
    /// Metrics and totals.
    pub metrics: Arc<Metrics>,
    /// Protocol context (config in force, tunnel defaults).
    pub context: Arc<EdgeContext>,
    /// The TLS config holder, when TLS is on.
    pub tls: Option<Arc<ReloadingServerConfig>>,
    ready: Arc<Readiness>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Marks not-ready, closes every session (websocket close 1001), stops the listeners.
    pub async fn shutdown(self) {
        self.ready.set(false);
        let _ = self.shutdown.send(true);
        let mut tasks = self.tasks;
        // The AlwaysOn listener (first task) drains its sessions itself; give it time.
        if !tasks.is_empty() {
            let ws = tasks.remove(0);
            let abort = ws.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), ws)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let err = |source| StartError::Bind { what, addr, source };
    let l = TcpListener::bind(addr).await.map_err(err)?;
    let local = l.local_addr().map_err(err)?;
    Ok((l, local))
}

/// Loads every file the config names, binds the listeners and starts serving.
pub async fn start(config: PlatformConfig) -> Result<Running, StartError> {
    config.validate()?;
    let metrics = Arc::new(Metrics::new());
    let tls = match &config.tls {
        Some(t) => Some(ReloadingServerConfig::new(
            t.clone(),
            "tls",
            metrics.clone(),
        )?),
        None => {
            tracing::warn!("AlwaysOn listener without TLS: plaintext is set");
            None
        }
    };
    let app_keys = match (
        &config.auth.app_keys_file,
        config.auth.methods.contains(&AuthMethod::AppKey),
    ) {
        (Some(path), true) => Some(AppKeys::load(path, "auth.appKeysFile")?),
        _ => None,
    };
    let token = config
        .rest
        .token_file
        .as_deref()
        .map(|p| BearerToken::load(p, "rest.tokenFile"))
        .transpose()?;
    if token.is_none() && !config.rest.listen.ip().is_loopback() {
        tracing::warn!(listen = %config.rest.listen, "REST API on a non-loopback address without rest.tokenFile");
    }
    let registry = Arc::new(Registry::new(
        config.history_size,
        config.rest.stream_buffer,
        metrics.clone(),
    ));
    let context = Arc::new(EdgeContext {
        registry: registry.clone(),
        metrics: metrics.clone(),
        app_keys,
        auth: config.auth.clone(),
        bind_policy: config.bind_policy,
        subscriptions: config.subscriptions.clone(),
        request_timeout: Duration::from_millis(config.request_timeout_ms),
        throttle: Default::default(),
        max_things_per_session: config.max_things_per_session,
        scopes: scope::ThingScopes::new(config.auth.thing_scopes.clone()),
        sync_on_bind: config.sync_on_bind,
    });

    let (ws_listener, alwayson_addr) = bind("listen", config.listen).await?;
    let (rest_listener, rest_addr) = bind("rest.listen", config.rest.listen).await?;
    let (admin_listener, admin_addr) = bind("admin.listen", config.admin.listen).await?;

    let (shutdown, rx) = watch::channel(false);
    let ready = Arc::new(Readiness::default());
    let listener = Arc::new(ws::Listener {
        ctx: context.clone(),
        tls: tls.clone().map(ws::TlsSource::new),
        config: config.websocket.clone(),
    });
    let mut tasks = vec![tokio::spawn(ws::serve(ws_listener, listener, rx.clone()))];
    let api = Arc::new(rest::Api {
        ctx: context.clone(),
        token,
        max_body_bytes: config.rest.max_body_bytes,
        body_timeout: Duration::from_millis(config.rest.request_timeout_ms),
        shutdown: rx.clone(),
    });
    tasks.push(tokio::spawn(rest::serve(
        rest_listener,
        api,
        config.rest.limits(),
        rx.clone(),
    )));
    tasks.push(tokio::spawn(expire_things(
        registry.clone(),
        Duration::from_millis(config.thing_retention_ms),
        rx.clone(),
    )));
    tasks.push(tokio::spawn(admin::serve(
        admin_listener,
        metrics.clone(),
        ready.clone(),
        rx.clone(),
    )));
    if let Some(t) = tls
        .as_ref()
        .filter(|_| config.tls.as_ref().is_some_and(|t| t.watch))
    {
        tasks.push(t.spawn_watcher(rx));
    }
    ready.set(true);
    tracing::info!(%alwayson_addr, %rest_addr, %admin_addr, tls = tls.is_some(), "platform started");
    Ok(Running {
        alwayson_addr,
        rest_addr,
        admin_addr,
        registry,
        metrics,
        context,
        tls,
        ready,
        shutdown,
        tasks,
    })
}

/// Forgets things no session has held for `retention`, checking ten times per retention period
/// (at most once a second), so a thing goes between `retention` and 1.1 × `retention` after its
/// session left.
async fn expire_things(
    registry: Arc<Registry>,
    retention: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval((retention / 10).max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let gone = registry.expire(std::time::Instant::now(), retention);
                if gone > 0 {
                    tracing::info!(things = gone, "forgot things no session held for thingRetentionMs");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
