//! Reloading mounted files without a restart: TLS material, credential files.
//!
//! Kubernetes updates a mounted Secret by swapping the `..data` symlink in the volume's directory,
//! so the directories are watched, not the files. After an event the update is given
//! [`SETTLE`] to land, then the owner's `reload` runs (off the async workers) and decides by a
//! content [`fingerprint`] whether anything changed. Every [`POLL`] the files are compared anyway,
//! in case an event was missed (inotify watch limits). A reload that fails keeps what was in
//! force and is logged.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::ConfigError;

/// How long to wait after a file event for the rest of an update to land.
pub const SETTLE: Duration = Duration::from_millis(200);
/// Safety net for missed events: compare files this often.
pub const POLL: Duration = Duration::from_secs(60);

/// Something whose files can change under it.
pub trait Reload: Send + Sync + 'static {
    /// What is reloaded, for logs (`TLS material`, `basic users`).
    fn what(&self) -> &'static str;
    /// The files it depends on; their directories are watched.
    fn files(&self) -> Vec<PathBuf>;
    /// Re-reads the files; `Ok(false)` when nothing changed. Blocking.
    fn reload(&self) -> Result<bool, ConfigError>;
    /// Called after each reload that changed something (`ok`) or failed (`error`).
    fn reloaded(&self, result: &'static str);
}

/// A cheap content fingerprint, so spurious events rebuild nothing.
pub fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for f in files {
        std::fs::read(f).ok().hash(&mut h);
    }
    h.finish()
}

/// Watches `target`'s directories and reloads on change, until `shutdown`.
pub fn spawn<R: Reload>(
    target: Arc<R>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let what = target.what();
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = tx.try_send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, what, "cannot watch files; polling every {}s", POLL.as_secs());
            None
        }
    };
    if let Some(w) = watcher.as_mut() {
        let mut dirs: Vec<PathBuf> = target
            .files()
            .iter()
            .filter_map(|f| f.parent().map(|p| p.to_path_buf()))
            .collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, what, "cannot watch directory");
            }
        }
    }
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
            let t = target.clone();
            let Ok(outcome) = tokio::task::spawn_blocking(move || t.reload()).await else {
                continue;
            };
            match outcome {
                Ok(true) => {
                    target.reloaded("ok");
                    tracing::info!(what, "reloaded; new requests use it");
                }
                Ok(false) => {}
                Err(e) => {
                    target.reloaded("error");
                    tracing::error!(error = %e, what, "new files rejected; keeping the previous");
                }
            }
        }
    })
}
