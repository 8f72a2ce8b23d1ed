//! Hot reload of the server's TLS material (watched as [`crate::watch`] describes). Each
//! accepted connection takes the config current at that moment: new handshakes see new
//! material, established connections keep theirs. A bad new file is logged and ignored; the
//! old config stays.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use super::build_server_config;
use super::TlsConfig;
use crate::config::ConfigError;
use crate::watch::{self, fingerprint, Reload};

/// Where reload outcomes are reported (the sidecar's and the platform's metrics).
pub trait TlsObserver: Send + Sync {
    /// The served leaf certificate's not-after, Unix seconds.
    fn cert_not_after(&self, unix_secs: i64);
    /// A reload happened with this result (`ok`, `error`).
    fn reloaded(&self, result: &'static str);
}

/// The server config in force, replaced atomically when the files change.
pub struct ReloadingServerConfig {
    tls: TlsConfig,
    prefix: String,
    current: RwLock<Arc<rustls::ServerConfig>>,
    peers: RwLock<Arc<super::peer::PeerNames>>,
    fingerprint: Mutex<u64>,
    metrics: Arc<dyn TlsObserver>,
}

impl ReloadingServerConfig {
    /// Loads the initial material; errors here are fatal start-up errors. `prefix` is the
    /// config path of `tls`, for error messages.
    pub fn new(
        tls: TlsConfig,
        prefix: &str,
        metrics: Arc<dyn TlsObserver>,
    ) -> Result<Arc<Self>, ConfigError> {
        let material = build_server_config(&tls, prefix)?;
        metrics.cert_not_after(material.not_after);
        let fingerprint = fingerprint(&files(&tls));
        Ok(Arc::new(Self {
            tls,
            prefix: prefix.to_owned(),
            current: RwLock::new(material.config),
            peers: RwLock::new(material.peers),
            fingerprint: Mutex::new(fingerprint),
            metrics,
        }))
    }

    /// The config for the next handshake.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The identity of a peer whose certificate the handshake verified (see
    /// [`super::peer::PeerNames`]). A reload between the handshake and this call can only make
    /// it `None`, never another peer's name.
    pub fn peer_identity(
        &self,
        presented: &rustls_pki_types::CertificateDer<'_>,
    ) -> Option<String> {
        let peers = self.peers.read().unwrap_or_else(|p| p.into_inner()).clone();
        peers.identity(presented)
    }

    /// Rebuilds the config if any file changed; `Ok(false)` when nothing changed.
    pub fn reload(&self) -> Result<bool, ConfigError> {
        let fp = fingerprint(&files(&self.tls));
        let mut last = self.fingerprint.lock().unwrap_or_else(|p| p.into_inner());
        if *last == fp {
            return Ok(false);
        }
        let material = build_server_config(&self.tls, &self.prefix)?;
        *last = fp;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = material.config;
        *self.peers.write().unwrap_or_else(|p| p.into_inner()) = material.peers;
        self.metrics.cert_not_after(material.not_after);
        Ok(true)
    }

    /// Watches the directories of every TLS file and reloads on change, until `shutdown`.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        watch::spawn(self.clone(), shutdown)
    }
}

impl Reload for ReloadingServerConfig {
    fn what(&self) -> &'static str {
        "TLS material"
    }

    fn files(&self) -> Vec<PathBuf> {
        files(&self.tls)
    }

    fn reload(&self) -> Result<bool, ConfigError> {
        ReloadingServerConfig::reload(self)
    }

    fn reloaded(&self, result: &'static str) {
        self.metrics.reloaded(result);
    }
}

/// Every file the TLS config depends on.
fn files(tls: &TlsConfig) -> Vec<PathBuf> {
    let mut v = vec![tls.cert.clone(), tls.key.clone()];
    v.extend(tls.client_ca.iter().cloned());
    v.extend(tls.pinned_peers.iter().cloned());
    v
}
