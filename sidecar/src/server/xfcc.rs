//! `x-forwarded-client-cert` as Envoy writes it, for upstreams that want the device's
//! certificate itself (their own pinning, audit): `Hash=<sha256 of the DER, hex>;
//! Cert="<URL-encoded PEM>";Subject="<subject DN>";URI=<URI SAN>;DNS=<DNS SAN>`, one `URI`/`DNS`
//! element per SAN. Set only when `upstream.forwardClientCert` is on and the connection
//! presented a verified certificate; a client's own copy is always removed first.

use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;

/// The header name.
pub const XFCC: &str = "x-forwarded-client-cert";

/// What Envoy leaves unescaped in `Cert` (RFC 3986 unreserved characters).
const CERT_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The header value for a verified client certificate (`None` if it does not parse).
pub fn value(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let hash: String = Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).ok()?);
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let subject = parsed.subject().to_string().replace('"', "\\\"");
    let mut out = format!(
        "Hash={hash};Cert=\"{}\";Subject=\"{subject}\"",
        utf8_percent_encode(&pem, CERT_ESCAPE)
    );
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => out.push_str(&format!(";URI={u}")),
                GeneralName::DNSName(d) => out.push_str(&format!(";DNS={d}")),
                _ => {}
            }
        }
    }
    Some(out)
}
