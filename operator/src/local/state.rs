//! The state directory of local mode: the CA and issued certificates, reused across runs and
//! renewed by the same rules the operator applies in a cluster.

use std::path::{Path, PathBuf};

use crate::certs::{decide_ca, decide_leaf, Ca, CaDecision, LeafDecision, Lifetime, Usage};
use crate::crd::KeyAlgorithm;

/// Ten years, as the operator's namespace CA.
const CA_LIFETIME: i64 = 10 * 365 * 24 * 3600;

/// The local CA and where its files are.
pub struct State {
    /// The state directory.
    pub dir: PathBuf,
    /// The CA every local certificate chains to.
    pub ca: Ca,
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
    /// PEM key (mode 0600).
    pub key: PathBuf,
}

impl State {
    /// Opens the directory, loading the CA or making one (and rotating it when due).
    pub fn open(dir: &Path, now: i64) -> Result<State, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        let existing = match (
            std::fs::read_to_string(&cert),
            std::fs::read_to_string(&key),
        ) {
            (Ok(c), Ok(k)) => Ca::load(&c, &k).ok(),
            _ => None,
        };
        let ca = match existing {
            Some(ca) if matches!(decide_ca(&ca, now), CaDecision::Keep { .. }) => ca,
            _ => {
                let ca = Ca::generate("Edgeway local CA", now, CA_LIFETIME)
                    .map_err(|e| e.to_string())?;
                write(&cert, &ca.cert_pem, false)?;
                write(&key, &ca.key_pem, true)?;
                ca
            }
        };
        Ok(State {
            dir: dir.to_path_buf(),
            ca,
        })
    }

    /// Path of the CA certificate (the trust bundle for clients and gateways).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Issues `stem.crt`/`stem.key` under `sub`, or keeps them when still valid for `names`.
    pub fn leaf(&self, r: LeafRequest<'_>, now: i64) -> Result<CertFiles, String> {
        let LeafRequest {
            sub,
            stem,
            common_name,
            names,
            usage,
            algorithm,
            lifetime,
        } = r;
        let dir = self.dir.join(sub);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let files = CertFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
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
            &self.ca,
            names,
            usage,
            lifetime,
            now,
        );
        if let LeafDecision::Issue(why) = decision {
            let issued = self
                .ca
                .issue(common_name, names, usage, algorithm, now, lifetime.duration)
                .map_err(|e| e.to_string())?;
            write(&files.key, &issued.key_pem, true)?;
            write(&files.cert, &issued.cert_pem, false)?;
            tracing::info!(cert = %files.cert.display(), reason = why, "certificate issued");
        }
        Ok(files)
    }
}

/// Writes a file; secrets get mode 0600.
pub fn write(path: &Path, text: &str, secret: bool) -> Result<(), String> {
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
