//! Asking a gateway pod whether its tunnel is up: its admin port's `edgeway_sidecar_tunnel_up`
//! gauge, whether its last connect failed at the HTTP proxy or at its login
//! (`edgeway_sidecar_tunnel_connect_failing{stage="proxy"|"credentials"}`) and whether its persisted queue
//! cannot be written (`edgeway_sidecar_tunnel_queue_write_failing`), read over plain HTTP from
//! the pod IP (the kubelet probes the same port).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

/// The gauge the sidecar sets to 1 while its platform session is established.
const GAUGE: &str = "edgeway_sidecar_tunnel_up";
/// Set to 1 by the sidecar while its last connect attempt failed at the proxy.
const PROXY_FAILING: &str = "edgeway_sidecar_tunnel_connect_failing{stage=\"proxy\"}";
/// Set to 1 by the sidecar while the platform refuses its login (app key, MQTT password).
const CREDENTIALS_REFUSED: &str = "edgeway_sidecar_tunnel_connect_failing{stage=\"credentials\"}";
/// Set to 1 by the sidecar while its persisted queue cannot be written.
const QUEUE_WRITE_FAILING: &str = "edgeway_sidecar_tunnel_queue_write_failing";

/// What one pod reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Its tunnel is established.
    pub up: bool,
    /// Its last connect attempt could not reach (or was refused by) the HTTP proxy.
    pub proxy_failing: bool,
    /// Its persisted offline queue cannot be written (volume full?).
    pub queue_write_failing: bool,
    /// The platform refused its login.
    pub credentials_refused: bool,
}

/// Most of a pod's metrics page the operator reads: the sidecar's is a few KiB, and a tenant's
/// pod must not make the operator buffer an endless body.
pub const MAX_METRICS_BYTES: usize = 256 << 10;

/// What the pod's metrics say, `None` when it cannot be asked within `timeout`.
pub async fn tunnel_up(addr: SocketAddr, timeout: Duration) -> Option<Probe> {
    tokio::time::timeout(timeout, fetch(addr))
        .await
        .ok()
        .flatten()
}

async fn fetch(addr: SocketAddr) -> Option<Probe> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = http::Request::get("/metrics")
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .ok()?;
    let resp = sender.send_request(req).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = Limited::new(resp.into_body(), MAX_METRICS_BYTES)
        .collect()
        .await
        .ok()?
        .to_bytes();
    parse(&String::from_utf8_lossy(&body))
}

/// Reads the gauges from OpenMetrics text; `None` without `tunnel_up`.
pub fn parse(text: &str) -> Option<Probe> {
    let value = |name: &str| {
        text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    Some(Probe {
        up: value(GAUGE)? >= 1.0,
        proxy_failing: value(PROXY_FAILING).is_some_and(|v| v >= 1.0),
        queue_write_failing: value(QUEUE_WRITE_FAILING).is_some_and(|v| v >= 1.0),
        credentials_refused: value(CREDENTIALS_REFUSED).is_some_and(|v| v >= 1.0),
    })
}

#[cfg(test)]
mod tests;
