//! Edgeway gateway sidecar: a secure resource server for device things, backed by sandboxed Lua.
//!
//! [`start`] turns a validated [`config::SidecarConfig`] into running listeners; the binary and
//! the integration tests both go through it.

pub mod auth;
pub mod config;
pub mod lua;
pub mod metrics;
pub mod mqtt;
pub mod registry;
pub mod server;
pub mod sim;
pub mod tunnel;
pub mod uplink;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use config::SidecarConfig;
use edgeway_runtime::admin;
use edgeway_runtime::tls::reload::ReloadingServerConfig;
use edgeway_runtime::ConfigError;
use lua::{TemplateSource, ThingSpec, Things};
use metrics::Metrics;
use server::authn::Authenticator;
use server::proxy::Proxy;
use server::App;

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config or a file it names is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A Lua template failed to load.
    #[error("lua: {0}")]
    Lua(#[from] lua::LuaError),
    /// A listener could not be bound.
    #[error("{what}: cannot listen on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A started sidecar: bound addresses and the handle to stop it.
pub struct Running {
    /// Address of the device-facing server.
    pub server_addr: SocketAddr,
    /// Address of the admin listener.
    pub admin_addr: SocketAddr,
    /// Every thing served (Lua and simulated), for callers that drive them directly.
    pub registry: Arc<registry::Registry>,
    /// Metrics registry shared by every part.
    pub metrics: Arc<Metrics>,
    /// The TLS config holder, when TLS is on (reloads are observable through it).
    pub tls: Option<Arc<ReloadingServerConfig>>,
    /// The platform tunnel, when configured.
    pub tunnel: Option<tunnel::Tunnel>,
    /// The MQTT connector, when configured instead.
    pub mqtt: Option<mqtt::Mqtt>,
    ready: Arc<admin::Readiness>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Scan-rate loops of things: they hold no state to save, so they are simply aborted.
    thing_tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Whether the platform connection (tunnel or MQTT) is up now.
    pub fn connected(&self) -> bool {
        self.tunnel.as_ref().is_some_and(|t| t.connected())
            || self.mqtt.as_ref().is_some_and(|m| m.connected())
    }

    /// The platform's queue of updates, whichever protocol carries it.
    pub fn queue(&self) -> Option<&uplink::Queue> {
        self.tunnel
            .as_ref()
            .map(|t| t.queue())
            .or(self.mqtt.as_ref().map(|m| m.queue()))
    }

    /// Stops accepting, marks not-ready and waits for the listeners to end.
    pub async fn shutdown(self) {
        self.ready.set(false);
        let _ = self.shutdown.send(true);
        self.thing_tasks.iter().for_each(|t| t.abort());
        let queue = self.queue().cloned();
        // Give the tasks a moment to finish cleanly (the platform connection closes its socket), then stop
        // whatever is left.
        let aborts: Vec<_> = self.tasks.iter().map(|t| t.abort_handle()).collect();
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(Duration::from_secs(2), all)
            .await
            .is_err()
        {
            aborts.iter().for_each(|a| a.abort());
        }
        if let Some(q) = queue {
            q.flush();
        }
    }
}

/// Ticks the fleet and forwards its updates to the platform's queue (or just lets them update
/// state).
fn start_simulation(
    sim: &registry::SimFleet,
    queue: Option<uplink::Queue>,
    mut shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<sim::Update>>(64);
    let driver = sim::spawn(sim.fleet.clone(), Duration::from_millis(20), tx);
    let schema = sim.schema.clone();
    let forward = tokio::spawn(async move {
        // Names are built once per device and property, not per update.
        let props: Vec<(Arc<str>, edgeway_protocol::basetype::BaseType)> = schema
            .properties()
            .iter()
            .map(|p| (Arc::from(p.name.as_str()), p.base_type))
            .collect();
        loop {
            let batch = tokio::select! {
                b = rx.recv() => match b { Some(b) => b, None => return },
                _ = shutdown.changed() => return,
            };
            let Some(q) = &queue else { continue };
            q.push_many(
                batch
                    .iter()
                    .flat_map(|u| {
                        let Some((name, base_type)) = props.get(usize::from(u.property)) else {
                            return [None, None];
                        };
                        let thing: Arc<str> = Arc::from(schema.name(u.device));
                        let value = schema.value_json(u);
                        // A crossed threshold fires its event right after the value that crossed it.
                        let event = u
                            .event
                            .and_then(|e| schema.events().get(usize::from(e)))
                            .map(|e| tunnel::outbox::Update {
                                thing: thing.clone(),
                                property: Arc::from(e.name.as_str()),
                                base_type: edgeway_protocol::basetype::BaseType::Infotable,
                                value: serde_json::json!({"property": &**name, "value": value}),
                                time_ms: u.time_ms,
                                quality: u.quality,
                                event: true,
                            });
                        [
                            Some(tunnel::outbox::Update {
                                thing,
                                property: name.clone(),
                                base_type: *base_type,
                                value,
                                time_ms: u.time_ms,
                                quality: u.quality,
                                event: false,
                            }),
                            event,
                        ]
                    })
                    .flatten(),
            );
        }
    });
    vec![driver, forward]
}

/// Loads everything the config names and starts the listeners.
pub async fn start(config: SidecarConfig) -> Result<Running, StartError> {
    config.validate()?;
    let metrics = Arc::new(Metrics::new());
    let tls = match &config.server.tls {
        Some(t) => Some(ReloadingServerConfig::new(
            t.clone(),
            "server.tls",
            metrics.clone(),
        )?),
        None => {
            tracing::warn!("serving plain HTTP: server.plaintext is set");
            None
        }
    };
    let authn = Authenticator::from_config(&config.auth, metrics.clone())?;
    let credentials = authn.credentials();
    let things = load_things(&config, &metrics).await?;
    metrics.set_things("lua", things.thing_names().len());
    let fleet = match &config.simulation {
        Some(sim) => {
            let fleet = sim::Fleet::new(sim)?;
            metrics.set_things("simulated", fleet.shard().len());
            Some(registry::SimFleet::new(fleet))
        }
        None => None,
    };
    let registry = Arc::new(registry::Registry::new(things.clone(), fleet));
    let identity_header = http::HeaderName::from_bytes(config.auth.identity_header.as_bytes())
        .map_err(|_| ConfigError::new("auth.identityHeader", "not a valid header name"))?;
    let method_header = http::HeaderName::from_bytes(config.auth.method_header.as_bytes())
        .map_err(|_| ConfigError::new("auth.methodHeader", "not a valid header name"))?;
    let app = Arc::new(App {
        authn,
        things: registry.clone(),
        proxy: config.upstream.clone().map(Proxy::new),
        metrics: metrics.clone(),
        identity_header,
        method_header,
        authz: config.auth.authorization.clone(),
        max_body_bytes: config.server.max_body_bytes,
        body_timeout: Duration::from_millis(config.server.body_timeout_ms),
    });
    let (server_listener, server_addr) = bind("server.listen", config.server.listen).await?;
    let (admin_listener, admin_addr) = bind("admin.listen", config.admin.listen).await?;

    let (shutdown, rx) = watch::channel(false);
    let ready = Arc::new(admin::Readiness::default());
    let thing_tasks = things.spawn_tasks();
    let mut tasks = Vec::new();
    let tunnel = match &config.tunnel {
        Some(t) => {
            let (tunnel, handles) =
                tunnel::Tunnel::start(t.clone(), registry.clone(), metrics.clone(), rx.clone())?;
            tasks.extend(handles);
            Some(tunnel)
        }
        None => None,
    };
    let mqtt = match &config.mqtt {
        Some(m) => {
            let (mqtt, handles) =
                mqtt::Mqtt::start(m.clone(), registry.clone(), metrics.clone(), rx.clone())?;
            tasks.extend(handles);
            Some(mqtt)
        }
        None => None,
    };
    if let Some(t) = tls
        .as_ref()
        .filter(|_| config.server.tls.as_ref().is_some_and(|t| t.watch))
    {
        tasks.push(t.spawn_watcher(rx.clone()));
    }
    if let Some(c) = credentials {
        tasks.push(edgeway_runtime::watch::spawn(c, rx.clone()));
    }
    if let Some(sim) = registry.sim() {
        let queue = tunnel
            .as_ref()
            .map(|t| t.queue())
            .or(mqtt.as_ref().map(|m| m.queue()));
        tasks.extend(start_simulation(sim, queue.cloned(), rx.clone()));
    }
    let handshake_timeout = Duration::from_millis(config.server.handshake_timeout_ms);
    tasks.push(tokio::spawn(server::serve(
        server_listener,
        tls.clone(),
        handshake_timeout,
        config.server.limits(),
        app,
        rx.clone(),
    )));
    tasks.push(tokio::spawn(admin::serve(
        admin_listener,
        metrics.clone(),
        ready.clone(),
        rx,
    )));
    ready.set(true);
    tracing::info!(%server_addr, %admin_addr, things = things.thing_names().len(), "sidecar started");
    Ok(Running {
        server_addr,
        admin_addr,
        registry,
        metrics,
        tls,
        tunnel,
        mqtt,
        ready,
        shutdown,
        tasks,
        thing_tasks,
    })
}

/// Loads the Lua templates and things (and the simulation's prototype VM) off the runtime,
/// with the metrics observer installed.
async fn load_things(
    config: &SidecarConfig,
    metrics: &Arc<Metrics>,
) -> Result<Arc<Things>, StartError> {
    let templates: Vec<TemplateSource> = config
        .lua
        .templates
        .iter()
        .map(|t| TemplateSource {
            name: t.name.clone(),
            path: t.file.clone(),
            dialect: t.dialect,
        })
        .collect();
    let specs: Vec<ThingSpec> = config
        .lua
        .things
        .iter()
        .map(|t| ThingSpec {
            name: t.name.clone(),
            template: t.template.clone(),
            scan_rate: Duration::from_millis(t.scan_rate_ms),
            properties: t.properties.clone(),
        })
        .collect();
    let limits = config.lua.limits;
    // Simulated devices run their template's services on one hidden prototype VM.
    let sim_template = config
        .simulation
        .as_ref()
        .and_then(|s| s.template.as_deref());
    let prototype = match sim_template {
        Some(name) => Some(
            templates
                .iter()
                .find(|t| t.name == name)
                .cloned()
                .ok_or_else(|| {
                    ConfigError::new(
                        "simulation.template",
                        format!("no template named {name:?} in lua.templates"),
                    )
                })?,
        ),
        None => None,
    };
    let things = tokio::task::spawn_blocking(move || {
        let mut things = Things::load(&templates, &specs, limits)?;
        if let Some(template) = &prototype {
            things.load_prototype(template, limits)?;
        }
        Ok::<_, lua::LuaError>(things)
    })
    .await
    .map_err(|e| ConfigError::new("lua", format!("loader crashed: {e}")))??;
    let things = Arc::new(things);
    // Task runs are timed inside the runtime; REST calls are timed by the server.
    let m = metrics.clone();
    things.set_observer(Arc::new(move |kind, took, ended| {
        if kind == "task" {
            m.lua_call("task", took);
        }
        if ended.offloaded {
            m.lua_offloaded(kind);
        }
        if ended.timed_out {
            m.lua_timeout(kind);
        }
    }));
    Ok(things)
}

/// Binds a listener; the error names the config field.
async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let err = |source| StartError::Bind { what, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}
