//! `edgeway-operator local FILE...`: the same EdgeGateway manifests, run on this machine without
//! Kubernetes. Certificates are issued into a state directory (reused and renewed across runs),
//! each gateway's sidecar config is rendered by the operator's own code and pointed at local
//! files and loopback ports, and the reference platform (AlwaysOn gateways), the embedded
//! broker (MQTT gateways) and the gateways run in this process.

pub mod broker;
mod gateway;
pub mod manifests;
pub mod schema;
pub mod state;
pub mod view;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgeway_sidecar::mqtt::password_line;
use kube::ResourceExt;

use crate::certs::{Lifetime, Usage, HOUR};
use crate::crd::{EdgeGateway, PlatformProtocol};
use crate::resources::NamespaceCa;
use manifests::Manifests;
use state::{write, LeafRequest, State};

/// Options of `edgeway-operator local`.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Manifest files.
    pub files: Vec<PathBuf>,
    /// State directory (CA, certificates, generated credentials, queues).
    pub state_dir: PathBuf,
    /// Connect to this platform instead of starting the reference platform.
    pub platform: Option<String>,
    /// Port of the reference platform's REST API (0: any free port).
    pub rest_port: u16,
    /// Serve gateways on any free ports instead of trying their `spec.server.port` first (for
    /// several runs side by side, e.g. tests).
    pub any_ports: bool,
    /// Stop once every tunnel is up and report, instead of running until Ctrl-C (for tests
    /// and smoke checks); fails when that takes longer than this.
    pub until_connected: Option<Duration>,
}

/// One gateway pod run locally.
pub struct LocalPod {
    /// Gateway name.
    pub gateway: String,
    /// Pod name as in the cluster (`<gw>-<ordinal>`).
    pub pod: String,
    /// The running sidecar.
    pub sidecar: edgeway_sidecar::Running,
    /// Simulated devices this pod runs.
    pub devices: u32,
    /// Lines a user can paste to talk to this gateway.
    pub try_lines: Vec<String>,
}

/// Why local mode could not run.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A manifest is invalid; the message names file, document and field.
    #[error("{0}")]
    Manifest(String),
    /// Something on this machine failed (files, ports, start-up).
    #[error("{0}")]
    Setup(String),
    /// Not every tunnel came up in time (`until_connected`).
    #[error("{0}")]
    NotConnected(String),
}

pub(super) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs the manifests until Ctrl-C (or until connected, with `until_connected`).
pub async fn run(opts: LocalOptions) -> Result<(), LocalError> {
    let mut m = manifests::load(&opts.files).map_err(|e| LocalError::Manifest(e.to_string()))?;
    let state = State::open(&opts.state_dir, now()).map_err(LocalError::Setup)?;
    issue_certificates(&state, &mut m)?;
    // Validate everything before starting anything: the operator's own checks and Lua syntax.
    for (file, gw) in &m.gateways {
        let at = |msg: String| {
            LocalError::Manifest(format!(
                "{}: EdgeGateway {}: {msg}",
                file.display(),
                gw.name_any()
            ))
        };
        crate::validate::spec(gw).map_err(|p| at(format!("{} ({})", p.message, p.reason)))?;
        let sources = lua_sources(&m, gw).map_err(at)?;
        crate::validate::lua(&gw.spec, &sources).map_err(|p| at(p.message))?;
    }
    let speaks = |p: PlatformProtocol| {
        m.gateways
            .iter()
            .any(|(_, g)| g.spec.platform.protocol == p)
    };
    let platform = match &opts.platform {
        Some(url) => Platform {
            external: Some(url.clone()),
            alwayson: None,
            broker: None,
        },
        None => Platform {
            external: None,
            alwayson: match speaks(PlatformProtocol::AlwaysOn) {
                true => Some(start_platform(&state, &m, opts.rest_port).await?),
                false => None,
            },
            broker: match speaks(PlatformProtocol::Mqtt) {
                true => Some(start_broker(&state, &m, opts.any_ports).await?),
                false => None,
            },
        },
    };
    let mut pods = Vec::new();
    for (_, gw) in &m.gateways {
        pods.extend(gateway::start(&state, &m, gw, &platform, opts.any_ports).await?);
    }
    let outcome = match opts.until_connected {
        Some(limit) => wait_connected(&pods, limit).await,
        None => {
            view::live(&pods, &platform, &state).await;
            Ok(())
        }
    };
    view::print(&pods, &platform, &state).await;
    for p in pods {
        p.sidecar.shutdown().await;
    }
    if let Some(p) = platform.alwayson {
        p.shutdown().await;
    }
    if let Some(b) = platform.broker {
        b.shutdown();
    }
    outcome
}

/// What the gateways connect to: `--platform URL`, or what local mode started for them.
pub struct Platform {
    /// `--platform URL`: every gateway connects there.
    pub external: Option<String>,
    /// The reference platform, started when a gateway speaks AlwaysOn.
    pub alwayson: Option<edgeway_platform::Running>,
    /// The embedded broker, started when a gateway speaks MQTT.
    pub broker: Option<broker::Broker>,
}

impl Platform {
    /// The URL a gateway speaking `protocol` connects to.
    fn url(&self, protocol: PlatformProtocol) -> Option<String> {
        if let Some(u) = &self.external {
            return Some(u.clone());
        }
        match protocol {
            PlatformProtocol::AlwaysOn => self
                .alwayson
                .as_ref()
                .map(|p| format!("wss://localhost:{}/Thingworx/WS", p.alwayson_addr.port())),
            PlatformProtocol::Mqtt => self.broker.as_ref().map(broker::Broker::url),
        }
    }
}

async fn wait_connected(pods: &[LocalPod], limit: Duration) -> Result<(), LocalError> {
    let deadline = Instant::now() + limit;
    loop {
        let down: Vec<&str> = pods
            .iter()
            .filter(|p| !p.sidecar.connected())
            .map(|p| p.pod.as_str())
            .collect();
        if down.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LocalError::NotConnected(format!(
                "platform connections not up after {limit:?}: {}",
                down.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Template name → script text, from the ConfigMaps the gateway references.
pub(super) fn lua_sources(
    m: &Manifests,
    gw: &EdgeGateway,
) -> Result<BTreeMap<String, String>, String> {
    gw.spec
        .lua
        .templates
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let field = format!("spec.lua.templates[{i}]");
            m.config_map(&field, &t.config_map, &t.key)
                .map(|text| (t.name.clone(), text))
        })
        .collect()
}

/// Starts the reference platform with a certificate from the local CA and every app key the
/// manifests reference.
async fn start_platform(
    state: &State,
    m: &Manifests,
    rest_port: u16,
) -> Result<edgeway_platform::Running, LocalError> {
    let setup = LocalError::Setup;
    let mut keys = String::from("# app keys of the local manifests\n");
    for (_, gw) in &m.gateways {
        let p = &gw.spec.platform;
        let (PlatformProtocol::AlwaysOn, Some((field, r))) = (p.protocol, p.credential()) else {
            continue;
        };
        let key = m
            .secret(field, &r.name, &r.key)
            .map_err(|e| LocalError::Manifest(format!("EdgeGateway {}: {e}", gw.name_any())))?;
        keys.push_str(&format!("{}:{}\n", gw.name_any(), key.trim()));
    }
    let dir = state.dir.join("platform");
    let keys_file = dir.join("app-keys");
    write(&keys_file, &keys, true).map_err(setup)?;
    let tls = localhost_server(state, "platform").map_err(setup)?;
    let rest = free_or_any(rest_port);
    let yaml = format!(
        "listen: 127.0.0.1:0\ntls:\n  cert: {}\n  key: {}\n  clientAuth: \"off\"\nauth:\n  appKeysFile: {}\nhistorySize: 100\nrest:\n  listen: {rest}\nadmin:\n  listen: 127.0.0.1:0\n",
        tls.cert.display(),
        tls.key.display(),
        keys_file.display()
    );
    let config = edgeway_platform::config::PlatformConfig::parse(&yaml, "local platform")
        .map_err(|e| setup(format!("platform config: {e}")))?;
    edgeway_platform::start(config)
        .await
        .map_err(|e| setup(format!("platform: {e}")))
}

/// Starts the embedded broker; the MQTT logins the manifests name are the ones it accepts.
async fn start_broker(
    state: &State,
    m: &Manifests,
    any_port: bool,
) -> Result<broker::Broker, LocalError> {
    let mut logins = BTreeMap::new();
    for (_, gw) in &m.gateways {
        let p = &gw.spec.platform;
        let user = p.mqtt.as_ref().and_then(|mq| mq.username.as_ref());
        let (PlatformProtocol::Mqtt, Some(user), Some((field, r))) =
            (p.protocol, user, p.credential())
        else {
            continue;
        };
        let text = m
            .secret(field, &r.name, &r.key)
            .map_err(|e| LocalError::Manifest(format!("EdgeGateway {}: {e}", gw.name_any())))?;
        logins.insert(user.clone(), password_line(&text).to_owned());
    }
    broker::start(state, logins, any_port)
        .await
        .map_err(LocalError::Setup)
}

/// A `localhost` server certificate from the local CA for what local mode serves itself (the
/// reference platform, the embedded broker), kept in the state directory's `sub`.
pub(super) fn localhost_server(state: &State, sub: &str) -> Result<state::CertFiles, String> {
    state.leaf(
        LeafRequest {
            sub,
            stem: "server",
            common_name: "localhost",
            names: &["localhost".to_string()],
            usage: Usage::Server,
            issuer: NamespaceCa::Gateway,
            algorithm: Default::default(),
            lifetime: lifetime(2160, None),
        },
        now(),
    )
}

pub(super) fn lifetime(duration_hours: u32, renew_before_hours: Option<u32>) -> Lifetime {
    Lifetime {
        duration: i64::from(duration_hours) * HOUR,
        renew_before: renew_before_hours.map(|h| i64::from(h) * HOUR),
    }
}

/// 127.0.0.1:`port` when it is free now, else any free port.
pub(super) fn free_or_any(port: u16) -> SocketAddr {
    let want = SocketAddr::from(([127, 0, 0, 1], port));
    if port != 0 && std::net::TcpListener::bind(want).is_ok() {
        want
    } else {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }
}

/// Does what cert-manager does for each `Certificate`: issues it (from the local CA) into its
/// Secret, shaped `tls.crt`, `tls.key`, `ca.crt`.
fn issue_certificates(state: &State, m: &mut Manifests) -> Result<(), LocalError> {
    for c in m.certificates.clone() {
        let cn = c
            .common_name
            .clone()
            .or_else(|| c.dns_names.first().cloned())
            .unwrap_or_else(|| c.secret_name.clone());
        let files = state
            .leaf(
                LeafRequest {
                    sub: "cert-manager",
                    stem: &c.secret_name,
                    common_name: &cn,
                    names: &c.dns_names,
                    usage: Usage::Server,
                    issuer: NamespaceCa::Gateway,
                    algorithm: Default::default(),
                    lifetime: lifetime(2160, None),
                },
                now(),
            )
            .map_err(LocalError::Setup)?;
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| LocalError::Setup(format!("{}: {e}", p.display())))
        };
        let data = BTreeMap::from([
            (
                "tls.crt".to_string(),
                k8s_openapi::ByteString(read(&files.cert)?),
            ),
            (
                "tls.key".to_string(),
                k8s_openapi::ByteString(read(&files.key)?),
            ),
            (
                "ca.crt".to_string(),
                k8s_openapi::ByteString(read(&state.ca_file())?),
            ),
        ]);
        let mut secret = k8s_openapi::api::core::v1::Secret::default();
        secret.metadata.name = Some(c.secret_name.clone());
        secret.type_ = Some("kubernetes.io/tls".into());
        secret.data = Some(data);
        m.secrets.insert(c.secret_name, secret);
    }
    Ok(())
}

/// The default state directory: `$XDG_STATE_HOME/edgeway` or `~/.local/state/edgeway`.
pub fn default_state_dir() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("edgeway")
}
