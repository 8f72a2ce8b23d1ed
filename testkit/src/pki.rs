//! A test PKI made with rcgen: a CA, leaves for localhost / 127.0.0.1, self-signed peers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

/// A certificate with its key, both PEM, and the DER forms.
pub struct Leaf {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
    /// The private key, DER (PKCS#8).
    pub key_der: Vec<u8>,
}

impl Leaf {
    /// Writes `<stem>.crt` and `<stem>.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let c = dir.join(format!("{stem}.crt"));
        let k = dir.join(format!("{stem}.key"));
        std::fs::write(&c, &self.cert_pem).unwrap();
        std::fs::write(&k, &self.key_pem).unwrap();
        (c, k)
    }

    /// The private key for rustls.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::try_from(self.key_der.clone()).unwrap()
    }
}

/// A test certificate authority.
pub struct Ca {
    /// The issuer, to sign more leaves with.
    pub issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
    /// The CA certificate, DER.
    pub der: CertificateDer<'static>,
}

impl Ca {
    /// A new self-signed CA whose CN is `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        let der = issuer.der().clone();
        Ca { issuer, pem, der }
    }

    /// A server certificate for localhost / 127.0.0.1 (ECDSA P-256).
    pub fn server(&self) -> Leaf {
        self.server_with_key(KeyPair::generate().unwrap())
    }

    /// A server certificate for localhost / 127.0.0.1 with a given key.
    pub fn server_with_key(&self, key: KeyPair) -> Leaf {
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.distinguished_name
            .push(DnType::CommonName, "edgeway-test-server");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(p, key)
    }

    /// A server certificate for localhost / 127.0.0.1 and `ips` (a platform in a network
    /// namespace the test made).
    pub fn server_for_ips(&self, ips: &[std::net::IpAddr]) -> Leaf {
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        for ip in ips {
            p.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        p.distinguished_name
            .push(DnType::CommonName, "edgeway-test-server");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(p, KeyPair::generate().unwrap())
    }

    /// A client certificate whose CN is `cn`.
    pub fn client(&self, cn: &str) -> Leaf {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(p, KeyPair::generate().unwrap())
    }

    /// A root store holding only this CA.
    pub fn roots(&self) -> RootCertStore {
        let mut r = RootCertStore::empty();
        r.add(self.der.clone()).unwrap();
        r
    }

    fn sign(&self, p: CertificateParams, key: KeyPair) -> Leaf {
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

/// A self-signed certificate for localhost (the pinned-peer model), optionally reusing a key.
pub fn self_signed(cn: &str, key: Option<KeyPair>) -> Leaf {
    let key = key.unwrap_or_else(|| KeyPair::generate().unwrap());
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    let cert = p.self_signed(&key).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

/// A rustls client config (TLS 1.2 and 1.3) trusting `roots`, presenting `cert` if given.
pub fn client_config(roots: RootCertStore, cert: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    client_config_with(roots, cert, rustls::ALL_VERSIONS)
}

/// [`client_config`] limited to the given TLS versions.
pub fn client_config_with(
    roots: RootCertStore,
    cert: Option<&Leaf>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match cert {
        Some(c) => b
            .with_client_auth_cert(vec![c.der.clone()], c.key())
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    Arc::new(cfg)
}

/// Server TLS files from a fresh CA, written into a fresh temp dir.
pub struct Pki {
    /// The CA that issued the server certificate.
    pub ca: Ca,
    /// The directory holding the files.
    pub dir: PathBuf,
    /// `server.crt`.
    pub cert: PathBuf,
    /// `server.key`.
    pub key: PathBuf,
    /// `ca.crt`.
    pub ca_file: PathBuf,
}

impl Pki {
    /// A CA, a server certificate and the three files, in `temp_dir(name)`.
    pub fn new(name: &str) -> Pki {
        let ca = Ca::new("Edgeway Test CA");
        let dir = crate::temp_dir(name);
        let (cert, key) = ca.server().write(&dir, "server");
        let ca_file = dir.join("ca.crt");
        std::fs::write(&ca_file, &ca.pem).unwrap();
        Pki {
            ca,
            dir,
            cert,
            key,
            ca_file,
        }
    }
}
