//! The embedded MQTT broker of local mode, started when a manifest's gateway speaks MQTT and no
//! `--platform` is given: rumqttd (Bytebeam's broker, the rumqtt project's other half) on a
//! loopback port, behind a TLS front with a certificate from the local CA.
//!
//! rumqttd is built without its own TLS: it would link a second, older rustls. Every TLS
//! connection is terminated here by the same rustls that serves the gateways and the reference
//! platform, then copied to the broker's loopback listener.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edgeway_runtime::tls::{build_server_config, ClientAuthMode, TlsConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::state::State;
use super::{free_or_any, localhost_server};

/// Port the broker's TLS front tries first (MQTT over TLS), any free one when taken.
pub const PORT: u16 = 8883;
/// Connections the front serves at once.
const MAX_CONNECTIONS: usize = 1024;
/// A TLS handshake slower than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The running broker.
pub struct Broker {
    /// Address of the TLS front.
    pub addr: SocketAddr,
    /// Whether clients must log in (some gateway names credentials).
    pub logins: bool,
    front: JoinHandle<()>,
}

impl Broker {
    /// `mqtts://localhost:<port>`.
    pub fn url(&self) -> String {
        format!("mqtts://localhost:{}", self.addr.port())
    }

    /// Stops accepting connections (rumqttd's own threads end with the process).
    pub fn shutdown(self) {
        self.front.abort();
    }
}

/// Starts rumqttd on a loopback port and the TLS front on [`PORT`] (or any free port with
/// `any_port`). `logins` (user → password) are the only accepted logins; none: anonymous.
pub async fn start(
    state: &State,
    logins: BTreeMap<String, String>,
    any_port: bool,
) -> Result<Broker, String> {
    let inner = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("embedded broker: no free loopback port: {e}"))?;
    let config: rumqttd::Config = serde_json::from_value(serde_json::json!({
        "id": 0,
        "router": {
            "max_connections": MAX_CONNECTIONS,
            "max_outgoing_packet_count": 200,
            // A subscriber's backlog: 10 segments of 16 MiB at most.
            "max_segment_size": 16 << 20,
            "max_segment_count": 10,
        },
        "v4": { "local": {
            "name": "local",
            "listen": inner.to_string(),
            "next_connection_delay_ms": 1,
            "connections": {
                "connection_timeout_ms": 10_000,
                "max_payload_size": 256 << 10,
                "max_inflight_count": 200,
                "dynamic_filters": true,
                "auth": (!logins.is_empty()).then_some(&logins),
            },
        }},
    }))
    .map_err(|e| format!("embedded broker config: {e}"))?;
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = rumqttd::Broker::new(config).start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(|e| format!("embedded broker: {e}"))?;
    wait_listening(inner).await?;

    let cert = localhost_server(state, "broker")?;
    let tls = TlsConfig {
        cert: cert.cert,
        key: cert.key,
        key_passphrase_file: None,
        client_auth: ClientAuthMode::Off,
        client_ca: None,
        pinned_peers: Vec::new(),
        pin_mode: Default::default(),
        watch: false,
    };
    let material = build_server_config(&tls, "broker.tls").map_err(|e| e.to_string())?;
    let want = if any_port {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        free_or_any(PORT)
    };
    let listener = TcpListener::bind(want)
        .await
        .map_err(|e| format!("embedded broker: cannot listen on {want}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let front = tokio::spawn(serve(listener, TlsAcceptor::from(material.config), inner));
    Ok(Broker {
        addr,
        logins: !logins.is_empty(),
        front,
    })
}

async fn wait_listening(addr: SocketAddr) -> Result<(), String> {
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("embedded broker did not listen on {addr}"))
}

/// Terminates TLS and copies each connection to the broker.
async fn serve(listener: TcpListener, acceptor: TlsAcceptor, inner: SocketAddr) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "embedded broker: too many connections; refused");
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    return tracing::debug!(%peer, error = %e, "broker TLS handshake failed")
                }
                Err(_) => return tracing::debug!(%peer, "broker TLS handshake timed out"),
            };
            let Ok(mut broker) = TcpStream::connect(inner).await else {
                return tracing::warn!("embedded broker unreachable on {inner}");
            };
            let mut tls = tls;
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
        });
    }
}
