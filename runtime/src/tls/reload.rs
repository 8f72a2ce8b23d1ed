//! Hot reload of the server's TLS material.
//!
//! Kubernetes updates a mounted Secret by swapping the `..data` symlink in the volume's directory,
//! so we watch the directories, not the files. Each accepted connection takes the config current at
//! that moment: new handshakes see new material, established connections keep theirs. A bad new
//! file is logged and ignored; the old config stays.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::build_server_config;
use super::TlsConfig;
use crate::config::ConfigError;

/// How long to wait after a file event for the rest of an update to land.
const SETTLE: Duration = Duration::from_millis(200);
/// Safety net for missed events (e.g. inotify watch limits): compare files this often.
const POLL: Duration = Duration::from_secs(60);

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
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                let _ = tx.try_send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch TLS files; polling every {}s", POLL.as_secs());
                None
            }
        };
        if let Some(w) = watcher.as_mut() {
            let mut dirs: Vec<PathBuf> = files(&self.tls)
                .iter()
                .filter_map(|f| f.parent().map(|p| p.to_path_buf()))
                .collect();
            dirs.sort();
            dirs.dedup();
            for dir in dirs {
                if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch TLS directory");
                }
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            let _keep_alive = watcher;
            let mut poll = tokio::time::interval(POLL);
            poll.tick().await;
            loop {
                tokio::select! {
                    ev = rx.recv() => {
                        if ev.is_none() { break; }
                        tokio::time::sleep(SETTLE).await;
                        while rx.try_recv().is_ok() {}
                    }
                    _ = poll.tick() => {}
                    _ = shutdown.changed() => break,
                }
                let this = this.clone();
                let outcome = tokio::task::spawn_blocking(move || {
                    let r = this.reload();
                    (this, r)
                })
                .await;
                let Ok((this, outcome)) = outcome else {
                    continue;
                };
                match outcome {
                    Ok(true) => {
                        this.metrics.reloaded("ok");
                        tracing::info!("TLS material reloaded; new handshakes use it");
                    }
                    Ok(false) => {}
                    Err(e) => {
                        this.metrics.reloaded("error");
                        tracing::error!(error = %e, "new TLS material rejected; keeping the previous");
                    }
                }
            }
        })
    }
}

/// Every file the TLS config depends on.
fn files(tls: &TlsConfig) -> Vec<PathBuf> {
    let mut v = vec![tls.cert.clone(), tls.key.clone()];
    v.extend(tls.client_ca.iter().cloned());
    v.extend(tls.pinned_peers.iter().cloned());
    v
}

/// A cheap content fingerprint, so spurious events do not rebuild anything.
fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for f in files {
        std::fs::read(f).ok().hash(&mut h);
    }
    h.finish()
}
