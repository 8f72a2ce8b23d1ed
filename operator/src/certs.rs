//! Certificates, pure: the namespace CA, leaf issuance, and when to rotate or renew.
//!
//! Times are Unix seconds so callers decide what "now" is (tests pin it). Nothing here talks to
//! Kubernetes; `controller` reads Secrets, asks [`decide_leaf`]/[`decide_ca`], and writes back.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, SignatureAlgorithm,
};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use crate::crd::KeyAlgorithm;

/// Seconds in an hour.
pub const HOUR: i64 = 3600;

/// Why certificate material could not be made or read (never includes key material).
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused to build or sign.
    #[error("cannot {what}: {source}")]
    Generate {
        /// The step that failed.
        what: &'static str,
        /// The rcgen error.
        source: rcgen::Error,
    },
    /// A PEM block or certificate could not be parsed.
    #[error("cannot parse {what}: {message}")]
    Parse {
        /// What was being parsed.
        what: &'static str,
        /// Parser message.
        message: String,
    },
    /// A timestamp was out of range.
    #[error("time {0} out of range")]
    Time(i64),
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS server (serverAuth EKU).
    Server,
    /// TLS client (clientAuth EKU), the tunnel's identity.
    Client,
}

/// A CA able to sign: its certificate and key in PEM, plus what was parsed from them.
pub struct Ca {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM PKCS#8 private key.
    pub key_pem: String,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
    der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A freshly issued leaf: PEM certificate and key, and its validity.
#[derive(Clone)]
pub struct Issued {
    /// PEM leaf certificate (no chain: the CA is the root).
    pub cert_pem: String,
    /// PEM PKCS#8 private key.
    pub key_pem: String,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
}

/// What the operator needs to know about an existing leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafInfo {
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// Has the clientAuth EKU.
    pub client_auth: bool,
    /// Has the serverAuth EKU.
    pub server_auth: bool,
}

/// Leaves are valid from this many seconds before issuance, for clocks slightly behind ours.
const BACKDATE: i64 = 300;

/// What to do about a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafDecision {
    /// Keep it; renew at this time (Unix seconds).
    Keep {
        /// Planned renewal.
        renew_at: i64,
    },
    /// Issue a new one (with a new key), for this reason.
    Issue(&'static str),
}

/// Lifetime policy of issued leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Validity length, seconds.
    pub duration: i64,
    /// Renew this long before expiry; a third of the validity when `None`.
    pub renew_before: Option<i64>,
}

impl Lifetime {
    /// When a certificate valid from `not_before` to `not_after` should be renewed.
    pub fn renewal_time(&self, not_before: i64, not_after: i64) -> i64 {
        let span = (not_after - not_before).max(0);
        let before = self.renew_before.unwrap_or(span / 3).clamp(0, span);
        not_after - before
    }
}

fn gen_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> CertError {
    move |source| CertError::Generate { what, source }
}

fn odt(t: i64) -> Result<time::OffsetDateTime, CertError> {
    time::OffsetDateTime::from_unix_timestamp(t).map_err(|_| CertError::Time(t))
}

fn alg(a: KeyAlgorithm) -> &'static SignatureAlgorithm {
    match a {
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

impl Ca {
    /// Makes a new self-signed ECDSA P-256 CA valid from `now` for `lifetime` seconds.
    pub fn generate(common_name: &str, now: i64, lifetime: i64) -> Result<Ca, CertError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(gen_err("generate CA key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "Edgeway");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = odt(now - BACKDATE)?;
        params.not_after = odt(now + lifetime)?;
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key).map_err(gen_err("self-sign CA"))?;
        Ca::load(&cert.pem(), &key.serialize_pem())
    }

    /// Loads a CA from its PEM certificate and key (e.g. read back from the `edgeway-ca` Secret).
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca, CertError> {
        let der = first_cert_der(cert_pem, "CA certificate")?;
        let (not_before, not_after) = {
            let (_, x509) =
                x509_parser::parse_x509_certificate(&der).map_err(|e| CertError::Parse {
                    what: "CA certificate",
                    message: e.to_string(),
                })?;
            (
                x509.validity().not_before.timestamp(),
                x509.validity().not_after.timestamp(),
            )
        };
        let key = KeyPair::from_pem(key_pem).map_err(|e| CertError::Parse {
            what: "CA key",
            message: e.to_string(),
        })?;
        if key.public_key_raw() != spki_raw(&der)?.as_slice() {
            return Err(CertError::Parse {
                what: "CA key",
                message: "does not match the CA certificate".into(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&der.clone().into(), key)
            .map_err(gen_err("load CA as issuer"))?;
        Ok(Ca {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            not_before,
            not_after,
            der,
            issuer,
        })
    }

    /// Issues a leaf with a NEW key: `common_name`, DNS SANs and the usage's EKU.
    pub fn issue(
        &self,
        common_name: &str,
        dns_names: &[String],
        usage: Usage,
        algorithm: KeyAlgorithm,
        now: i64,
        lifetime: i64,
    ) -> Result<Issued, CertError> {
        let key = KeyPair::generate_for(alg(algorithm)).map_err(gen_err("generate leaf key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.subject_alt_names = dns_names
            .iter()
            .map(|n| {
                n.clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(gen_err("encode DNS name"))
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        // Never after the CA: a leaf must not outlive its issuer.
        let not_after = (now + lifetime).min(self.not_after);
        params.not_before = odt(now - BACKDATE)?;
        params.not_after = odt(not_after)?;
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(gen_err("sign leaf"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_before: now - 300,
            not_after,
        })
    }

    /// Whether `cert_pem`'s first certificate was signed by this CA.
    pub fn signed(&self, cert_pem: &str) -> bool {
        let Ok(der) = first_cert_der(cert_pem, "certificate") else {
            return false;
        };
        verify_signed_by(&der, &self.der)
    }
}

/// Whether the DER certificate `cert` is signed by the DER certificate `issuer` (name and signature).
pub fn verify_signed_by(cert: &[u8], issuer: &[u8]) -> bool {
    let (Ok((_, c)), Ok((_, i))) = (
        x509_parser::parse_x509_certificate(cert),
        x509_parser::parse_x509_certificate(issuer),
    ) else {
        return false;
    };
    c.issuer() == i.subject() && c.verify_signature(Some(i.public_key())).is_ok()
}

fn first_cert_der(pem: &str, what: &'static str) -> Result<Vec<u8>, CertError> {
    let block = Pem::iter_from_buffer(pem.as_bytes())
        .next()
        .ok_or_else(|| CertError::Parse {
            what,
            message: "no PEM block".into(),
        })?
        .map_err(|e| CertError::Parse {
            what,
            message: e.to_string(),
        })?;
    Ok(block.contents)
}

/// Every certificate (DER) in a PEM bundle.
pub fn pem_certs(pem: &str) -> Result<Vec<Vec<u8>>, CertError> {
    Pem::iter_from_buffer(pem.as_bytes())
        .map(|b| {
            b.map(|b| b.contents).map_err(|e| CertError::Parse {
                what: "PEM bundle",
                message: e.to_string(),
            })
        })
        .collect()
}

fn spki_raw(der: &[u8]) -> Result<Vec<u8>, CertError> {
    let (_, x509) = x509_parser::parse_x509_certificate(der).map_err(|e| CertError::Parse {
        what: "certificate",
        message: e.to_string(),
    })?;
    Ok(x509.public_key().subject_public_key.data.to_vec())
}

/// Parses the first certificate of a PEM chain.
pub fn inspect(cert_pem: &str) -> Result<LeafInfo, CertError> {
    inspect_der(&first_cert_der(cert_pem, "certificate")?)
}

/// Parses one DER certificate.
pub fn inspect_der(der: &[u8]) -> Result<LeafInfo, CertError> {
    let (_, x509) = x509_parser::parse_x509_certificate(der).map_err(|e| CertError::Parse {
        what: "certificate",
        message: e.to_string(),
    })?;
    let mut dns_names: Vec<String> = x509
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DNSName(n) => Some((*n).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    dns_names.sort();
    let eku = x509.extended_key_usage().ok().flatten().map(|e| e.value);
    Ok(LeafInfo {
        not_before: x509.validity().not_before.timestamp(),
        not_after: x509.validity().not_after.timestamp(),
        dns_names,
        client_auth: eku.is_some_and(|e| e.client_auth),
        server_auth: eku.is_some_and(|e| e.server_auth),
    })
}

/// Whether the PEM key belongs to the PEM certificate.
pub fn key_matches(cert_pem: &str, key_pem: &str) -> bool {
    let (Ok(der), Ok(key)) = (
        first_cert_der(cert_pem, "certificate"),
        KeyPair::from_pem(key_pem),
    ) else {
        return false;
    };
    spki_raw(&der).is_ok_and(|raw| raw == key.public_key_raw())
}

/// Decides whether an existing leaf (cert and key PEM, if any) can be kept.
///
/// A new certificate is needed when there is none, it does not parse, its key does not match,
/// the current CA did not sign it, its SANs or usage differ, it is valid for longer than the
/// spec now allows (the lifetime was shortened), or its renewal time has come.
pub fn decide_leaf(
    existing: Option<(&str, &str)>,
    ca: &Ca,
    dns_names: &[String],
    usage: Usage,
    lifetime: Lifetime,
    now: i64,
) -> LeafDecision {
    let Some((cert, key)) = existing else {
        return LeafDecision::Issue("Missing");
    };
    let Ok(info) = inspect(cert) else {
        return LeafDecision::Issue("Unparsable");
    };
    if !key_matches(cert, key) {
        return LeafDecision::Issue("KeyMismatch");
    }
    if !ca.signed(cert) {
        return LeafDecision::Issue("IssuerChanged");
    }
    let mut want: Vec<String> = dns_names.to_vec();
    want.sort();
    if info.dns_names != want {
        return LeafDecision::Issue("NamesChanged");
    }
    let usage_ok = match usage {
        Usage::Server => info.server_auth,
        Usage::Client => info.client_auth,
    };
    if !usage_ok {
        return LeafDecision::Issue("UsageChanged");
    }
    // Issued leaves span the duration plus the 300 s backdating; a longer one predates a
    // shortened `certificates.durationHours` and is replaced rather than kept for months.
    if info.not_after - info.not_before > lifetime.duration + BACKDATE + 60 {
        return LeafDecision::Issue("LifetimeShortened");
    }
    let renew_at = lifetime.renewal_time(info.not_before, info.not_after);
    if now >= renew_at {
        return LeafDecision::Issue("Renewal");
    }
    LeafDecision::Keep { renew_at }
}

/// What to do about the namespace CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaDecision {
    /// The current CA is fine until the given rotation time.
    Keep {
        /// Planned rotation, Unix seconds.
        rotate_at: i64,
    },
    /// Make a new CA; keep the old one in the trust bundle while it is valid.
    Rotate,
}

/// Decides whether the CA must be rotated (at 2/3 of its lifetime).
pub fn decide_ca(ca: &Ca, now: i64) -> CaDecision {
    let rotate_at = Lifetime {
        duration: ca.not_after - ca.not_before,
        renew_before: None,
    }
    .renewal_time(ca.not_before, ca.not_after);
    if now >= rotate_at {
        CaDecision::Rotate
    } else {
        CaDecision::Keep { rotate_at }
    }
}

/// During a rotation with an overlap: when the successor (`next`, published in the trust
/// bundle since it was made) takes over signing — `overlap` seconds after its `not_before`, but
/// a day before the current CA expires at the latest.
pub fn promote_at(current: &Ca, next: &Ca, overlap: i64) -> i64 {
    (next.not_before + overlap.max(0))
        .min(current.not_after - 24 * HOUR)
        .max(next.not_before)
}

/// The trust bundle: the current CA first, then every other CA of `previous` still valid at `now`
/// (each once).
pub fn trust_bundle(current: &Ca, previous: &str, now: i64) -> String {
    let mut out = current.cert_pem.trim_end().to_owned();
    out.push('\n');
    let mut seen = vec![current.der.clone()];
    for block in Pem::iter_from_buffer(previous.as_bytes()).flatten() {
        if seen.contains(&block.contents) {
            continue;
        }
        seen.push(block.contents.clone());
        let valid = x509_parser::parse_x509_certificate(&block.contents)
            .is_ok_and(|(_, c)| c.validity().not_after.timestamp() > now);
        if valid {
            out.push_str(&pem_encode(&block.contents));
        }
    }
    out
}

/// PEM-encodes one DER certificate.
pub fn pem_encode(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// RFC 3339 text of a Unix time (for status).
pub fn rfc3339(t: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(t)
        .map(|ts| ts.to_string())
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests;
