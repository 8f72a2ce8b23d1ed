//! The sidecar's one config file, as typed structs: the format the operator renders.
//!
//! Parsing is strict (`deny_unknown_fields`) and every error names the field path, so a typo in a
//! rendered or hand-written file fails at start-up with a message that says where.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use edgeway_runtime::config::{parse_yaml, read_file};
use edgeway_runtime::logging::LoggingConfig;
use edgeway_runtime::tls::{ClientAuthMode, TlsConfig};
use edgeway_runtime::ConfigError;

use crate::lua::LuaLimits;
use crate::mqtt::config::MqttConfig;
use crate::sim::SimulationConfig;
use crate::tunnel::config::TunnelConfig;

/// The whole sidecar configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SidecarConfig {
    /// The device-facing HTTPS server.
    pub server: ServerConfig,
    /// Which client authentication methods are accepted.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Lua templates and the things instantiated from them.
    #[serde(default)]
    pub lua: LuaConfig,
    /// A simulated device fleet (or this process's shard of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulation: Option<SimulationConfig>,
    /// The persistent connection to the platform (absent: the gateway serves locally only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelConfig>,
    /// An MQTT broker as the platform, instead of `tunnel` (docs/mqtt.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttConfig>,
    /// Optional reverse proxy to an app in the same pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamConfig>,
    /// Health, readiness and metrics endpoint.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Log output.
    #[serde(default)]
    pub logging: LoggingConfig,
}

/// The HTTPS listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerConfig {
    /// Address to listen on, e.g. `0.0.0.0:8443`.
    pub listen: SocketAddr,
    /// TLS material; required unless `plaintext` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Serve plain HTTP. Must be set explicitly; never a default.
    #[serde(default)]
    pub plaintext: bool,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Time allowed for a TLS handshake, in milliseconds.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_ms: u64,
    /// Time allowed to receive a request's headers, in milliseconds, counted from the
    /// connection's start or its last response (also the keep-alive idle time).
    #[serde(default = "default_header_timeout")]
    pub header_timeout_ms: u64,
    /// Time allowed to receive a request's body once it is authenticated, in milliseconds.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_ms: u64,
    /// Connections open at once; more are closed when accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl ServerConfig {
    /// The connection limits of this listener.
    pub fn limits(&self) -> edgeway_runtime::http::Limits {
        edgeway_runtime::http::Limits {
            max_connections: self.max_connections,
            header_timeout: std::time::Duration::from_millis(self.header_timeout_ms),
        }
    }
}

/// Accepted authentication methods; any one suffices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthConfig {
    /// Methods in the order they are tried.
    #[serde(default = "default_methods")]
    pub methods: Vec<AuthMethodName>,
    /// HTTP basic users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicConfig>,
    /// OAuth 1.0a consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthConfig>,
    /// Header carrying the verified identity upstream; client copies are removed.
    #[serde(default = "default_identity_header")]
    pub identity_header: String,
    /// Header carrying how the identity was verified (`mtls`, `basic`, `oauth`): a basic user
    /// `x` and a certificate `CN=x` are different principals. Client copies are removed.
    #[serde(default = "default_method_header")]
    pub method_header: String,
    /// Who may read, write, invoke and fire on the things API; empty: every authenticated
    /// principal may do everything. Once there is a rule, what no rule allows is denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization: Vec<crate::auth::authz::Rule>,
}

/// A client authentication method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AuthMethodName {
    /// Client certificate (CN/SAN is the identity).
    Mtls,
    /// HTTP basic, RFC 7617.
    Basic,
    /// OAuth 1.0a HMAC-SHA1 signatures, RFC 5849.
    #[serde(rename = "oauth")]
    OAuth,
}

/// HTTP basic settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicConfig {
    /// htpasswd-style file: `user:secret`, secret plaintext, argon2 or bcrypt.
    pub users_file: PathBuf,
    /// Realm in `WWW-Authenticate`.
    #[serde(default = "default_realm")]
    pub realm: String,
}

/// OAuth 1.0a settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OAuthConfig {
    /// YAML file of consumers (and optional tokens) with their secrets.
    pub credentials_file: PathBuf,
    /// Accepted clock skew either side of now, in seconds.
    #[serde(default = "default_oauth_window")]
    pub timestamp_window_secs: u64,
    /// Nonces remembered for replay detection.
    #[serde(default = "default_nonce_capacity")]
    pub nonce_cache_size: usize,
}

/// Lua templates, things and limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LuaConfig {
    /// Template scripts by name.
    #[serde(default)]
    pub templates: Vec<TemplateConfig>,
    /// Thing instances.
    #[serde(default)]
    pub things: Vec<ThingConfig>,
    /// Per-call and per-VM limits.
    #[serde(default)]
    pub limits: LuaLimits,
}

/// One Lua template script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TemplateConfig {
    /// Name things refer to.
    pub name: String,
    /// Script path.
    pub file: PathBuf,
    /// Lua dialect: `lsr` (the LSR's Lua 5.1: unknown string escapes keep their character,
    /// 5.1 library names) or `lua54`.
    #[serde(default)]
    pub dialect: crate::lua::Dialect,
}

/// One thing: an instance of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ThingConfig {
    /// Thing name, unique in this gateway.
    pub name: String,
    /// Template name.
    pub template: String,
    /// How often the template's tasks run, in milliseconds.
    #[serde(default = "default_scan_rate")]
    pub scan_rate_ms: u64,
    /// Initial property values overriding the template's defaults.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// Reverse proxy to an app on loopback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamConfig {
    /// Path prefix that is forwarded, e.g. `/app/`.
    pub prefix: String,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Remove the prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Upstream response deadline, in milliseconds.
    #[serde(default = "default_upstream_timeout")]
    pub timeout_ms: u64,
    /// Forward the client's `Authorization` header (its password or OAuth signature) to the
    /// upstream. Off by default: the upstream learns who the client is from the identity
    /// header, and needs no credential.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_credentials: bool,
    /// Send a verified client certificate upstream in `x-forwarded-client-cert` (Envoy's
    /// format: hash, URL-encoded PEM, subject, URI and DNS SANs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_client_cert: bool,
}

/// Plain-HTTP admin listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdminConfig {
    /// Address for `/healthz`, `/readyz`, `/metrics`.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            methods: default_methods(),
            basic: None,
            oauth: None,
            identity_header: default_identity_header(),
            method_header: default_method_header(),
            authorization: Vec::new(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
        }
    }
}

fn default_max_body() -> usize {
    1 << 20
}
fn default_handshake_timeout() -> u64 {
    10_000
}
// nginx: client_header_timeout 60 s, keepalive_timeout 75 s, client_body_timeout 60 s (between
// two reads), worker_connections 512 (Debian's config: 768). Devices send small requests: the
// header deadline is hyper's own default, the body deadline a total.
fn default_header_timeout() -> u64 {
    30_000
}
fn default_body_timeout() -> u64 {
    30_000
}
fn default_max_connections() -> usize {
    1024
}
fn default_methods() -> Vec<AuthMethodName> {
    vec![AuthMethodName::Mtls]
}
fn default_method_header() -> String {
    "X-Edgeway-Auth-Method".into()
}

fn default_identity_header() -> String {
    "X-Edgeway-Identity".into()
}
fn default_realm() -> String {
    "edgeway".into()
}
fn default_oauth_window() -> u64 {
    300
}
fn default_nonce_capacity() -> usize {
    100_000
}
fn default_scan_rate() -> u64 {
    1000
}
fn default_upstream_timeout() -> u64 {
    30_000
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
impl SidecarConfig {
    /// Reads, parses and validates a config file (YAML; JSON is valid YAML).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&read_file(path)?, &path.display().to_string())
    }

    /// Parses and validates config text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, ConfigError> {
        let config: SidecarConfig = parse_yaml(text, source)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone cannot: combinations and references between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.server.tls, self.server.plaintext) {
            (None, false) => {
                return Err(ConfigError::new(
                    "server.tls",
                    "required (set server.plaintext: true to serve plain HTTP explicitly)",
                ))
            }
            (Some(_), true) => {
                return Err(ConfigError::new(
                    "server.plaintext",
                    "cannot be true when server.tls is set",
                ))
            }
            _ => {}
        }
        for (field, value) in [
            ("server.headerTimeoutMs", self.server.header_timeout_ms),
            ("server.bodyTimeoutMs", self.server.body_timeout_ms),
            ("server.maxConnections", self.server.max_connections as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::new(field, "must be greater than 0"));
            }
        }
        if let Some(tls) = &self.server.tls {
            if tls.client_auth != ClientAuthMode::Off
                && tls.client_ca.is_none()
                && tls.pinned_peers.is_empty()
            {
                return Err(ConfigError::new(
                    "server.tls.clientAuth",
                    "client certificates are requested but neither clientCa nor pinnedPeers is set",
                ));
            }
        }
        self.validate_auth()?;
        self.validate_lua()?;
        if let Some(t) = &self.tunnel {
            t.validate()?;
        }
        if let Some(m) = &self.mqtt {
            if self.tunnel.is_some() {
                return Err(ConfigError::new(
                    "mqtt",
                    "a gateway has one platform: set tunnel (AlwaysOn) or mqtt, not both",
                ));
            }
            m.validate()?;
        }
        if let Some(sim) = &self.simulation {
            sim.validate_at("simulation")?;
            if self.lua.things.iter().any(|t| sim_owns(sim, &t.name)) {
                return Err(ConfigError::new(
                    "simulation.namePrefix",
                    "a Lua thing's name looks like a simulated device name; choose another prefix",
                ));
            }
        }
        if let Some(up) = &self.upstream {
            if !up.prefix.starts_with('/') {
                return Err(ConfigError::new("upstream.prefix", "must start with '/'"));
            }
            if up.port == 0 {
                return Err(ConfigError::new("upstream.port", "must not be 0"));
            }
        }
        if self.server.max_body_bytes == 0 {
            return Err(ConfigError::new("server.maxBodyBytes", "must be positive"));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        if auth.methods.is_empty() {
            return Err(ConfigError::new(
                "auth.methods",
                "at least one method is required (mtls, basic, oauth)",
            ));
        }
        for (i, m) in auth.methods.iter().enumerate() {
            if auth.methods[..i].contains(m) {
                return Err(ConfigError::new(
                    format!("auth.methods[{i}]"),
                    "listed twice",
                ));
            }
            match m {
                AuthMethodName::Mtls => {
                    let mode = self.server.tls.as_ref().map(|t| t.client_auth);
                    if matches!(mode, None | Some(ClientAuthMode::Off)) {
                        return Err(ConfigError::new(
                            format!("auth.methods[{i}]"),
                            "mtls needs server.tls.clientAuth required or optional",
                        ));
                    }
                }
                AuthMethodName::Basic if auth.basic.is_none() => {
                    return Err(ConfigError::new(
                        "auth.basic",
                        "required when methods has basic",
                    ))
                }
                AuthMethodName::OAuth if auth.oauth.is_none() => {
                    return Err(ConfigError::new(
                        "auth.oauth",
                        "required when methods has oauth",
                    ))
                }
                _ => {}
            }
        }
        for (field, name) in [
            ("auth.identityHeader", &auth.identity_header),
            ("auth.methodHeader", &auth.method_header),
        ] {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ConfigError::new(
                    field,
                    format!("{name:?} is not a valid HTTP header name"),
                ));
            }
        }
        for (i, rule) in auth.authorization.iter().enumerate() {
            let field = format!("auth.authorization[{i}]");
            if rule.name.is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.name"),
                    "must not be empty",
                ));
            }
            if rule.actions.is_empty() || rule.principals.is_empty() {
                return Err(ConfigError::new(
                    field,
                    "needs at least one principal and one action",
                ));
            }
            for (j, p) in rule.principals.iter().enumerate() {
                let ok = p.split_once(':').is_some_and(|(m, glob)| {
                    matches!(m, "mtls" | "basic" | "oauth") && !glob.is_empty()
                });
                if !ok {
                    return Err(ConfigError::new(
                        format!("{field}.principals[{j}]"),
                        format!("{p:?} must be mtls:<glob>, basic:<glob> or oauth:<glob>"),
                    ));
                }
            }
        }
        if auth
            .identity_header
            .eq_ignore_ascii_case(&auth.method_header)
        {
            return Err(ConfigError::new(
                "auth.methodHeader",
                "must differ from identityHeader",
            ));
        }
        if let Some(o) = &auth.oauth {
            if o.timestamp_window_secs == 0 || o.nonce_cache_size == 0 {
                return Err(ConfigError::new(
                    "auth.oauth",
                    "timestampWindowSecs and nonceCacheSize must be positive",
                ));
            }
        }
        Ok(())
    }

    fn validate_lua(&self) -> Result<(), ConfigError> {
        let lua = &self.lua;
        for (i, t) in lua.templates.iter().enumerate() {
            if lua.templates[..i].iter().any(|o| o.name == t.name) {
                return Err(ConfigError::new(
                    format!("lua.templates[{i}].name"),
                    format!("duplicate template {:?}", t.name),
                ));
            }
        }
        for (i, t) in lua.things.iter().enumerate() {
            if !valid_name(&t.name) {
                return Err(ConfigError::new(
                    format!("lua.things[{i}].name"),
                    format!(
                        "{:?} is not a valid thing name (letters, digits, '_', '-', '.')",
                        t.name
                    ),
                ));
            }
            if lua.things[..i].iter().any(|o| o.name == t.name) {
                return Err(ConfigError::new(
                    format!("lua.things[{i}].name"),
                    format!("duplicate thing {:?}", t.name),
                ));
            }
            if !lua.templates.iter().any(|tp| tp.name == t.template) {
                return Err(ConfigError::new(
                    format!("lua.things[{i}].template"),
                    format!("no template named {:?} in lua.templates", t.template),
                ));
            }
            if t.scan_rate_ms == 0 {
                return Err(ConfigError::new(
                    format!("lua.things[{i}].scanRateMs"),
                    "must be positive",
                ));
            }
        }
        Ok(())
    }
}

/// Whether a name has the shape of one of the fleet's device names.
fn sim_owns(sim: &SimulationConfig, name: &str) -> bool {
    name.strip_prefix(sim.name_prefix.as_str())
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

/// Thing names appear in URL paths and on the wire; keep them unambiguous there.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests;
