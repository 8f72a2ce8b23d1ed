//! PKCS#12 bundles (`.p12`/`.pfx`), as the EMS takes them for `key_file`: the private key and
//! its certificate chain in one file, opened with the passphrase file's first line (an empty
//! passphrase without one). Legacy bundles (3DES/RC2, as OpenSSL 1.x wrote them) and PBES2
//! ones (OpenSSL 3's default) both open; the `p12-keystore` crate does the parsing.

use std::path::Path;

use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ConfigError;

/// Whether `bytes` look like a DER PKCS#12 bundle rather than PEM text.
pub fn looks_like(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x30) && !bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// The key and its chain (leaf first) from the bundle at `path`.
pub(crate) fn open(
    bytes: &[u8],
    path: &Path,
    field: &str,
    passphrase_file: Option<&Path>,
) -> Result<(PrivateKeyDer<'static>, Vec<CertificateDer<'static>>), ConfigError> {
    let passphrase = match passphrase_file {
        Some(pp) => std::fs::read_to_string(pp)
            .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", pp.display())))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        None => String::new(),
    };
    let from = passphrase_file.map_or_else(
        || "an empty passphrase (no passphrase file is set)".to_owned(),
        |pp| format!("the passphrase in {}", pp.display()),
    );
    open_bytes(bytes, &passphrase).map_err(|e| {
        ConfigError::new(
            field,
            format!("the PKCS#12 bundle {} with {from}: {e}", path.display()),
        )
    })
}

/// The key and its chain (leaf first) from a bundle's bytes; the error says what failed.
pub fn open_bytes(
    bytes: &[u8],
    passphrase: &str,
) -> Result<(PrivateKeyDer<'static>, Vec<CertificateDer<'static>>), String> {
    let store =
        KeyStore::from_pkcs12(bytes, passphrase, Pkcs12ImportPolicy::Strict).map_err(|e| {
            format!("cannot be opened: {e} (a wrong passphrase fails the integrity check)")
        })?;
    let (_, chain) = store
        .private_key_chain()
        .ok_or("holds no private key with its certificate")?;
    let key = PrivateKeyDer::Pkcs8(chain.key().as_der().to_vec().into());
    let certs = chain
        .certs()
        .iter()
        .map(|c| CertificateDer::from(c.as_der().to_vec()))
        .collect();
    Ok((key, certs))
}
