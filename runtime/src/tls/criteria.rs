//! Checks of a server certificate's names beside its chain (the EMS
//! `certificates.validation_criteria`, the C SDK's `twApi_SetX509Fields`): the subject's and the
//! issuer's common name, organization and organizational unit must equal the given values.
//!
//! Stricter than the SDK on one point: a field the certificate lacks fails the check (the SDK
//! skips it), since a criterion an attacker's certificate passes by omitting the field protects
//! nothing.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use x509_parser::x509::X509Name;

/// Required values of one distinguished name; unset fields are not checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NameCriteria {
    /// Common name (CN), exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Organization (O), exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// Organizational unit (OU), exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizational_unit: Option<String>,
}

impl NameCriteria {
    fn is_empty(&self) -> bool {
        self.common_name.is_none()
            && self.organization.is_none()
            && self.organizational_unit.is_none()
    }
}

/// Required names of the server certificate and of its issuer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CertCriteria {
    /// The server certificate's subject.
    #[serde(default)]
    pub subject: NameCriteria,
    /// The server certificate's issuer (as named in the certificate).
    #[serde(default)]
    pub issuer: NameCriteria,
}

impl CertCriteria {
    /// True when nothing is required.
    pub fn is_empty(&self) -> bool {
        self.subject.is_empty() && self.issuer.is_empty()
    }

    /// Checks a DER certificate; the error says which field differs.
    pub fn check(&self, der: &[u8]) -> Result<(), String> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| format!("unparsable: {e}"))?;
        check_name("subject", cert.subject(), &self.subject)?;
        check_name("issuer", cert.issuer(), &self.issuer)
    }
}

fn check_name(which: &str, name: &X509Name<'_>, want: &NameCriteria) -> Result<(), String> {
    let fields = [
        (
            "common name",
            &want.common_name,
            name.iter_common_name().collect::<Vec<_>>(),
        ),
        (
            "organization",
            &want.organization,
            name.iter_organization().collect(),
        ),
        (
            "organizational unit",
            &want.organizational_unit,
            name.iter_organizational_unit().collect(),
        ),
    ];
    for (field, wanted, present) in fields {
        let Some(wanted) = wanted else { continue };
        let values: Vec<&str> = present.iter().filter_map(|a| a.as_str().ok()).collect();
        if !values.iter().any(|v| v == wanted) {
            return Err(format!(
                "{which} {field} is {values:?}, the criteria require {wanted:?}"
            ));
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("server certificate does not meet the criteria: {0}")]
struct Mismatch(String);

/// A verifier that runs `inner` (chain or pin) and then the criteria.
#[derive(Debug)]
pub struct CriteriaVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    criteria: CertCriteria,
}

impl CriteriaVerifier {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ServerCertVerifier>, criteria: CertCriteria) -> Self {
        Self { inner, criteria }
    }
}

impl ServerCertVerifier for CriteriaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verified =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        self.criteria.check(end_entity).map_err(|m| {
            Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Mismatch(m)))))
        })?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
