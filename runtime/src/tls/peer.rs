//! The identity a verified client certificate carries: subject CN, else the first SAN — or,
//! when peers are pinned by key (SPKI), the identity of the pinned certificate holding that key.

use std::collections::HashMap;

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

/// The identity of a verified peer certificate, or `None` when it names nothing usable.
pub fn identity(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    if let Some(cn) = cert
        .subject()
        .iter_common_name()
        .find_map(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
    {
        return Some(cn.to_owned());
    }
    let san = cert.subject_alternative_name().ok().flatten()?;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s) => {
            Some((*s).to_owned())
        }
        _ => None,
    })
}

/// Who a verified peer is, as the listener's trust settings say.
#[derive(Debug, Default)]
pub struct PeerNames {
    /// With SPKI pinning: key → the pinned certificate's identity. A presented certificate
    /// only proves it holds a pinned key, so its own CN must not count (a self-signed
    /// certificate with device A's key and `CN=devB` was taken for `devB`).
    by_key: Option<HashMap<Vec<u8>, String>>,
    /// Beside a CA: a key that is not pinned is named by its own (CA-verified) certificate.
    fallback: bool,
}

impl PeerNames {
    /// Identities from the certificates themselves (CA trust, or whole-certificate pins).
    pub fn from_certificates() -> Self {
        Self {
            by_key: None,
            fallback: true,
        }
    }

    /// Identities from the pinned certificates, looked up by the presented key; with
    /// `beside_ca`, a key that is not pinned is named by the presented certificate, which
    /// then chained to the CA.
    pub fn from_pinned_keys(pinned: &[CertificateDer<'_>], beside_ca: bool) -> Self {
        let by_key = pinned
            .iter()
            .filter_map(|c| Some((spki(c)?, identity(c)?)))
            .collect();
        Self {
            by_key: Some(by_key),
            fallback: beside_ca,
        }
    }

    /// The identity of a peer whose certificate the handshake verified.
    pub fn identity(&self, presented: &CertificateDer<'_>) -> Option<String> {
        match &self.by_key {
            None => identity(presented),
            Some(map) => match map.get(&spki(presented)?) {
                Some(name) => Some(name.clone()),
                None if self.fallback => identity(presented),
                None => None,
            },
        }
    }
}

/// A certificate's DER SubjectPublicKeyInfo.
fn spki(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(cert.public_key().raw.to_vec())
}

/// A certificate's DER issuer name (a client certificate hint for pinned certificates).
pub fn issuer(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(cert.issuer().as_raw().to_vec())
}
