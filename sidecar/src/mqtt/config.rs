//! The `mqtt` section of the sidecar config: the broker, how to trust it and log in, and the
//! topic layout.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::tunnel::config::{ClientCert, QueueConfig, ServerVerification};
use edgeway_runtime::ConfigError;

/// Connection to an MQTT broker (MQTT 3.1.1 or 5), instead of the AlwaysOn tunnel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MqttConfig {
    /// `mqtts://host:port` (TLS, default port 8883) or `wss://host:port/path` (websockets over
    /// TLS); `mqtt://` and `ws://` only with `insecurePlaintext`.
    pub url: String,
    /// The MQTT client id; one per pod (the operator renders the pod's name).
    pub client_id: String,
    /// The protocol version: `3.1.1` (default) or `5`.
    #[serde(default)]
    pub version: MqttVersion,
    /// The gateway's name in topics (its birth and last-will state topic).
    pub gateway: String,
    /// User name sent in CONNECT, if the broker wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File whose first line is the password sent in CONNECT (never in config or logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// How the broker's certificate is verified (as for the tunnel).
    #[serde(default)]
    pub server: ServerVerification,
    /// Client certificate presented to the broker (mTLS), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<ClientCert>,
    /// Allow `mqtt://` or `ws://` without TLS. Must be set explicitly; for local demos only.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// Topic layout.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// Seconds between keep-alive pings when nothing else is sent.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    /// Ask the broker to keep the session (subscriptions, queued commands) across reconnects.
    #[serde(default = "default_true")]
    pub persistent_session: bool,
    /// QoS 1 publishes sent but not yet acknowledged (PUBACK), at most.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: u16,
    /// First reconnect delay, milliseconds.
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial_ms: u64,
    /// Reconnect delay cap, milliseconds.
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
    /// Store-and-forward queue of updates (a PUBACK is the acknowledgement).
    #[serde(default)]
    pub queue: QueueConfig,
}

/// The MQTT protocol version spoken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MqttVersion {
    /// MQTT 3.1.1.
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5: the broker told the largest packet accepted, sessions that do not expire,
    /// commands answered on their response topic with their correlation data.
    #[serde(rename = "5")]
    V5,
}

/// Which topics updates and state go to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TopicsConfig {
    /// The layout; see docs/mqtt.md.
    pub preset: TopicPreset,
    /// First level of every topic of the `generic` layout.
    pub prefix: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            preset: TopicPreset::Generic,
            prefix: "edgeway".into(),
        }
    }
}

/// Topic layouts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TopicPreset {
    /// `<prefix>/<thing>/properties/<property>` and `<prefix>/<thing>/events/<event>`, JSON
    /// payloads; the gateway's state (retained) on `<prefix>/gateways/<gateway>/state`.
    #[default]
    Generic,
    /// AWS IoT device shadows: each property update reported on
    /// `$aws/things/<thing>/shadow/update` as `{"state": {"reported": {<property>: <value>}}}`,
    /// desired changes taken from `$aws/things/+/shadow/update/delta` as writes; events, service
    /// calls and the gateway's state as in `generic`.
    AwsShadow,
    /// Azure IoT Hub, the client id being the device id: updates and events as device-to-cloud
    /// messages on `devices/<id>/messages/events/` with the thing and property in the message's
    /// properties; direct methods `<thing>.<service>` answered on
    /// `$iothub/methods/res/<status>/?$rid=<id>`; desired-property patches
    /// (`{<thing>: {<property>: <value>}}`) applied as writes and acknowledged in the reported
    /// properties (IoT Plug and Play's `ac`/`av`/`ad`). The state is a message with `kind=state`.
    AzureIotHub,
    /// Sparkplug B: the gateway an edge node `spBv1.0/<prefix>/.../<clientId>`, each thing a
    /// device; NBIRTH and a DBIRTH per thing at every connection, DDATA per update, NDEATH as
    /// the last will, protobuf payloads with `seq` and `bdSeq`; DCMD writes properties and calls
    /// `Services/<service>`, NCMD `Node Control/Rebirth` births again.
    SparkplugB,
}

fn default_true() -> bool {
    true
}
fn default_keep_alive() -> u64 {
    30
}
fn default_in_flight() -> u16 {
    100
}
fn default_backoff_initial() -> u64 {
    500
}
fn default_backoff_max() -> u64 {
    30_000
}

/// How the broker is reached, from `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address (brackets of an IPv6 literal removed).
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS on.
    pub tls: bool,
    /// Websockets: the whole URL (the websocket client takes it as is).
    pub websocket: Option<String>,
}

impl MqttConfig {
    /// The broker's address as `url` gives it.
    pub fn endpoint(&self) -> Result<Endpoint, ConfigError> {
        let field = "mqtt.url";
        let (scheme, rest) = self
            .url
            .split_once("://")
            .ok_or_else(|| ConfigError::new(field, format!("{:?} has no scheme", self.url)))?;
        let (tls, ws, default_port) = match scheme {
            "mqtts" => (true, false, 8883),
            "mqtt" => (false, false, 1883),
            "wss" => (true, true, 443),
            "ws" => (false, true, 80),
            other => {
                return Err(ConfigError::new(
                    field,
                    format!("scheme {other:?} is not one of mqtts, wss (or mqtt, ws with insecurePlaintext)"),
                ))
            }
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') {
            return Err(ConfigError::new(
                field,
                "needs a host (and no credentials: use username and passwordFile)",
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| ConfigError::new(field, format!("port {p:?} is not valid")))?,
            ),
            _ => (authority, default_port),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(ConfigError::new(field, "has no host"));
        }
        Ok(Endpoint {
            host,
            port,
            tls,
            websocket: ws.then(|| self.url.clone()),
        })
    }

    /// Checks what can be checked without reading files.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let endpoint = self.endpoint()?;
        if !endpoint.tls && !self.insecure_plaintext {
            return Err(ConfigError::new(
                "mqtt.url",
                "without TLS the password and every value travel in clear text; use mqtts:// or wss://, or set insecurePlaintext: true",
            ));
        }
        self.server.validate_at("mqtt.server", endpoint.tls)?;
        if !endpoint.tls && self.client_cert.is_some() {
            return Err(ConfigError::new(
                "mqtt.clientCert",
                "a client certificate needs TLS (mqtts:// or wss://)",
            ));
        }
        if self.client_id.is_empty() || self.client_id.len() > 128 {
            return Err(ConfigError::new("mqtt.clientId", "must be 1 to 128 bytes"));
        }
        for (field, value) in [
            ("mqtt.gateway", &self.gateway),
            ("mqtt.topics.prefix", &self.topics.prefix),
        ] {
            if value.is_empty()
                || value.contains(['+', '#', '\0'])
                || (field == "mqtt.gateway" && value.contains('/'))
            {
                return Err(ConfigError::new(
                    field,
                    format!(
                        "{value:?} must be non-empty and hold no MQTT wildcard (+, #){}",
                        if field == "mqtt.gateway" { " or /" } else { "" }
                    ),
                ));
            }
        }
        if self.topics.preset == TopicPreset::SparkplugB && self.topics.prefix.contains('/') {
            return Err(ConfigError::new(
                "mqtt.topics.prefix",
                "is the Sparkplug group id: one topic level, no /",
            ));
        }
        if self.keep_alive_secs == 0 || self.keep_alive_secs > 65_535 {
            return Err(ConfigError::new("mqtt.keepAliveSecs", "must be 1 to 65535"));
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError::new("mqtt.maxInFlight", "must be positive"));
        }
        if self.backoff_initial_ms == 0 || self.backoff_max_ms < self.backoff_initial_ms {
            return Err(ConfigError::new(
                "mqtt.backoffMaxMs",
                "backoffInitialMs must be positive and backoffMaxMs not below it",
            ));
        }
        if self.password_file.is_some() && self.username.is_none() {
            return Err(ConfigError::new("mqtt.passwordFile", "needs username"));
        }
        self.queue.validate_at("mqtt.queue")
    }
}
