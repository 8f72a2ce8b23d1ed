//! The embedded MQTT broker of local mode, started when a manifest's gateway speaks MQTT and no
//! `--platform` is given: rumqttd (Bytebeam's broker, the rumqtt project's other half) on a
//! loopback port, behind a TLS front with a certificate from the local CA.
//!
//! rumqttd is built without its own TLS: it would link a second, older rustls. Every TLS
//! connection is terminated here by the same rustls that serves the gateways and the reference
//! platform, then copied to the broker's loopback listener for its protocol version: rumqttd has
//! one listener per version, and the front reads the version from the client's CONNECT.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edgeway_runtime::tls::{build_server_config, ClientAuthMode, TlsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("embedded broker: no free loopback port: {e}"))
    };
    let inner = Inner {
        v4: port()?,
        v5: port()?,
    };
    let listener = |name: &str, listen: SocketAddr| {
        serde_json::json!({
            "name": name,
            "listen": listen.to_string(),
            "next_connection_delay_ms": 1,
            "connections": {
                "connection_timeout_ms": 10_000,
                "max_payload_size": 256 << 10,
                "max_inflight_count": 200,
                "dynamic_filters": true,
                "auth": (!logins.is_empty()).then_some(&logins),
            },
        })
    };
    let config: rumqttd::Config = serde_json::from_value(serde_json::json!({
        "id": 0,
        "router": {
            "max_connections": MAX_CONNECTIONS,
            "max_outgoing_packet_count": 200,
            // A subscriber's backlog: 10 segments of 16 MiB at most.
            "max_segment_size": 16 << 20,
            "max_segment_count": 10,
        },
        "v4": { "local": listener("local", inner.v4) },
        "v5": { "local5": listener("local5", inner.v5) },
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
    wait_listening(inner.v4).await?;
    wait_listening(inner.v5).await?;

    let cert = localhost_server(state, "broker")?;
    let material = build_server_config(&server_tls(cert.cert, cert.key), "broker.tls")
        .map_err(|e| e.to_string())?;
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

/// TLS of the front: the certificate, no client certificates asked for.
fn server_tls(cert: std::path::PathBuf, key: std::path::PathBuf) -> TlsConfig {
    TlsConfig {
        cert,
        key,
        key_passphrase_file: None,
        client_auth: ClientAuthMode::Off,
        client_ca: None,
        pinned_peers: Vec::new(),
        pin_mode: Default::default(),
        watch: false,
    }
}

/// The broker's loopback listeners, one per MQTT version.
#[derive(Debug, Clone, Copy)]
struct Inner {
    v4: SocketAddr,
    v5: SocketAddr,
}

/// The protocol level of an MQTT CONNECT's start (fixed header, remaining length, protocol
/// name, level): 4 for 3.1.1, 5 for MQTT 5; `None` while too short, `Some(0)` when it is no
/// CONNECT.
fn connect_level(head: &[u8]) -> Option<u8> {
    let (&first, rest) = head.split_first()?;
    if first != 0x10 {
        return Some(0);
    }
    // Remaining length: 1 to 4 bytes, the high bit says another follows.
    let skip = match rest.iter().take(4).position(|b| b & 0x80 == 0) {
        Some(i) => i + 1,
        None if rest.len() >= 4 => return Some(0),
        None => return None,
    };
    let rest = rest.get(skip..)?;
    // Protocol name "MQTT" (length 4) then the level.
    match rest.get(..7)? {
        [0, 4, b'M', b'Q', b'T', b'T', level] => Some(*level),
        _ => Some(0),
    }
}

/// Terminates TLS and copies each connection to the broker listener of its MQTT version.
async fn serve(listener: TcpListener, acceptor: TlsAcceptor, inner: Inner, limits: Limits) {
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
            // The handshake and the CONNECT's first bytes, within the handshake time.
            let opened = tokio::time::timeout(limits.handshake, async {
                let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
                let mut head = Vec::with_capacity(16);
                let mut buf = [0u8; 16];
                loop {
                    if let Some(level) = connect_level(&head) {
                        return Ok((tls, head, level));
                    }
                    let n = tls.read(&mut buf).await.map_err(|e| e.to_string())?;
                    if n == 0 || head.len() >= 16 {
                        return Err("no MQTT CONNECT".to_owned());
                    }
                    head.extend_from_slice(&buf[..n]);
                }
            });
            let (mut tls, head, level) = match opened.await {
                Ok(Ok(opened)) => opened,
                Ok(Err(e)) => {
                    return tracing::debug!(%peer, error = %e, "broker connection refused")
                }
                Err(_) => {
                    return tracing::debug!(%peer, "broker TLS handshake or CONNECT timed out")
                }
            };
            let to = match level {
                5 => inner.v5,
                4 => inner.v4,
                other => {
                    return tracing::debug!(%peer, level = other, "not MQTT 3.1.1 or 5; closed")
                }
            };
            let Ok(mut broker) = TcpStream::connect(to).await else {
                return tracing::warn!("embedded broker unreachable on {to}");
            };
            if broker.write_all(&head).await.is_err() {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use edgeway_testkit::pki::{client_config, Pki};

    /// Reads until EOF or `within`; whether the peer closed.
    async fn closed(tcp: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(within, tcp.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    /// A stand-in for one of the broker's listeners: says `mark`, then echoes.
    async fn echo(mark: u8) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                tokio::spawn(async move {
                    let _ = c.write_all(&[mark]).await;
                    let (mut r, mut w) = c.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// The start of a CONNECT of protocol `level`.
    fn connect(level: u8) -> Vec<u8> {
        vec![0x10, 0x81, 0x01, 0, 4, b'M', b'Q', b'T', b'T', level, 0x02]
    }

    #[test]
    fn the_version_is_read_from_the_connect() {
        assert_eq!(connect_level(&connect(4)), Some(4));
        assert_eq!(connect_level(&connect(5)), Some(5));
        assert_eq!(connect_level(&connect(5)[..6]), None, "too short yet");
        assert_eq!(connect_level(b"GET / HTTP/1.1"), Some(0));
        assert_eq!(connect_level(&[0x10, 0x80, 0x80, 0x80, 0x80, 0]), Some(0));
    }

    #[tokio::test]
    async fn the_tls_front_drops_silent_clients_refuses_one_too_many_and_routes_by_version() {
        let pki = Pki::new("broker-front");
        let inner = Inner {
            v4: echo(b'4').await,
            v5: echo(b'5').await,
        };
        let material =
            build_server_config(&server_tls(pki.cert.clone(), pki.key.clone()), "test").unwrap();
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

        // Their slots are free again: real TLS clients get through, each to the listener of
        // its MQTT version, the CONNECT's first bytes passed on; anything else is closed.
        let connector = tokio_rustls::TlsConnector::from(client_config(pki.ca.roots(), None));
        for (level, mark) in [(4, b'4'), (5, b'5')] {
            let tcp = TcpStream::connect(front).await.unwrap();
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            tls.write_all(&connect(level)).await.unwrap();
            let mut back = vec![0u8; 1 + connect(level).len()];
            tls.read_exact(&mut back).await.unwrap();
            assert_eq!(back[0], mark);
            assert_eq!(back[1..], connect(level));
        }
        let tcp = TcpStream::connect(front).await.unwrap();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 8];
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(0) | Err(_))), "not MQTT: closed");
    }
}
