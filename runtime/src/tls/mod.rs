//! TLS for Edgeway's servers: the `tls:` config section, PEM loading with field-named errors, the server config with its client
//! certificate policy (CA bundle or pinned peers), and hot reload of mounted files.

pub mod anchor;
mod config;
pub mod criteria;
pub mod either;
pub mod insecure;
pub mod peer;
pub mod pin;
pub mod pkcs12;
pub mod reload;
mod signatures;

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ConfigError;
pub use config::{ClientAuthMode, PinMode, TlsConfig};
use pin::PinnedVerifier;

/// The one crypto provider the sidecar uses (ring: builds with only a C compiler).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads all PEM certificates from a file; an empty result is an error naming the field.
pub fn load_certs(path: &Path, field: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = read(path, field)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
    let certs = certs.map_err(|e| {
        ConfigError::new(
            field,
            format!("bad PEM certificate in {}: {e}", path.display()),
        )
    })?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            field,
            format!("no PEM certificate in {}", path.display()),
        ));
    }
    for (i, c) in certs.iter().enumerate() {
        x509_parser::parse_x509_certificate(c).map_err(|e| {
            ConfigError::new(
                field,
                format!(
                    "certificate #{} in {} does not parse: {e}",
                    i + 1,
                    path.display()
                ),
            )
        })?;
    }
    Ok(certs)
}

/// Reads the first PEM private key (PKCS#8, PKCS#1 or SEC1) from a file; an encrypted PKCS#8
/// key (`ENCRYPTED PRIVATE KEY`, PBES2 as `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes it) is
/// decrypted with the first line of `passphrase_file` (the EMS `key_passphrase`). A PKCS#12
/// bundle (DER) gives its private key, opened with the same passphrase.
pub fn load_key(
    path: &Path,
    field: &str,
    passphrase_file: Option<&Path>,
) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let bytes = read(path, field)?;
    if pkcs12::looks_like(&bytes) {
        return pkcs12::open(&bytes, path, field, passphrase_file).map(|(key, _)| key);
    }
    if let Some(der) = encrypted_pkcs8(&bytes) {
        return decrypt_key(&der, path, field, passphrase_file);
    }
    if passphrase_file.is_some() {
        return Err(ConfigError::new(
            field,
            format!(
                "{} is not an encrypted PKCS#8 key, but a passphrase file is set",
                path.display()
            ),
        ));
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        // The error text of the PEM parser names the section kind, never key bytes.
        ConfigError::new(
            field,
            format!("no usable PEM private key in {}: {e}", path.display()),
        )
    })
}

/// The DER of the first `ENCRYPTED PRIVATE KEY` PEM section, if any.
fn encrypted_pkcs8(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN ENCRYPTED PRIVATE KEY-----")?;
    let (_, der) = pkcs8::der::pem::decode_vec(&text.as_bytes()[start..]).ok()?;
    Some(der)
}

fn decrypt_key(
    der: &[u8],
    path: &Path,
    field: &str,
    passphrase_file: Option<&Path>,
) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let Some(pp) = passphrase_file else {
        return Err(ConfigError::new(
            field,
            format!(
                "{} is an encrypted key: set the passphrase file beside it",
                path.display()
            ),
        ));
    };
    let text = std::fs::read_to_string(pp)
        .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", pp.display())))?;
    let passphrase = text.lines().next().unwrap_or_default();
    let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der).map_err(|e| {
        ConfigError::new(
            field,
            format!("{}: not an encrypted PKCS#8 key: {e}", path.display()),
        )
    })?;
    let doc = info.decrypt(passphrase.as_bytes()).map_err(|_| {
        // No detail: a padding error would tell a wrong passphrase from a right one.
        ConfigError::new(
            field,
            format!(
                "cannot decrypt {} with the passphrase in {}: wrong passphrase or unsupported cipher",
                path.display(),
                pp.display()
            ),
        )
    })?;
    Ok(PrivateKeyDer::Pkcs8(doc.as_bytes().to_vec().into()))
}

fn read(path: &Path, field: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))
}

/// The certificate chain (leaf first) that goes with a key: PEM certificates, or the chain of
/// a PKCS#12 bundle opened with `passphrase_file` (so `cert` and `key` may name one `.p12`).
pub fn load_cert_chain(
    path: &Path,
    field: &str,
    passphrase_file: Option<&Path>,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = read(path, field)?;
    if !pkcs12::looks_like(&bytes) {
        return load_certs(path, field);
    }
    let (_, certs) = pkcs12::open(&bytes, path, field, passphrase_file)?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            field,
            format!("the PKCS#12 bundle {} holds no certificate", path.display()),
        ));
    }
    Ok(certs)
}

/// A CA bundle as a root store; every certificate must be a usable trust anchor.
pub fn load_roots(path: &Path, field: &str) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in load_certs(path, field)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            ConfigError::new(
                field,
                format!(
                    "certificate #{} in {} is not a usable CA: {e}",
                    i + 1,
                    path.display()
                ),
            )
        })?;
    }
    Ok(roots)
}

/// Material read from disk for one server config, kept to report expiry.
pub struct ServerMaterial {
    /// The rustls config built from the files.
    pub config: Arc<rustls::ServerConfig>,
    /// How verified peers are named under this config.
    pub peers: Arc<peer::PeerNames>,
    /// The leaf certificate's not-after, as Unix seconds.
    pub not_after: i64,
}

/// Builds the server config from the files named in `tls`; errors name the field under
/// `prefix` (`server.tls` in the sidecar's config, `tls` in the platform's).
pub fn build_server_config(tls: &TlsConfig, prefix: &str) -> Result<ServerMaterial, ConfigError> {
    let provider = provider();
    let f = |name: &str| format!("{prefix}.{name}");
    let passphrase = tls.key_passphrase_file.as_deref();
    let certs = load_cert_chain(&tls.cert, &f("cert"), passphrase)?;
    let key = load_key(&tls.key, &f("key"), passphrase)?;
    let not_after = not_after(&certs[0]).unwrap_or(0);

    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ConfigError::new(prefix, e.to_string()))?;
    let mandatory = tls.client_auth == ClientAuthMode::Required;
    let mut peers = peer::PeerNames::from_certificates();
    let builder = match tls.client_auth {
        ClientAuthMode::Off => builder.with_no_client_auth(),
        _ => {
            let mut pins = Vec::new();
            for (i, p) in tls.pinned_peers.iter().enumerate() {
                pins.extend(load_certs(p, &format!("{prefix}.pinnedPeers[{i}]"))?);
            }
            let pinned = (!pins.is_empty())
                .then(|| PinnedVerifier::new(&pins, tls.pin_mode, mandatory, provider.clone()))
                .transpose()
                .map_err(|e| ConfigError::new(f("pinnedPeers"), e.to_string()))?;
            let chain = match tls.client_ca.as_deref() {
                Some(ca) => {
                    let roots = load_roots(ca, &f("clientCa"))?;
                    let mut vb =
                        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                    if !mandatory {
                        vb = vb.allow_unauthenticated();
                    }
                    Some(
                        vb.build()
                            .map_err(|e| ConfigError::new(f("clientCa"), e.to_string()))?,
                    )
                }
                None => None,
            };
            if tls.pin_mode == PinMode::Spki && pinned.is_some() {
                // Beside a CA, a key that is not pinned is named by its (CA-verified) certificate.
                peers = peer::PeerNames::from_pinned_keys(&pins, chain.is_some());
            }
            let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> =
                match (pinned, chain) {
                    (Some(p), None) => Arc::new(p),
                    (None, Some(c)) => c,
                    (Some(p), Some(c)) => {
                        let issuers = pins.iter().filter_map(peer::issuer).collect();
                        Arc::new(either::PinnedOrChain::new(p, c, issuers))
                    }
                    (None, None) => {
                        return Err(ConfigError::new(
                            f("clientCa"),
                            "required when clientAuth is not off (or pinnedPeers)",
                        ))
                    }
                };
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        ConfigError::new(
            f("key"),
            format!("does not match {} or is unsupported: {e}", f("cert")),
        )
    })?;
    // Resumption by stateless tickets (encrypted under a key that rustls rotates every 6 h):
    // rustls' default keeps sessions in a 256-entry memory cache, which a fleet of devices
    // reconnecting cycles through long before any of them comes back. A resumed TLS 1.3
    // handshake still does ECDHE (forward secrecy) but no certificate or signature.
    config.ticketer = rustls::crypto::ring::Ticketer::new()
        .map_err(|e| ConfigError::new(prefix, format!("session tickets: {e}")))?;
    // HTTP/1.0 too: rustls refuses a handshake whose ALPN offer matches none of these, and
    // small device clients offer only `http/1.0` (hyper serves it).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    Ok(ServerMaterial {
        config: Arc::new(config),
        peers: Arc::new(peers),
        not_after,
    })
}

/// A certificate's not-after as Unix seconds, for expiry metrics.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    x509_parser::parse_x509_certificate(cert)
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests;
