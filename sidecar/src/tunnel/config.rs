//! The `tunnel` section of the sidecar config: where the platform is and how to trust it.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use edgeway_runtime::ConfigError;

/// Connection to the platform over the AlwaysOn websocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TunnelConfig {
    /// `wss://host:port/Thingworx/WS` (or `ws://` only with `insecurePlaintext`).
    pub url: String,
    /// Further platform addresses, each tried in turn after a failed connect (the EMS
    /// `ws_servers` list); same verification and credentials as `url`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_urls: Vec<String>,
    /// File holding the application key sent in AUTH (the key itself never appears in config).
    pub app_key_file: PathBuf,
    /// The gateway's own name and type, sent in BIND.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayIdentity>,
    /// How the platform's certificate is verified.
    #[serde(default)]
    pub server: ServerVerification,
    /// Client certificate presented to the platform (mTLS), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<ClientCert>,
    /// Reach the platform through an HTTP proxy (`CONNECT`), as the EMS `proxy` settings do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
    /// Allow `ws://` without TLS. Must be set explicitly; for local demos only.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// Offer permessage-deflate (RFC 7692) in the websocket upgrade; used when the platform
    /// accepts it (the EMS `ws_connection.compression`, on by default there too).
    #[serde(default = "default_true")]
    pub compression: bool,
    /// Timing of connects, keep-alives and reconnects.
    #[serde(default)]
    pub timing: TunnelTiming,
    /// Store-and-forward queue of updates.
    #[serde(default)]
    pub queue: QueueConfig,
    /// Largest AlwaysOn message before it is split into multipart chunks.
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
    /// Most rows in one `UpdateSubscribedPropertyValues` request.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Requests sent but not yet answered, at most. Large so that one-row messages (a fleet
    /// where every device reports alone) pipeline instead of waiting for round trips.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// New update batches are sent only while fewer request bytes than this are unanswered, so
    /// large messages do not flood the link; small ones are bound by `maxInFlight` first.
    #[serde(default = "default_in_flight_bytes")]
    pub max_in_flight_bytes: usize,
}

/// An HTTP proxy the tunnel connects through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProxyConfig {
    /// `host:port` of the proxy.
    pub address: String,
    /// File holding `user:password` for the proxy's basic authentication (read at every
    /// connect; never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
}

/// The gateway's identity in BIND.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayIdentity {
    /// Gateway thing name.
    pub name: String,
    /// Gateway type.
    #[serde(default = "default_gateway_type")]
    pub type_name: String,
}

/// Platform certificate verification: a CA bundle, a pinned certificate, or explicitly none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerVerification {
    /// PEM CA bundle the platform's certificate must chain to (hostname checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// PEM of the pinned platform certificate: exact match, hostname ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<PathBuf>,
    /// PEM certificate(s) used as the trust anchor: the platform's chain must verify to one,
    /// the hostname is not checked (the APS model, typically the platform's own self-signed
    /// certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<PathBuf>,
    /// Skip verification entirely; logged as a warning at every connect.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Names the platform's certificate (and its issuer) must carry, checked after `ca` or
    /// `pinned` (the EMS `certificates.validation_criteria`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criteria: Option<edgeway_runtime::tls::criteria::CertCriteria>,
}

/// Client certificate and key files (a `kubernetes.io/tls` Secret mount).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientCert {
    /// PEM chain.
    pub cert: PathBuf,
    /// PEM key, or an encrypted PKCS#8 key with `keyPassphraseFile`.
    pub key: PathBuf,
    /// File whose first line is the passphrase of an encrypted `key` (the EMS
    /// `key_passphrase`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_passphrase_file: Option<PathBuf>,
}

/// Timeouts, keep-alive and reconnect backoff, all in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TunnelTiming {
    /// Each connect stage (DNS, TCP, TLS, websocket, AUTH, BIND) must finish within this.
    pub stage_timeout_ms: u64,
    /// A websocket ping is sent after this long without traffic from the platform (the C SDK's
    /// `ping_rate`, 55 s: below the platform's 60 s idle timeout).
    pub keep_alive_ms: u64,
    /// The platform must answer (any frame, the pong included) within this after the ping, or
    /// the connection is declared dead (the C SDK's `pong_timeout`, 10 s).
    pub keep_alive_timeout_ms: u64,
    /// First reconnect delay.
    pub backoff_initial_ms: u64,
    /// Reconnect delay cap.
    pub backoff_max_ms: u64,
    /// Random delay before the first connect, so a restarted fleet does not stampede.
    pub startup_jitter_ms: u64,
}

/// What to do when the outbox is full.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum OverflowPolicy {
    /// Drop the oldest unacknowledged update to make room (fresh data matters most).
    #[default]
    DropOldest,
    /// Refuse the new update (history matters most).
    DropNewest,
}

/// When the persisted queue's records reach the disk itself, not only the kernel. Every push
/// and acknowledgement is written to the kernel at once, so a crashed or killed process loses
/// nothing whatever the policy; the policy is about power loss and kernel crashes.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum FsyncPolicy {
    /// `fdatasync` after every batch of pushes and every acknowledgement.
    Always,
    /// `fdatasync` at most every `fsyncIntervalMs` while something was written.
    #[default]
    Interval,
    /// Leave it to the kernel's writeback (about 30 s on Linux).
    Never,
}

/// The offline queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct QueueConfig {
    /// Most updates kept while unacknowledged.
    pub capacity: usize,
    /// Most bytes the queued updates may take, counted as their records in the queue's log
    /// (one JSON line each, ~100-200 bytes for a number); only `capacity` bounds the queue
    /// when absent. Persisted, the log file stays within twice this and a compaction's copy
    /// within once more. The EMS's default store (64 KiB) is `65536`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// What is dropped when full.
    pub overflow: OverflowPolicy,
    /// Directory to persist the queue in, so a restart loses nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// When the persisted queue reaches the disk itself.
    pub fsync: FsyncPolicy,
    /// With `fsync: interval`, the longest a written record waits for its sync.
    pub fsync_interval_ms: u64,
}

fn default_true() -> bool {
    true
}

fn default_chunk_size() -> usize {
    8192
}
fn default_batch_rows() -> usize {
    500
}
fn default_in_flight() -> usize {
    1024
}
fn default_in_flight_bytes() -> usize {
    1 << 20
}
fn default_gateway_type() -> String {
    "EdgewayGateway".into()
}

impl Default for TunnelTiming {
    fn default() -> Self {
        Self {
            stage_timeout_ms: 10_000,
            keep_alive_ms: 55_000,
            keep_alive_timeout_ms: 10_000,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            startup_jitter_ms: 1_000,
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            max_bytes: None,
            overflow: OverflowPolicy::DropOldest,
            dir: None,
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 1000,
        }
    }
}

impl TunnelConfig {
    /// Checks what types cannot: the URL, one verification mode, positive numbers.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(p) = &self.proxy {
            let port = p
                .address
                .rsplit_once(':')
                .map(|(h, port)| (h, port.parse::<u16>()));
            if !matches!(port, Some((h, Ok(n))) if !h.is_empty() && n != 0) {
                return Err(ConfigError::new(
                    "tunnel.proxy.address",
                    format!("{:?} must be host:port", p.address),
                ));
            }
        }
        let url = self.url.as_str();
        let secure = url.starts_with("wss://");
        if !secure && !url.starts_with("ws://") {
            return Err(ConfigError::new(
                "tunnel.url",
                format!("{url:?} must start with wss:// (or ws:// with insecurePlaintext)"),
            ));
        }
        if !secure && !self.insecure_plaintext {
            return Err(ConfigError::new(
                "tunnel.url",
                "ws:// sends the app key in clear text; use wss:// or set insecurePlaintext: true",
            ));
        }
        for (i, other) in self.failover_urls.iter().enumerate() {
            // One verification serves every address: the scheme must be the same.
            if other.starts_with("wss://") != secure
                || !(other.starts_with("wss://") || other.starts_with("ws://"))
            {
                return Err(ConfigError::new(
                    format!("tunnel.failoverUrls[{i}]"),
                    format!("{other:?} must use the scheme of tunnel.url ({url:?})"),
                ));
            }
        }
        self.server.validate_at("tunnel.server", secure)?;
        let t = &self.timing;
        for (name, v) in [
            ("stageTimeoutMs", t.stage_timeout_ms),
            ("keepAliveMs", t.keep_alive_ms),
            ("keepAliveTimeoutMs", t.keep_alive_timeout_ms),
            ("backoffInitialMs", t.backoff_initial_ms),
            ("backoffMaxMs", t.backoff_max_ms),
        ] {
            if v == 0 {
                return Err(ConfigError::new(
                    format!("tunnel.timing.{name}"),
                    "must be positive",
                ));
            }
        }
        if t.backoff_max_ms < t.backoff_initial_ms {
            return Err(ConfigError::new(
                "tunnel.timing.backoffMaxMs",
                "must not be below backoffInitialMs",
            ));
        }
        self.queue.validate_at("tunnel.queue")?;
        if self.chunk_size < 1024 {
            return Err(ConfigError::new(
                "tunnel.chunkSize",
                "must be at least 1024",
            ));
        }
        if self.batch_rows == 0 || self.max_in_flight == 0 || self.max_in_flight_bytes == 0 {
            return Err(ConfigError::new(
                "tunnel",
                "batchRows, maxInFlight and maxInFlightBytes must be positive",
            ));
        }
        Ok(())
    }
}

impl ServerVerification {
    /// Checks the section at `field` for a connection that is `secure` (TLS) or not.
    pub fn validate_at(&self, field: &str, secure: bool) -> Result<(), ConfigError> {
        let modes = usize::from(self.ca.is_some())
            + usize::from(self.pinned.is_some())
            + usize::from(self.anchor.is_some())
            + usize::from(self.insecure_skip_verify);
        if secure && modes != 1 {
            return Err(ConfigError::new(
                field,
                "set exactly one of ca, pinned, anchor or insecureSkipVerify",
            ));
        }
        if let Some(c) = &self.criteria {
            if c.is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.criteria"),
                    "names no field (set subject or issuer commonName, organization or organizationalUnit)",
                ));
            }
            if self.insecure_skip_verify || !secure {
                return Err(ConfigError::new(
                    format!("{field}.criteria"),
                    "needs ca, pinned or anchor: an unverified certificate's names prove nothing",
                ));
            }
        }
        Ok(())
    }
}

impl QueueConfig {
    /// Checks the section at `field`.
    pub fn validate_at(&self, field: &str) -> Result<(), ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::new(
                format!("{field}.capacity"),
                "must be positive",
            ));
        }
        if self.max_bytes.is_some_and(|b| b < 1024) {
            return Err(ConfigError::new(
                format!("{field}.maxBytes"),
                "must be at least 1024: a single update's record can take a few hundred bytes",
            ));
        }
        if self.fsync_interval_ms == 0 {
            return Err(ConfigError::new(
                format!("{field}.fsyncIntervalMs"),
                "must be positive (use fsync: always to sync every write)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
