//! The platform's config file as typed structs.
//!
//! Parsing is strict (`deny_unknown_fields`, camelCase) and every error names the field path,
//! e.g. `tls.cert: no PEM certificate in /etc/edgeway/tls.crt`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use edgeway_runtime::config::{parse_yaml, read_file};
use edgeway_runtime::logging::LoggingConfig;
use edgeway_runtime::tls::{ClientAuthMode, TlsConfig};
use edgeway_runtime::ConfigError;
use serde::{Deserialize, Serialize};

/// The whole platform configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlatformConfig {
    /// Address of the AlwaysOn websocket listener (`wss://…/Thingworx/WS`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// TLS material of the AlwaysOn listener; required unless `plaintext` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Serve the AlwaysOn listener without TLS (`ws://`). Must be set explicitly.
    #[serde(default)]
    pub plaintext: bool,
    /// How edges authenticate.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Who wins when two sessions bind the same thing name.
    #[serde(default)]
    pub bind_policy: BindPolicy,
    /// Things one session may hold bound; names past it are refused in the BIND's answer. One
    /// session binding 400,000 names took 281 MB (741 MB when listed).
    #[serde(default = "default_max_things_per_session")]
    pub max_things_per_session: usize,
    /// How long a thing no session holds is kept (values, history, and which principal bound it,
    /// which no other principal can take over meanwhile), in milliseconds; then it is forgotten.
    #[serde(default = "default_thing_retention")]
    pub thing_retention_ms: u64,
    /// What `GetPropertySubscriptions` answers.
    #[serde(default)]
    pub subscriptions: SubscriptionsConfig,
    /// After each BIND, as ThingWorx does: ask the edge for the things' definitions
    /// (`GetMetadata`), read values the platform holds none of, and send
    /// `NotifyPropertyUpdate`. Off: the edge sees no request it did not cause.
    #[serde(default = "yes")]
    pub sync_on_bind: bool,
    /// Values kept per property, besides the latest.
    #[serde(default = "default_history")]
    pub history_size: usize,
    /// The JSON REST API listener.
    #[serde(default)]
    pub rest: RestConfig,
    /// Health, readiness and metrics listener.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Default deadline of platform → edge requests, in milliseconds.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Websocket-level limits and liveness.
    #[serde(default)]
    pub websocket: WebsocketConfig,
    /// Log output (the sidecar's logging settings).
    #[serde(default)]
    pub logging: LoggingConfig,
}

/// Edge authentication settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthConfig {
    /// Accepted methods.
    #[serde(default = "default_methods")]
    pub methods: Vec<AuthMethod>,
    /// Whether one method suffices (`any`) or every listed one must pass (`all`).
    #[serde(default)]
    pub require: AuthRequire,
    /// File of application keys: one a line, `#` comments, optionally `name:key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_keys_file: Option<PathBuf>,
    /// Time allowed between the websocket upgrade and the AUTH message, in milliseconds.
    #[serde(default = "default_auth_timeout")]
    pub timeout_ms: u64,
    /// Thing names each principal may bind, as patterns (`*` matches any run of characters),
    /// e.g. `{plant-a: ["plant-a.*"]}`. Absent: any principal binds any name (one tenant).
    /// Present: a principal not listed binds nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_scopes: Option<BTreeMap<String, Vec<String>>>,
}

/// An edge authentication method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthMethod {
    /// The `appKey` claim of the AUTH message matches a key of `appKeysFile`.
    AppKey,
    /// The TLS client presented a certificate the listener verified (CA or pin).
    ClientCert,
}

/// How several methods combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthRequire {
    /// Any one listed method suffices.
    #[default]
    Any,
    /// Every listed method must pass.
    All,
}

/// Ownership rule for thing names bound by more than one live session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BindPolicy {
    /// A name bound by a live session stays with it; later BINDs of it are refused (FORBIDDEN).
    #[default]
    FirstInWins,
    /// The latest BIND takes the name over; the previous session loses that binding.
    LastInWins,
}

/// Answer to `GetPropertySubscriptions`: everything, nothing, or explicit rows per thing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SubscriptionsConfig {
    /// `all` or `none` for every thing.
    Mode(SubscriptionMode),
    /// Explicit rows for listed things, a mode for the others.
    Explicit(ExplicitSubscriptions),
}

impl Default for SubscriptionsConfig {
    fn default() -> Self {
        SubscriptionsConfig::Mode(SubscriptionMode::All)
    }
}

/// A blanket subscription mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SubscriptionMode {
    /// One row `edgeName: "*"`: every property, with the edge's own push settings.
    #[default]
    All,
    /// No rows: the edge pushes nothing.
    None,
}

/// Per-thing subscription rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExplicitSubscriptions {
    /// Rows by thing name.
    pub things: BTreeMap<String, Vec<SubscriptionRow>>,
    /// What things not listed get.
    #[serde(default = "mode_none")]
    pub others: SubscriptionMode,
}

/// One `GetPropertySubscriptions` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubscriptionRow {
    /// Property name on the edge; `*` means every property.
    pub edge_name: String,
    /// ALWAYS, VALUE, NEVER or DEADBAND; empty means the edge's own setting.
    #[serde(default)]
    pub push_type: String,
    /// Threshold for VALUE/DEADBAND pushes; 0 means the edge's own setting.
    #[serde(default)]
    pub push_threshold: f64,
}

impl SubscriptionRow {
    /// The `*` row: every property, with the edge's own push settings.
    pub fn everything() -> Self {
        Self {
            edge_name: "*".to_owned(),
            push_type: String::new(),
            push_threshold: 0.0,
        }
    }
}

impl SubscriptionsConfig {
    /// The rows configured for `thing`.
    pub fn rows_for(&self, thing: &str) -> Vec<SubscriptionRow> {
        let mode = match self {
            SubscriptionsConfig::Mode(m) => *m,
            SubscriptionsConfig::Explicit(e) => match e.things.get(thing) {
                Some(rows) => return rows.clone(),
                None => e.others,
            },
        };
        match mode {
            SubscriptionMode::All => vec![SubscriptionRow::everything()],
            SubscriptionMode::None => Vec::new(),
        }
    }
}

/// The REST API listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RestConfig {
    /// Address of the plain-HTTP JSON API.
    #[serde(default = "default_rest_listen")]
    pub listen: SocketAddr,
    /// File holding a bearer token; when set every API request must carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Events buffered per `/api/stream` client before it is dropped as too slow.
    #[serde(default = "default_stream_buffer")]
    pub stream_buffer: usize,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Time allowed to receive a request's headers, counted from the connection's start or its
    /// last response (also the keep-alive idle time), and then its body, in milliseconds.
    #[serde(default = "default_rest_timeout")]
    pub request_timeout_ms: u64,
    /// Connections open at once; more are closed when accepted.
    #[serde(default = "default_rest_connections")]
    pub max_connections: usize,
}

impl RestConfig {
    /// The connection limits of the REST listener.
    pub fn limits(&self) -> edgeway_runtime::http::Limits {
        edgeway_runtime::http::Limits {
            max_connections: self.max_connections,
            header_timeout: std::time::Duration::from_millis(self.request_timeout_ms),
        }
    }
}

fn default_rest_timeout() -> u64 {
    30_000
}
fn default_rest_connections() -> usize {
    256
}

/// Plain-HTTP admin listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdminConfig {
    /// Address for `/healthz`, `/readyz`, `/metrics`.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
}

/// Websocket limits and liveness checks of the AlwaysOn listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebsocketConfig {
    /// Time allowed for the TLS handshake plus the websocket upgrade, in milliseconds.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_ms: u64,
    /// Chunk size for splitting large platform → edge messages (the SDK default is 8192).
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
    /// Largest (reassembled) AlwaysOn message accepted from an edge, in bytes.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Interval of websocket pings to each edge, in milliseconds; 0 turns pings off.
    #[serde(default = "default_ping_interval")]
    pub ping_interval_ms: u64,
    /// A session silent (no frame at all) for this long is closed; 0 never closes.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_ms: u64,
    /// Accept permessage-deflate (RFC 7692) when an edge offers it, as ThingWorx does; the
    /// inflated size is bounded by `maxMessageBytes` like the wire size.
    #[serde(default = "default_compression")]
    pub compression: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            methods: default_methods(),
            require: AuthRequire::Any,
            app_keys_file: None,
            timeout_ms: default_auth_timeout(),
            thing_scopes: None,
        }
    }
}

impl Default for RestConfig {
    fn default() -> Self {
        Self {
            listen: default_rest_listen(),
            token_file: None,
            stream_buffer: default_stream_buffer(),
            max_body_bytes: default_max_body(),
            request_timeout_ms: default_rest_timeout(),
            max_connections: default_rest_connections(),
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

impl Default for WebsocketConfig {
    fn default() -> Self {
        Self {
            handshake_timeout_ms: default_handshake_timeout(),
            chunk_size: default_chunk_size(),
            max_message_bytes: default_max_message(),
            ping_interval_ms: default_ping_interval(),
            idle_timeout_ms: default_idle_timeout(),
            compression: default_compression(),
        }
    }
}

fn default_compression() -> bool {
    true
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}
fn default_rest_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9091))
}
fn default_methods() -> Vec<AuthMethod> {
    vec![AuthMethod::AppKey]
}
fn default_auth_timeout() -> u64 {
    10_000
}
fn default_max_things_per_session() -> usize {
    // The tunnel benchmark runs 100,000 devices through one session.
    200_000
}
fn default_thing_retention() -> u64 {
    // A day: a gateway down overnight comes back to its things; names abandoned by a departed
    // edge (or bound by a hostile one) do not pile up.
    86_400_000
}
fn yes() -> bool {
    true
}

fn default_history() -> usize {
    100
}
fn default_request_timeout() -> u64 {
    10_000
}
fn default_stream_buffer() -> usize {
    1024
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_handshake_timeout() -> u64 {
    10_000
}
fn default_chunk_size() -> usize {
    edgeway_protocol::DEFAULT_CHUNK_SIZE
}
fn default_max_message() -> usize {
    1 << 20
}
fn default_ping_interval() -> u64 {
    30_000
}
fn default_idle_timeout() -> u64 {
    90_000
}
fn mode_none() -> SubscriptionMode {
    SubscriptionMode::None
}

/// Smallest chunk size that leaves room for the chunk header and a request's entity prefix.
pub const MIN_CHUNK_SIZE: usize = 512;

impl PlatformConfig {
    /// Reads, parses and validates a config file (YAML; JSON is valid YAML).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&read_file(path)?, &path.display().to_string())
    }

    /// Parses and validates config text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, ConfigError> {
        let config: PlatformConfig = parse_yaml(text, source)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks combinations the types alone cannot express (files are read at start).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.tls, self.plaintext) {
            (None, false) => {
                return Err(ConfigError::new(
                    "tls",
                    "required (set plaintext: true to serve ws:// explicitly)",
                ))
            }
            (Some(_), true) => {
                return Err(ConfigError::new(
                    "plaintext",
                    "cannot be true when tls is set",
                ))
            }
            _ => {}
        }
        if let Some(tls) = &self.tls {
            if tls.client_auth != ClientAuthMode::Off
                && tls.client_ca.is_none()
                && tls.pinned_peers.is_empty()
            {
                return Err(ConfigError::new(
                    "tls.clientAuth",
                    "client certificates are requested but neither clientCa nor pinnedPeers is set \
                     (set clientAuth: off for app-key-only edges)",
                ));
            }
        }
        let auth = &self.auth;
        if auth.methods.is_empty() {
            return Err(ConfigError::new(
                "auth.methods",
                "at least one method is required (appKey, clientCert)",
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
                AuthMethod::AppKey if auth.app_keys_file.is_none() => {
                    return Err(ConfigError::new(
                        "auth.appKeysFile",
                        "required when auth.methods has appKey",
                    ))
                }
                AuthMethod::ClientCert => {
                    let mode = self.tls.as_ref().map(|t| t.client_auth);
                    if matches!(mode, None | Some(ClientAuthMode::Off)) {
                        return Err(ConfigError::new(
                            format!("auth.methods[{i}]"),
                            "clientCert needs tls.clientAuth required or optional",
                        ));
                    }
                }
                _ => {}
            }
        }
        if auth.timeout_ms == 0 {
            return Err(ConfigError::new("auth.timeoutMs", "must be positive"));
        }
        for (principal, patterns) in auth.thing_scopes.iter().flatten() {
            for (i, p) in patterns.iter().enumerate() {
                let at = || format!("auth.thingScopes.{principal}[{i}]");
                if p.is_empty() || p.len() > crate::scope::MAX_PATTERN_LEN {
                    return Err(ConfigError::new(
                        at(),
                        format!("must be 1 to {} bytes", crate::scope::MAX_PATTERN_LEN),
                    ));
                }
                if p.chars().any(char::is_control) {
                    return Err(ConfigError::new(
                        at(),
                        "must not contain control characters",
                    ));
                }
            }
        }
        if self.thing_retention_ms < 1000 {
            return Err(ConfigError::new(
                "thingRetentionMs",
                "must be at least 1000",
            ));
        }
        if let SubscriptionsConfig::Explicit(e) = &self.subscriptions {
            for (thing, rows) in &e.things {
                for (i, r) in rows.iter().enumerate() {
                    if r.edge_name.is_empty() {
                        return Err(ConfigError::new(
                            format!("subscriptions.things.{thing}[{i}].edgeName"),
                            "must not be empty",
                        ));
                    }
                    if !r.push_threshold.is_finite() {
                        return Err(ConfigError::new(
                            format!("subscriptions.things.{thing}[{i}].pushThreshold"),
                            "must be a finite number",
                        ));
                    }
                }
            }
        }
        if self.request_timeout_ms == 0 {
            return Err(ConfigError::new("requestTimeoutMs", "must be positive"));
        }
        if self.rest.stream_buffer == 0 {
            return Err(ConfigError::new("rest.streamBuffer", "must be positive"));
        }
        if self.rest.max_body_bytes == 0 {
            return Err(ConfigError::new("rest.maxBodyBytes", "must be positive"));
        }
        let ws = &self.websocket;
        if ws.chunk_size < MIN_CHUNK_SIZE || ws.chunk_size > usize::from(u16::MAX) {
            return Err(ConfigError::new(
                "websocket.chunkSize",
                format!("must be between {MIN_CHUNK_SIZE} and 65535"),
            ));
        }
        if ws.max_message_bytes < ws.chunk_size {
            return Err(ConfigError::new(
                "websocket.maxMessageBytes",
                "must be at least websocket.chunkSize",
            ));
        }
        if ws.handshake_timeout_ms == 0 {
            return Err(ConfigError::new(
                "websocket.handshakeTimeoutMs",
                "must be positive",
            ));
        }
        if ws.ping_interval_ms > 0
            && ws.idle_timeout_ms > 0
            && ws.idle_timeout_ms <= ws.ping_interval_ms
        {
            return Err(ConfigError::new(
                "websocket.idleTimeoutMs",
                "must be longer than websocket.pingIntervalMs",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
