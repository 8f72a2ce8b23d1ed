//! Test fixtures shared by every Edgeway test suite (a dev-dependency only, never shipped).
//!
//! # Layout
//! - [`pki`]: a throw-away CA, server and client certificates, self-signed (pinned) peers, and
//!   rustls client configs trusting them.
//! - [`client`]: a small HTTP/1.1 client over plain TCP or TLS ([`client::Conn`], [`client::Resp`]).
//! - [`platform`]: the files and config text of a test platform (app keys, server PKI).
//! - [`upstream`]: an upstream application that echoes what it received, for proxy tests.
//! - [`delay`]: a TCP proxy that adds latency each way (this kernel has no `tc netem`).
//! - [`metrics_doc`]: the metric list of `docs/operations.md` and a check of a scrape against it.
//! - here: [`temp_dir`], [`eventually`] and [`poll_until`].
//!
//! Fixtures that belong to one crate (a platform started with a test config, a websocket
//! edge, a kube client) stay in that crate's `tests/common/mod.rs` and build on these.

pub mod client;
pub mod delay;
pub mod metrics_doc;
pub mod pki;
pub mod platform;
pub mod upstream;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A fresh, empty directory under the system temp dir, unique per call and process.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "edgeway-test-{}-{}-{}",
        name,
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `f` every 20 ms until it returns true; panics naming `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll_until(what, timeout, Duration::from_millis(20), f).await
}

/// Polls `f` every `every` until it returns true; panics naming `what` after `timeout`. For
/// checks that cost a server round trip (a kube-apiserver GET), poll less often.
pub async fn poll_until<F, Fut>(what: &str, timeout: Duration, every: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(every).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}
