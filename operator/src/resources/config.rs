//! Renders the sidecar's own config type ([`SidecarConfig`]) from a gateway spec.
//!
//! The operator never re-declares the format: it starts from the sidecar's defaults (parsed by
//! the sidecar's parser), sets what the spec says, and points every path at the volumes that
//! [`super::workload`] mounts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use edgeway_runtime::logging::LogFormat;
use edgeway_runtime::tls::{ClientAuthMode, TlsConfig};
use edgeway_runtime::ConfigError;
use edgeway_sidecar::config::{
    AuthMethodName, BasicConfig, OAuthConfig, SidecarConfig, TemplateConfig, ThingConfig,
    UpstreamConfig,
};
use edgeway_sidecar::mqtt::config::MqttConfig;
use edgeway_sidecar::sim::{ShardRange, SimulationConfig};
use edgeway_sidecar::tunnel::config::{
    ClientCert, GatewayIdentity, ProxyConfig, QueueConfig,
    ServerVerification as TunnelVerification, TunnelConfig,
};

use super::{Names, CONFIG_KEY};
use crate::crd::{
    ClientTrust, EdgeGatewaySpec, KeyFormat, PlatformProtocol, PlatformSpec, SimulationSpec,
};

/// Where the ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/edgeway/config";
/// Where the server certificate Secret is mounted (`tls.crt`, `tls.key`, `ca.crt`).
pub const SERVER_TLS_DIR: &str = "/etc/edgeway/tls/server";
/// Where a user-given device CA bundle is mounted (as file [`CLIENT_CA_FILE`]).
pub const CLIENT_CA_DIR: &str = "/etc/edgeway/tls/client-ca";
/// File name of the device CA bundle in [`CLIENT_CA_DIR`].
pub const CLIENT_CA_FILE: &str = "ca.crt";
/// Where the tunnel client certificate Secret is mounted.
pub const CLIENT_TLS_DIR: &str = "/etc/edgeway/tls/client";
/// Where the platform's CA bundle, pinned certificate or anchor is mounted (file
/// `ca.crt`/`pinned.crt`/`anchor.crt`).
pub const PLATFORM_DIR: &str = "/etc/edgeway/platform";
/// Where the passphrase of a user-supplied server key is mounted (file `passphrase`).
pub const SERVER_KEY_PASSPHRASE_DIR: &str = "/etc/edgeway/tls/server-passphrase";
/// Where the passphrase of a user-supplied client key is mounted (file `passphrase`).
pub const CLIENT_KEY_PASSPHRASE_DIR: &str = "/etc/edgeway/tls/client-passphrase";

/// The Secret keys of a certificate and key: a format and a passphrase only make sense for a
/// user-supplied Secret (issued ones are PEM and unencrypted).
fn user_key_files(
    at: &str,
    user_secret: bool,
    format: KeyFormat,
    passphrase: bool,
    fields: (&str, &str),
) -> Result<(&'static str, &'static str), ConfigError> {
    let only = "only with a user-supplied Secret: issued certificates are PEM and unencrypted";
    if !user_secret && !format.is_pem() {
        return Err(ConfigError::new(format!("{at}.{}", fields.0), only));
    }
    if !user_secret && passphrase {
        return Err(ConfigError::new(format!("{at}.{}", fields.1), only));
    }
    Ok(format.files())
}

/// Where the proxy credentials are mounted (file `credentials`).
pub const PROXY_DIR: &str = "/etc/edgeway/proxy";
/// Where the app key is mounted (file `app-key`).
const APP_KEY_DIR: &str = "/etc/edgeway/app-key";
/// Where the MQTT password is mounted (file `password`).
const MQTT_PASSWORD_DIR: &str = "/etc/edgeway/mqtt-password";

/// How the platform credential ([`PlatformSpec::credential`]) reaches the sidecar: the pod's
/// volume, its directory and the file the Secret key is projected to. Local mode writes the
/// same file name in its own directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialMount {
    /// The pod volume's name.
    pub volume: &'static str,
    /// Where the volume is mounted.
    pub dir: &'static str,
    /// The file the Secret key is projected to.
    pub file: &'static str,
}

impl CredentialMount {
    /// The credential of `protocol`: the app key (AlwaysOn) or the MQTT password.
    pub fn of(protocol: PlatformProtocol) -> CredentialMount {
        match protocol {
            PlatformProtocol::AlwaysOn => CredentialMount {
                volume: "app-key",
                dir: APP_KEY_DIR,
                file: "app-key",
            },
            PlatformProtocol::Mqtt => CredentialMount {
                volume: "mqtt-password",
                dir: MQTT_PASSWORD_DIR,
                file: "password",
            },
        }
    }

    /// The file's path in the pod.
    pub fn path(self) -> PathBuf {
        path(self.dir, self.file)
    }
}
/// Where the basic users file is mounted (file `users`).
pub const BASIC_DIR: &str = "/etc/edgeway/auth/basic";
/// Where the OAuth consumers file is mounted (file `consumers.yaml`).
pub const OAUTH_DIR: &str = "/etc/edgeway/auth/oauth";
/// Where Lua templates are mounted, one `<template>.lua` each.
pub const LUA_DIR: &str = "/etc/edgeway/lua";
/// Where the offline queue lives (a PVC when persisted, else an emptyDir).
pub const QUEUE_DIR: &str = "/var/lib/edgeway/queue";
/// The sidecar's admin port (probes and metrics), on all pod addresses.
pub const ADMIN_PORT: u16 = 9090;

/// A minimal document the sidecar's parser fills with its own defaults.
const DEFAULTS_DOC: &str = r#"
server:
  listen: 0.0.0.0:8443
  plaintext: true
auth:
  methods: [basic, oauth]
  basic:
    usersFile: /u
  oauth:
    credentialsFile: /o
upstream:
  prefix: /
  port: 1
tunnel:
  url: wss://defaults.invalid/
  appKeyFile: /k
  gateway:
    name: g
  server:
    insecureSkipVerify: true
"#;

/// The sidecar's defaults, as its own parser produces them.
pub fn sidecar_defaults() -> Result<SidecarConfig, ConfigError> {
    SidecarConfig::parse(DEFAULTS_DOC, "operator defaults")
}

fn path(dir: &str, file: &str) -> PathBuf {
    PathBuf::from(dir).join(file)
}

/// Where the pinned device certificates are mounted, one file per entry of
/// `spec.server.pinnedClientCertificates`.
pub const PINNED_CLIENTS_DIR: &str = "/etc/edgeway/tls/pinned-clients";

/// The pod path of the `i`th pinned device certificate.
pub fn pinned_client_file(i: usize) -> PathBuf {
    path(PINNED_CLIENTS_DIR, &format!("{i}.crt"))
}

/// Path of a Lua template's script inside the pod.
pub fn lua_file(template: &str) -> PathBuf {
    path(LUA_DIR, &format!("{template}.lua"))
}

/// Renders the config every pod of gateway `name` runs with, and validates it with the
/// sidecar's rules. [`config_files`] then makes each pod's own where they differ.
pub fn render(spec: &EdgeGatewaySpec, name: &str) -> Result<SidecarConfig, ConfigError> {
    let defaults = sidecar_defaults()?;
    let mut c = defaults.clone();
    let server = &spec.server;

    c.server.listen = SocketAddr::from(([0, 0, 0, 0], server.port));
    c.server.plaintext = false;
    let trust = server.trust();
    let pins = &server.pinned_client_certificates;
    match trust {
        ClientTrust::Pinned | ClientTrust::CaOrPinned if pins.is_empty() => {
            return Err(ConfigError::new(
                "spec.server.pinnedClientCertificates",
                "clientTrust needs at least one pinned certificate",
            ))
        }
        ClientTrust::Ca if !pins.is_empty() => {
            return Err(ConfigError::new(
                "spec.server.clientTrust",
                "is ca, which ignores pinnedClientCertificates: use caOrPinned or pinned",
            ))
        }
        _ => {}
    }
    let requested = server.client_auth != ClientAuthMode::Off;
    let client_ca = (requested && trust != ClientTrust::Pinned).then(|| match &server.client_ca {
        Some(_) => path(CLIENT_CA_DIR, CLIENT_CA_FILE),
        None => path(SERVER_TLS_DIR, "ca.crt"),
    });
    let pinned_peers = if requested && trust != ClientTrust::Ca {
        (0..pins.len()).map(pinned_client_file).collect()
    } else {
        Vec::new()
    };
    let (cert, key) = user_key_files(
        "spec.server",
        server.tls_secret_name.is_some(),
        server.tls_secret_format,
        server.tls_key_passphrase_secret.is_some(),
        ("tlsSecretFormat", "tlsKeyPassphraseSecret"),
    )?;
    c.server.tls = Some(TlsConfig {
        cert: path(SERVER_TLS_DIR, cert),
        key: path(SERVER_TLS_DIR, key),
        key_passphrase_file: server
            .tls_key_passphrase_secret
            .as_ref()
            .map(|_| path(SERVER_KEY_PASSPHRASE_DIR, "passphrase")),
        client_auth: server.client_auth,
        client_ca,
        pinned_peers,
        pin_mode: server.pin_mode,
        watch: true,
    });

    c.auth.methods = server.auth_methods.clone();
    c.auth.identity_header = server.identity_header.clone();
    c.auth.method_header = server.auth_method_header.clone();
    c.auth.authorization = server.authorization.clone();
    c.auth.basic = server
        .auth_methods
        .contains(&AuthMethodName::Basic)
        .then(|| {
            let realm = server
                .basic_auth
                .as_ref()
                .and_then(|b| b.realm.clone())
                .or_else(|| defaults.auth.basic.as_ref().map(|b| b.realm.clone()))
                .unwrap_or_default();
            BasicConfig {
                users_file: path(BASIC_DIR, "users"),
                realm,
            }
        });
    c.auth.oauth = match (
        server.auth_methods.contains(&AuthMethodName::OAuth),
        &defaults.auth.oauth,
    ) {
        (true, Some(d)) => Some(OAuthConfig {
            credentials_file: path(OAUTH_DIR, "consumers.yaml"),
            ..d.clone()
        }),
        _ => None,
    };

    c.lua.templates = spec
        .lua
        .templates
        .iter()
        .map(|t| TemplateConfig {
            name: t.name.clone(),
            file: lua_file(&t.name),
            dialect: t.dialect,
        })
        .collect();
    c.lua.things = spec
        .lua
        .things
        .iter()
        .map(|t| ThingConfig {
            name: t.name.clone(),
            template: t.template.clone(),
            scan_rate_ms: t.scan_rate_ms,
            properties: t.properties.clone(),
        })
        .collect();

    c.upstream = match (&spec.upstream, &defaults.upstream) {
        (Some(u), Some(d)) => Some(UpstreamConfig {
            prefix: u.path_prefix.clone(),
            port: u.port,
            strip_prefix: u.strip_prefix,
            timeout_ms: d.timeout_ms,
            forward_credentials: u.forward_credentials,
            forward_client_cert: u.forward_client_cert,
        }),
        _ => None,
    };
    match spec.platform.protocol {
        PlatformProtocol::AlwaysOn => c.tunnel = Some(tunnel(spec, &defaults)?),
        PlatformProtocol::Mqtt => {
            c.tunnel = None;
            c.mqtt = Some(mqtt(spec, name)?);
        }
    }
    c.simulation = spec.simulation.as_ref().map(simulation).transpose()?;
    c.admin.listen = SocketAddr::from(([0, 0, 0, 0], ADMIN_PORT));
    c.logging.format = LogFormat::Json;
    c.validate()?;
    Ok(c)
}

/// The tunnel section: the platform URL, the mounted app key, CA/pinned/insecure, the client
/// certificate and the offline queue.
fn tunnel(spec: &EdgeGatewaySpec, defaults: &SidecarConfig) -> Result<TunnelConfig, ConfigError> {
    let p = &spec.platform;
    let mut t = defaults
        .tunnel
        .clone()
        .ok_or_else(|| ConfigError::new("tunnel", "no sidecar defaults"))?;
    t.url = p.url.clone();
    t.failover_urls = p.failover_urls.clone();
    t.app_key_file = CredentialMount::of(PlatformProtocol::AlwaysOn).path();
    t.gateway = match (&p.gateway_name, &t.gateway) {
        (Some(name), Some(d)) => Some(GatewayIdentity {
            name: name.clone(),
            ..d.clone()
        }),
        _ => None,
    };
    t.server = server_verification(p);
    t.client_cert = Some(client_cert(p)?);
    t.insecure_plaintext = false;
    t.compression = p.compression;
    t.proxy = p.proxy.as_ref().map(|x| ProxyConfig {
        address: x.address.clone(),
        credentials_file: x
            .credentials_secret
            .as_ref()
            .map(|_| path(PROXY_DIR, "credentials")),
    });
    t.timing.keep_alive_ms = u64::from(p.keep_alive.interval_seconds) * 1000;
    t.timing.keep_alive_timeout_ms = u64::from(p.keep_alive.timeout_seconds) * 1000;
    queue(p, &mut t.queue);
    Ok(t)
}

/// The `mqtt` section: the broker, its login (the password mounted from its Secret), topics,
/// and what it shares with the tunnel (verification, client certificate, offline queue). The
/// client id is `name` here; [`config_files`] gives each pod its own.
fn mqtt(spec: &EdgeGatewaySpec, name: &str) -> Result<MqttConfig, ConfigError> {
    let p = &spec.platform;
    let m = p.mqtt.clone().unwrap_or_default();
    let mut c: MqttConfig = serde_json::from_value(serde_json::json!({
        "url": p.url,
        "clientId": name,
        "gateway": p.gateway_name.as_deref().unwrap_or(name),
    }))
    .map_err(|e| ConfigError::new("spec.platform", e.to_string()))?;
    c.version = m.version;
    c.username = m.username.clone();
    c.password_file = p
        .credential()
        .map(|_| CredentialMount::of(PlatformProtocol::Mqtt).path());
    c.server = server_verification(p);
    c.client_cert = Some(client_cert(p)?);
    c.topics = m.topics.clone();
    c.persistent_session = m.persistent_session;
    c.keep_alive_secs = u64::from(m.keep_alive_seconds);
    queue(p, &mut c.queue);
    Ok(c)
}

/// Where `spec.platform.serverVerification` is mounted.
fn server_verification(p: &PlatformSpec) -> TunnelVerification {
    let v = &p.server_verification;
    TunnelVerification {
        ca: v.ca.as_ref().map(|_| path(PLATFORM_DIR, "ca.crt")),
        pinned: v.pinned.as_ref().map(|_| path(PLATFORM_DIR, "pinned.crt")),
        anchor: v.anchor.as_ref().map(|_| path(PLATFORM_DIR, "anchor.crt")),
        insecure_skip_verify: v.insecure == Some(true),
        criteria: v.criteria.clone(),
    }
}

/// Where the platform client certificate (issued or the user's) is mounted.
fn client_cert(p: &PlatformSpec) -> Result<ClientCert, ConfigError> {
    let c = &p.client_certificate;
    let (cert, key) = user_key_files(
        "spec.platform.clientCertificate",
        c.secret_name.is_some(),
        c.secret_format,
        c.key_passphrase_secret.is_some(),
        ("secretFormat", "keyPassphraseSecret"),
    )?;
    Ok(ClientCert {
        cert: path(CLIENT_TLS_DIR, cert),
        key: path(CLIENT_TLS_DIR, key),
        key_passphrase_file: c
            .key_passphrase_secret
            .as_ref()
            .map(|_| path(CLIENT_KEY_PASSPHRASE_DIR, "passphrase")),
    })
}

/// `spec.platform.offlineQueue` onto the sidecar's queue section.
fn queue(p: &PlatformSpec, queue: &mut QueueConfig) {
    let q = &p.offline_queue;
    queue.capacity = q.size as usize;
    queue.overflow = q.overflow;
    queue.dir = q.persistence.as_ref().map(|_| PathBuf::from(QUEUE_DIR));
    queue.max_bytes = q.max_bytes.or_else(|| {
        // The log, its dead lines and a compaction's copy each stay within maxBytes.
        let p = q.persistence.as_ref()?;
        quantity_bytes(&p.size).map(|b| b / 4)
    });
    queue.fsync = q.fsync;
    queue.fsync_interval_ms = u64::from(q.fsync_interval_ms);
}

/// Bytes of a Kubernetes quantity as the CRD's pattern allows (`512Mi`, `1.5G`, `1000`).
pub fn quantity_bytes(q: &str) -> Option<u64> {
    let split = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let factor: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    let n: f64 = number.parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some((n * factor as f64) as u64)
}

/// The whole fleet (no shard), converted and checked with the sidecar's own types and rules.
fn simulation(sim: &SimulationSpec) -> Result<SimulationConfig, ConfigError> {
    let mut doc = serde_json::json!({
        "count": sim.count,
        "properties": sim.properties,
        "events": sim.events,
    });
    if let Some(p) = &sim.name_prefix {
        doc["namePrefix"] = p.clone().into();
    }
    if let Some(s) = sim.seed {
        doc["seed"] = s.into();
    }
    if let Some(t) = &sim.template {
        doc["template"] = t.clone().into();
    }
    let config: SimulationConfig = serde_path_to_error::deserialize(doc).map_err(|e| {
        ConfigError::new(
            format!("spec.simulation.{}", e.path()),
            e.inner().to_string(),
        )
    })?;
    config.validate_at("spec.simulation")?;
    Ok(config)
}

/// Pods of the gateway: `ceil(count / devicesPerPod)` when simulating, else `pod.replicas` (1).
pub fn pod_count(spec: &EdgeGatewaySpec) -> i32 {
    match &spec.simulation {
        Some(s) => i32::try_from(s.count.div_ceil(s.devices_per_pod.max(1))).unwrap_or(i32::MAX),
        None => spec.pod.replicas.unwrap_or(1),
    }
}

/// Device index range `[start, end)` of the pod with `ordinal`, when simulating.
pub fn shard(spec: &EdgeGatewaySpec, ordinal: u32) -> Option<ShardRange> {
    let s = spec.simulation.as_ref()?;
    let start = ordinal.checked_mul(s.devices_per_pod.max(1))?;
    let end = start.saturating_add(s.devices_per_pod.max(1)).min(s.count);
    (start < end).then_some(ShardRange { start, end })
}

/// Whether each pod runs its own config file: with a simulation (its shard) or MQTT (its client
/// id, which a broker allows one connection at a time).
pub fn per_pod_files(spec: &EdgeGatewaySpec) -> bool {
    spec.simulation.is_some() || spec.platform.protocol == PlatformProtocol::Mqtt
}

/// ConfigMap key of the file pod `ordinal` runs with: `<gateway>-<ordinal>.yaml` (its pod name)
/// when [`per_pod_files`], else the shared [`CONFIG_KEY`].
pub fn config_key(spec: &EdgeGatewaySpec, names: &Names, ordinal: u32) -> String {
    match per_pod_files(spec) {
        true => format!("{}-{ordinal}.yaml", names.statefulset()),
        false => CONFIG_KEY.to_owned(),
    }
}

/// The ConfigMap data: file name -> YAML text. One shared file, or with [`per_pod_files`] one
/// file per pod that differs only in `simulation.shard` and `mqtt.clientId` (the pod's name; the
/// shard contract, see [`super::workload`]).
pub fn config_files(
    spec: &EdgeGatewaySpec,
    names: &Names,
    config: &SidecarConfig,
) -> Result<BTreeMap<String, String>, serde_saphyr::SerializeError> {
    if !per_pod_files(spec) {
        return Ok(BTreeMap::from([(
            CONFIG_KEY.to_owned(),
            serde_saphyr::to_string(config)?,
        )]));
    }
    let mut files = BTreeMap::new();
    for ordinal in 0..u32::try_from(pod_count(spec)).unwrap_or(0) {
        files.insert(
            config_key(spec, names, ordinal),
            serde_saphyr::to_string(&pod_config(spec, names, ordinal, config))?,
        );
    }
    Ok(files)
}

/// The config of the pod `ordinal`: its simulation shard, and its pod name as MQTT client id (a
/// broker keeps one connection per id: pods sharing one would take over each other's session).
pub fn pod_config(
    spec: &EdgeGatewaySpec,
    names: &Names,
    ordinal: u32,
    config: &SidecarConfig,
) -> SidecarConfig {
    let mut c = config.clone();
    if let Some(sim) = c.simulation.as_mut() {
        sim.shard = shard(spec, ordinal);
    }
    if let Some(m) = c.mqtt.as_mut() {
        m.client_id = format!("{}-{ordinal}", names.statefulset());
    }
    c
}
