//! The state directory of local mode: the CA and issued certificates, reused across runs and
//! renewed by the same rules the operator applies in a cluster.

use std::path::{Path, PathBuf};

use crate::certs::{decide_ca, decide_leaf, Ca, CaDecision, LeafDecision, Lifetime, Usage};
use crate::crd::KeyAlgorithm;
use crate::resources::NamespaceCa;

/// Ten years, as the operator's namespace CA.
const CA_LIFETIME: i64 = 10 * 365 * 24 * 3600;

/// The local CAs and where their files are: as in a namespace, one root for servers and device
/// trust, another for tunnel client certificates.
pub struct State {
    /// The state directory.
    pub dir: PathBuf,
    /// Signs server and device certificates (`ca.crt`).
    pub ca: Ca,
    /// Signs tunnel client certificates (`tunnel-ca.crt`).
    pub tunnel_ca: Ca,
}

/// What certificate to keep or issue, and where.
pub struct LeafRequest<'a> {
    /// Subdirectory of the state directory.
    pub sub: &'a str,
    /// File stem: `<stem>.crt`, `<stem>.key`.
    pub stem: &'a str,
    /// Subject common name.
    pub common_name: &'a str,
    /// DNS subject alternative names.
    pub names: &'a [String],
    /// Server or client.
    pub usage: Usage,
    /// The CA that signs it.
    pub issuer: NamespaceCa,
    /// Key type.
    pub algorithm: KeyAlgorithm,
    /// Validity and renewal policy.
    pub lifetime: Lifetime,
}

/// Paths of one issued certificate and key.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM key (mode 0600), or the PKCS#12 bundle holding both.
    pub key: PathBuf,
    /// File with the key's passphrase (mode 0600), for an encrypted key or a bundle.
    pub passphrase: Option<PathBuf>,
}

impl State {
    /// Opens the directory, loading the CAs or making them (and rotating them when due).
    pub fn open(dir: &Path, now: i64) -> Result<State, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(State {
            dir: dir.to_path_buf(),
            ca: open_ca(dir, "ca", "Edgeway local CA", now)?,
            tunnel_ca: open_ca(dir, "tunnel-ca", "Edgeway local tunnel CA", now)?,
        })
    }

    /// Path of the CA certificate devices and HTTPS clients trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Path of the tunnel CA certificate (what a platform checking gateways trusts).
    pub fn tunnel_ca_file(&self) -> PathBuf {
        self.dir.join("tunnel-ca.crt")
    }

    fn issuer(&self, which: NamespaceCa) -> &Ca {
        match which {
            NamespaceCa::Gateway => &self.ca,
            NamespaceCa::Tunnel => &self.tunnel_ca,
        }
    }

    /// Issues `stem.crt`/`stem.key` under `sub`, or keeps them when still valid for `names`.
    pub fn leaf(&self, r: LeafRequest<'_>, now: i64) -> Result<CertFiles, String> {
        let LeafRequest {
            sub,
            stem,
            common_name,
            names,
            usage,
            issuer,
            algorithm,
            lifetime,
        } = r;
        let ca = self.issuer(issuer);
        let dir = self.dir.join(sub);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let files = CertFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
            passphrase: None,
        };
        let existing = match (
            std::fs::read_to_string(&files.cert),
            std::fs::read_to_string(&files.key),
        ) {
            (Ok(c), Ok(k)) => Some((c, k)),
            _ => None,
        };
        let decision = decide_leaf(
            existing.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
            ca,
            names,
            usage,
            lifetime,
            now,
        );
        if let LeafDecision::Issue(why) = decision {
            let issued = ca
                .issue(common_name, names, usage, algorithm, now, lifetime.duration)
                .map_err(|e| e.to_string())?;
            write(&files.key, &issued.key_pem, true)?;
            write(&files.cert, &issued.cert_pem, false)?;
            tracing::info!(cert = %files.cert.display(), reason = why, "certificate issued");
        }
        Ok(files)
    }
}

/// Loads `<stem>.crt`/`<stem>.key`, or makes a CA there when missing, unusable or due.
fn open_ca(dir: &Path, stem: &str, common_name: &str, now: i64) -> Result<Ca, String> {
    let (cert, key) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    let existing = match (
        std::fs::read_to_string(&cert),
        std::fs::read_to_string(&key),
    ) {
        (Ok(c), Ok(k)) => Ca::load(&c, &k).ok(),
        _ => None,
    };
    match existing {
        Some(ca) if matches!(decide_ca(&ca, now), CaDecision::Keep { .. }) => Ok(ca),
        _ => {
            let ca = Ca::generate(common_name, now, CA_LIFETIME).map_err(|e| e.to_string())?;
            write(&cert, &ca.cert_pem, false)?;
            write(&key, &ca.key_pem, true)?;
            Ok(ca)
        }
    }
}

/// Writes a file; secrets get mode 0600.
pub fn write(path: &Path, text: impl AsRef<[u8]>, secret: bool) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
