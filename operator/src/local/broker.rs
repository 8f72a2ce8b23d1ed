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
/// The front's bounds: connections at once (one more is closed at once) and how long a TLS
/// handshake may take (a silent client is dropped after it, freeing its slot).
#[derive(Debug, Clone, Copy)]
struct Limits {
    connections: usize,
    handshake: Duration,
}

const LIMITS: Limits = Limits {
    connections: MAX_CONNECTIONS,
    handshake: Duration::from_secs(10),
};

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
    let front = tokio::spawn(serve(
        listener,
        TlsAcceptor::from(material.config),
        inner,
        LIMITS,
    ));
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
async fn serve(listener: TcpListener, acceptor: TlsAcceptor, inner: SocketAddr, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.connections));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors, most likely: retrying at once would spin a core.
                tracing::warn!(error = %e, "embedded broker: accept failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "embedded broker: too many connections; refused");
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use edgeway_testkit::pki::{client_config, Pki};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Reads until EOF or `within`; whether the peer closed.
    async fn closed(tcp: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(within, tcp.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn the_tls_front_drops_silent_clients_and_refuses_one_too_many() {
        let pki = Pki::new("broker-front");
        // An echo server stands in for the broker behind the front.
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let inner = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = c.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let tls = TlsConfig {
            cert: pki.cert.clone(),
            key: pki.key.clone(),
            key_passphrase_file: None,
            client_auth: ClientAuthMode::Off,
            client_ca: None,
            pinned_peers: Vec::new(),
            pin_mode: Default::default(),
            watch: false,
        };
        let material = build_server_config(&tls, "test").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = listener.local_addr().unwrap();
        let limits = Limits {
            connections: 2,
            handshake: Duration::from_millis(500),
        };
        tokio::spawn(serve(
            listener,
            TlsAcceptor::from(material.config),
            inner,
            limits,
        ));

        // Two clients that never speak hold both slots; a third is closed at once.
        let started = Instant::now();
        let mut silent = [
            TcpStream::connect(front).await.unwrap(),
            TcpStream::connect(front).await.unwrap(),
        ];
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut third = TcpStream::connect(front).await.unwrap();
        assert!(
            closed(&mut third, Duration::from_millis(300)).await,
            "refused"
        );
        // The silent ones are dropped once the handshake time is up, not before.
        for s in &mut silent {
            assert!(closed(s, Duration::from_secs(5)).await, "dropped");
        }
        assert!(
            started.elapsed() >= limits.handshake,
            "{:?}",
            started.elapsed()
        );

        // Their slots are free again: a real TLS client gets through to the broker.
        let connector = tokio_rustls::TlsConnector::from(client_config(pki.ca.roots(), None));
        let tcp = TcpStream::connect(front).await.unwrap();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"CONNECT").await.unwrap();
        let mut back = [0u8; 7];
        tls.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"CONNECT");
    }
}
