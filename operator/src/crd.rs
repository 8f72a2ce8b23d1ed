//! The `EdgeGateway` custom resource (`edgeway.io/v1alpha1`): spec, status and their schema.
//!
//! The CRD YAML is generated from these types (`edgeway-operator crd`). Every constraint the
//! OpenAPI schema can express (required fields, enums, ranges, one-of) is declared here so
//! `kubectl apply` refuses bad manifests even on Kubernetes 1.20; what it cannot express is
//! checked by the operator and reported in the `ConfigValid` condition.

use std::collections::BTreeMap;

use edgeway_runtime::tls::{ClientAuthMode, PinMode};
use edgeway_sidecar::config::AuthMethodName;
use edgeway_sidecar::mqtt::config::{MqttVersion, TopicsConfig};
use edgeway_sidecar::tunnel::config::{FsyncPolicy, OverflowPolicy};
use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the resource.
pub const GROUP: &str = "edgeway.io";

/// Desired state of one Edgeway gateway: its platform connection, HTTPS server, Lua things and pods.
// Several printcolumn(...) share `type_`; clippy reads them as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "edgeway.io",
    version = "v1alpha1",
    kind = "EdgeGateway",
    plural = "edgegateways",
    namespaced,
    shortname = "egw",
    category = "edgeway",
    status = "EdgeGatewayStatus",
    doc = "An Edgeway gateway: a StatefulSet of sidecars with their certificates, config and Service.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Devices",
        type_ = "integer",
        json_path = ".status.devicesRunning"
    ),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EdgeGatewaySpec {
    /// Connection to the platform: a ThingWorx AlwaysOn platform (the sidecar's tunnel) or an
    /// MQTT broker.
    pub platform: PlatformSpec,
    /// The device-facing HTTPS server.
    #[serde(default)]
    pub server: GatewayServerSpec,
    /// Lifetime and key type of the certificates the operator issues.
    #[serde(default)]
    pub certificates: CertificatesSpec,
    /// Lua templates (from ConfigMaps) and the things instantiated from them.
    #[serde(default)]
    pub lua: LuaSpec,
    /// A simulated device fleet, sharded over the StatefulSet's pods by ordinal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulation: Option<SimulationSpec>,
    /// An optional app container whose HTTP traffic the sidecar proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamSpec>,
    /// Pod-level settings of the StatefulSet.
    #[serde(default)]
    pub pod: PodSettings,
}

/// Where the gateway connects to and how it proves and checks identities there.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformSpec {
    /// The platform's protocol: ThingWorx AlwaysOn (the default) or MQTT (see docs/mqtt.md).
    #[serde(default)]
    pub protocol: PlatformProtocol,
    /// With `alwaysOn`, the AlwaysOn URL `wss://host:port/Thingworx/WS`; with `mqtt`, the
    /// broker: `mqtts://host:port` (TLS, default port 8883) or `wss://host:port/path`
    /// (websockets over TLS).
    #[schemars(regex(pattern = r"^(wss|mqtts)://[^\s]+$"), length(max = 2048))]
    pub url: String,
    /// Further platform URLs, each tried in turn after a failed connect (the EMS `ws_servers`
    /// list); verified like `url` (AlwaysOn).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(regex(pattern = r"^wss://[^\s]+$"), length(max = 2048))
    )]
    pub failover_urls: Vec<String>,
    /// Gateway thing name sent in BIND (`alwaysOn`; none when absent); with `mqtt`, the
    /// gateway's name in its state topic (the EdgeGateway's name when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]{1,256}$"))]
    pub gateway_name: Option<String>,
    /// Secret key holding the application key the gateway presents (required with
    /// `alwaysOn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_key: Option<SecretKeyRef>,
    /// The MQTT session: credentials, topics (only with `protocol: mqtt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttSpec>,
    /// How the platform's server certificate is verified.
    pub server_verification: ServerVerification,
    /// Client certificate presented to the platform (AlwaysOn, or an MQTT broker that asks for
    /// one); issued by the operator unless `secretName` is set.
    #[serde(default)]
    pub client_certificate: ClientCertificateSpec,
    /// Messages kept while the platform is unreachable.
    #[serde(default)]
    pub offline_queue: OfflineQueueSpec,
    /// Websocket keep-alive of the tunnel, as ThingWorx edge SDKs do it (AlwaysOn; MQTT has
    /// `mqtt.keepAliveSeconds`).
    #[serde(default)]
    pub keep_alive: KeepAliveSpec,
    /// Reach the platform through an HTTP proxy (`CONNECT`), as the EMS `proxy` settings do
    /// (AlwaysOn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxySpec>,
    /// Offer permessage-deflate (RFC 7692) compression to the platform, used when it accepts
    /// (the EMS `ws_connection.compression`). Only messages of 256 bytes or more are
    /// compressed (AlwaysOn).
    #[serde(default = "default_true")]
    pub compression: bool,
}

/// The protocol a gateway speaks to its platform.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PlatformProtocol {
    /// ThingWorx AlwaysOn over one TLS websocket.
    #[default]
    AlwaysOn,
    /// MQTT 3.1.1 to a broker, QoS 1 (see docs/mqtt.md).
    Mqtt,
}

/// The MQTT session of a gateway with `protocol: mqtt`. The broker is verified by
/// `serverVerification`; the client certificate (`clientCertificate`) is presented when the
/// broker asks for one; each pod's client id is its pod name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MqttSpec {
    /// MQTT protocol version: `"3.1.1"` (default) or `"5"`.
    #[serde(default)]
    pub version: MqttVersion,
    /// User name sent in CONNECT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub username: Option<String>,
    /// Secret key holding the password sent with `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeyRef>,
    /// Topic layout: preset and prefix.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// Ask the broker to keep the session (subscriptions, queued commands) across reconnects.
    #[serde(default = "default_true")]
    pub persistent_session: bool,
    /// Seconds between keep-alive pings when nothing else is sent.
    #[serde(default = "default_mqtt_keep_alive")]
    #[schemars(range(min = 5, max = 3600))]
    pub keep_alive_seconds: u32,
}

fn default_mqtt_keep_alive() -> u32 {
    30
}

impl Default for MqttSpec {
    fn default() -> Self {
        Self {
            version: MqttVersion::default(),
            username: None,
            password_secret: None,
            topics: TopicsConfig::default(),
            persistent_session: true,
            keep_alive_seconds: default_mqtt_keep_alive(),
        }
    }
}

impl PlatformSpec {
    /// The Secret key the connection authenticates with, and the field that names it: the app
    /// key (AlwaysOn) or the MQTT password.
    pub fn credential(&self) -> Option<(&'static str, &SecretKeyRef)> {
        match self.protocol {
            PlatformProtocol::AlwaysOn => {
                self.app_key.as_ref().map(|r| ("spec.platform.appKey", r))
            }
            PlatformProtocol::Mqtt => self
                .mqtt
                .as_ref()
                .and_then(|m| m.password_secret.as_ref())
                .map(|r| ("spec.platform.mqtt.passwordSecret", r)),
        }
    }
}

/// An HTTP proxy for the tunnel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    /// `host:port` of the proxy.
    #[schemars(regex(pattern = r"^[^\s:/]+:[0-9]{1,5}$"))]
    pub address: String,
    /// Key of a Secret holding `user:password` for the proxy's basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<SecretKeyRef>,
}

/// Websocket keep-alive: a ping after `intervalSeconds` without traffic from the platform; the
/// connection is declared dead when nothing answers within `timeoutSeconds`. The defaults are
/// the ThingWorx edge SDK's (55 s, below the platform's 60 s idle timeout; 10 s).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeepAliveSpec {
    /// Seconds without traffic before a ping.
    #[serde(default = "default_keep_alive_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: u32,
    /// Seconds the platform has to answer it.
    #[serde(default = "default_keep_alive_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: u32,
}

impl Default for KeepAliveSpec {
    fn default() -> Self {
        Self {
            interval_seconds: default_keep_alive_interval(),
            timeout_seconds: default_keep_alive_timeout(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_keep_alive_interval() -> u32 {
    55
}
fn default_keep_alive_timeout() -> u32 {
    10
}

/// A key in a Secret of the gateway's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A file taken from a key of either a Secret or a ConfigMap (exactly one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [{"required": ["secretName"]}, {"required": ["configMapName"]}]))]
pub struct FileSource {
    /// Secret holding the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// ConfigMap holding the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub config_map_name: Option<String>,
    /// Key of the file.
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Platform server verification: a CA bundle, a pinned certificate, a trust anchor, or
/// explicitly none.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [{"required": ["ca"]}, {"required": ["pinned"]}, {"required": ["anchor"]}, {"required": ["insecure"]}]))]
pub struct ServerVerification {
    /// PEM CA bundle the platform's certificate must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<FileSource>,
    /// PEM certificate the platform must present exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<FileSource>,
    /// PEM certificate used as the trust anchor, hostname not checked (the APS model: the
    /// platform's own self-signed certificate; its leaf may be renewed under it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<FileSource>,
    /// Skip verification. Must be written explicitly as `true`; never a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = [true]))]
    pub insecure: Option<bool>,
    /// Names the platform's certificate and its issuer must carry, checked after `ca`,
    /// `pinned` or `anchor` (the EMS `certificates.validation_criteria`); a field the certificate lacks
    /// fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criteria: Option<edgeway_runtime::tls::criteria::CertCriteria>,
}

/// The tunnel's client certificate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificateSpec {
    /// Use this `kubernetes.io/tls` Secret instead of an issued certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// How `secretName` holds the key: `pem` (`tls.crt` + `tls.key`) or `pkcs12`
    /// (`keystore.p12`; the EMS `certificates.key_file` `.p12`).
    #[serde(default, skip_serializing_if = "KeyFormat::is_pem")]
    pub secret_format: KeyFormat,
    /// Passphrase of an encrypted `tls.key` or of `keystore.p12` in `secretName` (the EMS
    /// `certificates.key_passphrase`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_passphrase_secret: Option<SecretKeyRef>,
}

/// The offline queue of the tunnel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfflineQueueSpec {
    /// Largest number of queued messages.
    #[serde(default = "default_queue_size")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub size: u32,
    /// Most bytes the queued messages may take (each counted as its record in the queue's
    /// log, ~100-200 bytes for a number). Persisted, the queue needs up to three times this on
    /// its volume (the log, its dead lines, a compaction's copy); the default is a quarter of
    /// `persistence.size`. In memory and absent, only `size` bounds the queue. An EMS's
    /// `offline_msg_store` of 64 KiB is `65536`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024))]
    pub max_bytes: Option<u64>,
    /// What is dropped when the queue is full.
    #[serde(default)]
    pub overflow: OverflowPolicy,
    /// Keep the queue on a PersistentVolumeClaim per pod; in memory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<PersistenceSpec>,
    /// When a persisted queue's writes reach the disk itself: `always` (every batch; survives
    /// power loss), `interval` (every `fsyncIntervalMs`), `never` (the kernel's writeback).
    /// A killed container loses nothing with any of them.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// With `fsync: interval`, the longest a write waits for its sync.
    #[serde(default = "default_fsync_interval_ms")]
    #[schemars(range(min = 10, max = 60_000))]
    pub fsync_interval_ms: u32,
}

/// A PersistentVolumeClaim per pod for the offline queue.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistenceSpec {
    /// Requested size, a Kubernetes quantity such as `1Gi`.
    #[serde(default = "default_pvc_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: String,
    /// StorageClass of the claims; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// The device-facing HTTPS server of the sidecar.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayServerSpec {
    /// Container and Service port (unprivileged, the pod runs as non-root).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub port: u16,
    /// Whether device clients must present a certificate.
    #[serde(default)]
    pub client_auth: ClientAuthMode,
    /// CA bundle device certificates must chain to; the namespace CA when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<FileSource>,
    /// Device certificates trusted as they are (the APS model: the server compares the
    /// received client certificate with the one it saved), each a PEM file in a Secret or
    /// ConfigMap key. Beside the CA unless `clientTrust` says `pinned`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub pinned_client_certificates: Vec<FileSource>,
    /// What of a pinned certificate must match: `certificate` (the DER exactly) or `spki`
    /// (only the key, so a re-issued certificate with the same key passes; the peer is then
    /// named by the pinned certificate).
    #[serde(default, skip_serializing_if = "is_default")]
    pub pin_mode: PinMode,
    /// Which device certificates pass: `ca` (chained to `clientCa`), `pinned` (only
    /// `pinnedClientCertificates`), `caOrPinned` (a pin, else the CA). Default: `caOrPinned`
    /// when pins are given, else `ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_trust: Option<ClientTrust>,
    /// Accepted authentication methods, tried in order.
    #[serde(default = "default_methods")]
    #[schemars(length(min = 1, max = 3), extend("x-kubernetes-list-type" = "set"))]
    pub auth_methods: Vec<AuthMethodName>,
    /// HTTP basic users; a password is generated when `basic` is enabled and no Secret is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuthSpec>,
    /// OAuth 1.0a consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthSpec>,
    /// Header that carries the verified identity to the upstream app.
    #[serde(default = "default_identity_header")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"), length(max = 128))]
    pub identity_header: String,
    /// Who may read and write properties, invoke services and fire events, by principal
    /// (`mtls:<CN glob>`, `basic:<user glob>`, `oauth:<consumer glob>`) and thing, template and
    /// name globs. None: every authenticated client may do everything; once there is a rule,
    /// what no rule allows is refused with 403.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub authorization: Vec<edgeway_sidecar::auth::authz::Rule>,
    /// Header that tells the upstream app how the identity was verified (`mtls`, `basic`,
    /// `oauth`): a basic user `x` and a certificate `CN=x` are different principals.
    #[serde(default = "default_auth_method_header")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"), length(max = 128))]
    pub auth_method_header: String,
    /// Existing `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`, `ca.crt`, e.g. from cert-manager)
    /// to serve instead of an issued certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub tls_secret_name: Option<String>,
    /// How `tlsSecretName` holds the key: `pem` (`tls.crt` + `tls.key`) or `pkcs12`
    /// (`keystore.p12`, as cert-manager's `keystores.pkcs12` or an EMS `key_file` `.p12`).
    #[serde(default, skip_serializing_if = "KeyFormat::is_pem")]
    pub tls_secret_format: KeyFormat,
    /// Passphrase of an encrypted `tls.key` or of `keystore.p12` in `tlsSecretName` (the EMS
    /// `http_server.passphrase`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key_passphrase_secret: Option<SecretKeyRef>,
}

/// Which device certificates the gateway's HTTPS server accepts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ClientTrust {
    /// Certificates chained to `clientCa` (the namespace CA when absent).
    Ca,
    /// Only `pinnedClientCertificates`.
    Pinned,
    /// A pinned certificate, else one chained to the CA.
    CaOrPinned,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// How a user-supplied TLS Secret holds its key and certificate.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum KeyFormat {
    /// `tls.crt` and `tls.key` (PEM; the key may be encrypted PKCS#8).
    #[default]
    Pem,
    /// `keystore.p12`: key and chain in one PKCS#12 bundle.
    Pkcs12,
}

impl KeyFormat {
    /// Whether this is the default.
    pub fn is_pem(&self) -> bool {
        *self == KeyFormat::Pem
    }

    /// The Secret keys of the certificate and the key.
    pub fn files(self) -> (&'static str, &'static str) {
        match self {
            KeyFormat::Pem => ("tls.crt", "tls.key"),
            KeyFormat::Pkcs12 => ("keystore.p12", "keystore.p12"),
        }
    }
}

/// HTTP basic authentication.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuthSpec {
    /// htpasswd-style users file (`user:hash`); generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_secret: Option<SecretKeyRef>,
    /// Realm announced in `WWW-Authenticate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub realm: Option<String>,
}

/// OAuth 1.0a authentication.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuthSpec {
    /// YAML consumers file in a Secret.
    pub consumers_secret: SecretKeyRef,
}

/// Certificates the operator issues from the namespace CA.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.renewBeforeHours) || self.renewBeforeHours < self.durationHours",
    "message": "renewBeforeHours must be less than durationHours"
}]))]
pub struct CertificatesSpec {
    /// Lifetime of issued certificates, in hours.
    #[serde(default = "default_duration_hours")]
    #[schemars(range(min = 1, max = 87_600))]
    pub duration_hours: u32,
    /// Renew this many hours before expiry; a third of the lifetime when absent (renewal at 2/3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 87_599))]
    pub renew_before_hours: Option<u32>,
    /// Key type of issued certificates.
    #[serde(default)]
    pub key_algorithm: KeyAlgorithm,
}

/// Key type of issued certificates.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256.
    #[default]
    #[serde(rename = "ECDSAP256")]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    #[serde(rename = "ECDSAP384")]
    EcdsaP384,
}

/// Lua templates and things.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.things) || self.things.all(t, has(self.templates) && self.templates.exists(p, p.name == t.template))",
    "message": "every thing's template must be one of lua.templates"
}]))]
pub struct LuaSpec {
    /// Template scripts, each from a ConfigMap key.
    #[serde(default)]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub templates: Vec<LuaTemplateRef>,
    /// Thing instances.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub things: Vec<ThingInstance>,
}

/// A Lua template script kept in a ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LuaTemplateRef {
    /// Name things refer to.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]{1,63}$"))]
    pub name: String,
    /// ConfigMap holding the script.
    #[schemars(length(min = 1, max = 253))]
    pub config_map: String,
    /// Key of the script in the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
    /// Lua dialect: `lsr` (the LSR's Lua 5.1; unknown string escapes keep their character,
    /// 5.1 library names exist) or `lua54`.
    #[serde(default, skip_serializing_if = "is_lsr")]
    pub dialect: edgeway_sidecar::lua::Dialect,
}

fn is_lsr(d: &edgeway_sidecar::lua::Dialect) -> bool {
    *d == edgeway_sidecar::lua::Dialect::Lsr
}

/// One thing: an instance of a template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThingInstance {
    /// Thing name, unique in this gateway.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]{1,256}$"))]
    pub name: String,
    /// Template name (one of `lua.templates`).
    pub template: String,
    /// How often the template's tasks run, in milliseconds.
    #[serde(default = "default_scan_rate")]
    #[schemars(range(min = 10, max = 86_400_000))]
    pub scan_rate_ms: u64,
    /// Initial property values overriding the template's defaults.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    #[schemars(schema_with = "free_form_object")]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// An app container in the same pod; the sidecar forwards `pathPrefix` to it on loopback.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.port != 9090",
    "message": "port 9090 is the sidecar's admin port"
}]))]
pub struct UpstreamSpec {
    /// Container image of the app.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Port the app listens on (on 127.0.0.1 is enough).
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Path prefix forwarded to the app.
    #[serde(default = "default_prefix")]
    #[schemars(regex(pattern = "^/"))]
    pub path_prefix: String,
    /// Remove the prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Forward the client's credentials (`Authorization`, OAuth parameters in the query or a
    /// form body) to the app. Off by default: the app gets the verified identity
    /// (`X-Edgeway-Identity`) and how it was verified (`X-Edgeway-Auth-Method`), not the
    /// credentials.
    #[serde(default)]
    pub forward_credentials: bool,
    /// Send a device's verified client certificate to the app in `x-forwarded-client-cert`
    /// (Envoy's format: hash, URL-encoded PEM, subject, URI and DNS SANs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_client_cert: bool,
    /// Environment of the app container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Resources of the app container (`limits` and `requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// A simulated fleet (the sidecar's `simulation` section without `shard`, which the operator
/// assigns per pod: pod `<gateway>-<i>` runs devices `[i*devicesPerPod, (i+1)*devicesPerPod)`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SimulationSpec {
    /// Devices in the whole fleet.
    #[schemars(range(min = 1, max = 100_000_000))]
    pub count: u32,
    /// Devices run by one pod; the pod count is `ceil(count / devicesPerPod)`.
    #[serde(default = "default_devices_per_pod")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub devices_per_pod: u32,
    /// Device names are this prefix followed by the global index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]{0,200}$"))]
    pub name_prefix: Option<String>,
    /// Seed of every random draw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Lua template (one of `lua.templates`) whose services the devices expose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// What every device reports: the sidecar's `simulation.properties` items (checked by the
    /// sidecar's own rules; problems appear in `ConfigValid`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "sim_properties_schema")]
    pub properties: Vec<serde_json::Value>,
    /// Events devices fire when a numeric property crosses a threshold (the sidecar's
    /// `simulation.events`): `{name, property, above}` or `{name, property, below}`; the data
    /// is `{property, value}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub events: Vec<edgeway_sidecar::sim::SimEventConfig>,
}

/// Pull policy of the containers' images.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when not on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Pod settings of the gateway's StatefulSet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSettings {
    /// Sidecar image; the operator's `--sidecar-image` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Image pull policy of every container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Resources of the sidecar container (`limits` and `requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node selector of the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Pull secrets of the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Number of pods when not simulating (a simulation sets it from count and devicesPerPod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// The PodDisruptionBudget of the gateway's pods.
    #[serde(default)]
    pub disruption_budget: DisruptionBudgetSpec,
}

/// A PodDisruptionBudget for a gateway's pods: a node drain (a voluntary disruption) takes at
/// most `maxUnavailable` of them down at once.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionBudgetSpec {
    /// Make one: `true`; `false` (one made before then allows every disruption:
    /// `maxUnavailable: 100%`); absent: when the gateway has two pods or more (one pod alone
    /// cannot stay up through a drain anyway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Pods a drain may take down at once.
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 1))]
    pub max_unavailable: i32,
}

impl Default for DisruptionBudgetSpec {
    fn default() -> Self {
        Self {
            enabled: None,
            max_unavailable: default_max_unavailable(),
        }
    }
}

fn default_max_unavailable() -> i32 {
    1
}

/// Observed state of a gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeGatewayStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `CertificatesReady`, `ConfigValid`, `Connected`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Pods desired.
    #[serde(default)]
    pub replicas: i32,
    /// Pods ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Devices (things) the gateway should serve.
    #[serde(default)]
    pub devices_desired: i32,
    /// Devices served by ready pods.
    #[serde(default)]
    pub devices_running: i32,
    /// Certificates in use, with their expiry and planned renewal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateStatus>,
    /// In-cluster address of the HTTPS server, `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// One certificate's lifetime as seen by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// `ca`, `server` or `client`.
    pub name: String,
    /// Secret that holds it.
    pub secret_name: String,
    /// Expiry (RFC 3339).
    pub not_after: String,
    /// When the operator renews it (RFC 3339); absent for certificates it does not manage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<String>,
}

impl GatewayServerSpec {
    /// `clientTrust`, or what it defaults to.
    pub fn trust(&self) -> ClientTrust {
        self.client_trust
            .unwrap_or(if self.pinned_client_certificates.is_empty() {
                ClientTrust::Ca
            } else {
                ClientTrust::CaOrPinned
            })
    }
}

impl Default for GatewayServerSpec {
    fn default() -> Self {
        Self {
            port: default_port(),
            client_auth: ClientAuthMode::default(),
            client_ca: None,
            pinned_client_certificates: Vec::new(),
            pin_mode: PinMode::default(),
            client_trust: None,
            auth_methods: default_methods(),
            basic_auth: None,
            oauth: None,
            identity_header: default_identity_header(),
            auth_method_header: default_auth_method_header(),
            authorization: Vec::new(),
            tls_secret_name: None,
            tls_secret_format: KeyFormat::Pem,
            tls_key_passphrase_secret: None,
        }
    }
}

impl Default for CertificatesSpec {
    fn default() -> Self {
        Self {
            duration_hours: default_duration_hours(),
            renew_before_hours: None,
            key_algorithm: KeyAlgorithm::default(),
        }
    }
}

impl Default for OfflineQueueSpec {
    fn default() -> Self {
        Self {
            size: default_queue_size(),
            max_bytes: None,
            overflow: OverflowPolicy::default(),
            persistence: None,
            fsync: FsyncPolicy::default(),
            fsync_interval_ms: default_fsync_interval_ms(),
        }
    }
}

/// Structural schema of simulated properties: the fixed fields are checked, the generator's
/// parameters (which depend on `kind`) are kept as written and checked by the operator.
fn sim_properties_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 1000,
        "items": {
            "type": "object",
            "required": ["name", "baseType", "generator"],
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,256}$"},
                "baseType": {"type": "string", "enum": ["NUMBER", "INTEGER", "LONG", "BOOLEAN", "STRING"]},
                "intervalMs": {"type": "integer", "minimum": 10, "maximum": 86_400_000},
                "generator": {
                    "type": "object",
                    "required": ["kind"],
                    "properties": {
                        "kind": {"type": "string", "enum": ["constant", "counter", "ramp", "uniform", "randomWalk", "sine", "square", "csv"]}
                    },
                    "x-kubernetes-preserve-unknown-fields": true
                },
                "quality": {
                    "type": "object",
                    "properties": {
                        "badRatio": {"type": "number", "minimum": 0, "maximum": 1},
                        "uncertainRatio": {"type": "number", "minimum": 0, "maximum": 1}
                    }
                }
            }
        }
    })
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

fn default_devices_per_pod() -> u32 {
    1000
}
fn default_ca_key() -> String {
    "ca.crt".into()
}
fn default_fsync_interval_ms() -> u32 {
    1000
}

fn default_queue_size() -> u32 {
    10_000
}
fn default_pvc_size() -> String {
    "1Gi".into()
}
fn default_port() -> u16 {
    8443
}
fn default_methods() -> Vec<AuthMethodName> {
    vec![AuthMethodName::Mtls]
}
fn default_auth_method_header() -> String {
    "X-Edgeway-Auth-Method".into()
}

fn default_identity_header() -> String {
    "X-Edgeway-Identity".into()
}
fn default_duration_hours() -> u32 {
    2160
}
fn default_scan_rate() -> u64 {
    1000
}
fn default_prefix() -> String {
    "/".into()
}
