//! The identity a verified client certificate carries: subject CN, else the first SAN.

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
