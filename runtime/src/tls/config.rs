//! The TLS part of a server's config file: certificate, key and client-certificate policy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Server certificate and client-certificate policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first).
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1; ECDSA, RSA or Ed25519), or an encrypted
    /// PKCS#8 key with `keyPassphraseFile`.
    pub key: PathBuf,
    /// File whose first line is the passphrase of an encrypted `key` (the EMS
    /// `http_server.passphrase`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_passphrase_file: Option<PathBuf>,
    /// Whether clients must present a certificate.
    #[serde(default)]
    pub client_auth: ClientAuthMode,
    /// PEM CA bundle that client certificates must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// PEM files of pinned peer certificates, accepted exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned_peers: Vec<PathBuf>,
    /// What of a pinned certificate must match.
    #[serde(default)]
    pub pin_mode: PinMode,
    /// Watch the files and reload them when they change.
    #[serde(default = "yes")]
    pub watch: bool,
}

/// Client certificate requirement, as in the edge micro-server's `validate_client_cert`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ClientAuthMode {
    /// Every client must present a trusted certificate.
    #[default]
    Required,
    /// A presented certificate must be trusted; none is allowed (other methods then apply).
    Optional,
    /// Client certificates are not requested.
    Off,
}

/// How pinned certificates are compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PinMode {
    /// The whole DER certificate must match.
    #[default]
    Certificate,
    /// Only the SubjectPublicKeyInfo must match, so a re-issued cert with the same key passes.
    Spki,
}

fn yes() -> bool {
    true
}
