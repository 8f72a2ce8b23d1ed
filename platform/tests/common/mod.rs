//! Test support: a PKI made with rcgen, a platform started on 127.0.0.1, a real websocket edge
//! (tokio-tungstenite over tokio-rustls + the AlwaysOn codec) and a small HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeway_platform::config::PlatformConfig;
use edgeway_platform::Running;
use edgeway_sidecar::protocol::{split, Message, Reassembler, Request, Response};
use futures_util::{SinkExt, StreamExt};
use http::{Request as HttpRequest, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::RootCertStore;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

pub const APP_KEY: &str = "d0a1e2f3-4455-6677-8899-aabbccddeeff";
pub const APP_KEY_NAME: &str = "plant-a";
pub const WAIT: Duration = Duration::from_secs(5);

/// A fresh directory under the system temp dir, unique per test.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "edgeway-platform-test-{}-{}-{}",
        name,
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A certificate with its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
}

impl Leaf {
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let c = dir.join(format!("{stem}.crt"));
        let k = dir.join(format!("{stem}.key"));
        std::fs::write(&c, &self.cert_pem).unwrap();
        std::fs::write(&k, &self.key_pem).unwrap();
        (c, k)
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::try_from(self.key_der.clone()).unwrap()
    }
}

/// A test certificate authority.
pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
    pub pem: String,
    pub der: CertificateDer<'static>,
}

fn leaf(p: CertificateParams, key: KeyPair, issuer: &CertifiedIssuer<'static, KeyPair>) -> Leaf {
    let cert = p.signed_by(&key, issuer).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        let der = issuer.der().clone();
        Ca { issuer, pem, der }
    }

    /// A server certificate for localhost / 127.0.0.1.
    pub fn server(&self) -> Leaf {
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.distinguished_name
            .push(DnType::CommonName, "edgeway-test-platform");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf(p, KeyPair::generate().unwrap(), &self.issuer)
    }

    /// A client certificate whose CN is `cn`.
    pub fn client(&self, cn: &str) -> Leaf {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaf(p, KeyPair::generate().unwrap(), &self.issuer)
    }

    pub fn roots(&self) -> RootCertStore {
        let mut r = RootCertStore::empty();
        r.add(self.der.clone()).unwrap();
        r
    }
}

/// A self-signed certificate (the pinned-peer model).
pub fn self_signed(cn: &str) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    let cert = p.self_signed(&key).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

/// A rustls client config trusting `roots`, presenting `cert` if given.
pub fn client_config(roots: RootCertStore, cert: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match cert {
        Some(c) => b
            .with_client_auth_cert(vec![c.der.clone()], c.key())
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    Arc::new(cfg)
}

/// Server PKI, keys file and config text for one platform.
pub struct Setup {
    pub ca: Ca,
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub keys_file: PathBuf,
}

impl Setup {
    pub fn new(name: &str) -> Setup {
        let ca = Ca::new("Edgeway Platform Test CA");
        let dir = temp_dir(name);
        let (cert, key) = ca.server().write(&dir, "server");
        let keys_file = dir.join("app-keys");
        std::fs::write(
            &keys_file,
            format!("# test keys\n{APP_KEY_NAME}:{APP_KEY}\nother-key-without-name\n"),
        )
        .unwrap();
        Setup {
            ca,
            dir,
            cert,
            key,
            keys_file,
        }
    }

    /// Config YAML for app-key auth on loopback with ephemeral ports, plus `extra` top-level lines.
    pub fn yaml(&self, extra: &str) -> String {
        format!(
            "listen: 127.0.0.1:0\n\
             tls:\n  cert: {}\n  key: {}\n  clientAuth: off\n  watch: false\n\
             auth:\n  appKeysFile: {}\n\
             rest:\n  listen: 127.0.0.1:0\n\
             admin:\n  listen: 127.0.0.1:0\n\
             {extra}",
            self.cert.display(),
            self.key.display(),
            self.keys_file.display()
        )
    }

    /// Starts a platform from config text.
    pub async fn start_yaml(&self, yaml: &str) -> Running {
        let config = PlatformConfig::parse(yaml, "test").unwrap();
        edgeway_platform::start(config).await.unwrap()
    }

    /// Starts the default app-key platform plus `extra` config.
    pub async fn start(&self, extra: &str) -> Running {
        self.start_yaml(&self.yaml(extra)).await
    }

    /// A client config trusting this platform, without a client certificate.
    pub fn client(&self) -> Arc<rustls::ClientConfig> {
        client_config(self.ca.roots(), None)
    }
}

/// A websocket edge speaking AlwaysOn.
pub struct Edge<S> {
    pub ws: WebSocketStream<S>,
    rx: Reassembler,
    pub session_id: u32,
    next_id: u32,
    /// Chunk size for outgoing messages.
    pub chunk: usize,
}

pub type TlsEdge = Edge<tokio_rustls::client::TlsStream<TcpStream>>;

/// Opens TLS and upgrades at `path`; the error text is the TLS or websocket failure.
pub async fn connect_path(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<TlsEdge, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let url = format!("wss://localhost:{}{path}", addr.port());
    let (ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .map_err(|e| format!("websocket: {e}"))?;
    Ok(Edge::new(ws))
}

/// Opens a websocket at `/Thingworx/WS`.
pub async fn connect(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> TlsEdge {
    connect_path(addr, cfg, "/Thingworx/WS").await.unwrap()
}

/// Connects and authenticates with `key`; panics unless SUCCESS.
pub async fn authed(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>, key: &str) -> TlsEdge {
    let mut e = connect(addr, cfg).await;
    let r = e.auth(key).await;
    assert_eq!(r.status.name(), "SUCCESS", "{r:?}");
    e
}

/// What `recv` saw.
#[derive(Debug)]
pub enum Got {
    Msg(Message),
    Closed(Option<CloseFrame>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Edge<S> {
    pub fn new(ws: WebSocketStream<S>) -> Self {
        Edge {
            ws,
            rx: Reassembler::default(),
            session_id: 0,
            next_id: 1,
            chunk: 8192,
        }
    }

    pub fn id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sends a message stamped with this session's id (AUTH keeps its own), split into chunks.
    pub async fn send(&mut self, msg: Message) {
        let msg = match msg {
            m @ Message::Auth(_) => m,
            m if self.session_id != 0 => m.with_session(self.session_id),
            m => m,
        };
        self.send_raw(&msg).await;
    }

    /// Sends exactly as given.
    pub async fn send_raw(&mut self, msg: &Message) {
        for f in split(msg, self.chunk).unwrap() {
            self.ws
                .send(WsMessage::Binary(Bytes::from(f)))
                .await
                .unwrap();
        }
    }

    /// The next AlwaysOn message, or the close.
    pub async fn recv_any(&mut self) -> Got {
        let deadline = Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline.into(), self.ws.next())
                .await
                .expect("nothing received in time");
            match next {
                None => return Got::Closed(None),
                Some(Err(_)) => return Got::Closed(None),
                Some(Ok(WsMessage::Binary(b))) => {
                    if let Some(m) = self.rx.push(&b, Instant::now()).unwrap() {
                        return Got::Msg(m);
                    }
                }
                Some(Ok(WsMessage::Close(f))) => return Got::Closed(f),
                Some(Ok(_)) => {}
            }
        }
    }

    pub async fn recv(&mut self) -> Message {
        match self.recv_any().await {
            Got::Msg(m) => m,
            Got::Closed(f) => panic!("closed: {f:?}"),
        }
    }

    pub async fn recv_response(&mut self) -> Response {
        match self.recv().await {
            Message::Response(r) => r,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    pub async fn recv_request(&mut self) -> Request {
        match self.recv().await {
            Message::Request(r) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// Waits for the close frame (or the end of the stream).
    pub async fn expect_close(&mut self) -> Option<CloseFrame> {
        match self.recv_any().await {
            Got::Closed(f) => f,
            Got::Msg(m) => panic!("expected close, got {m:?}"),
        }
    }

    /// AUTH with an app key; remembers the session id on success.
    pub async fn auth(&mut self, key: &str) -> Response {
        let id = self.id();
        self.send(Message::auth(id, key)).await;
        let r = self.recv_response().await;
        assert_eq!(r.header.request_id, id);
        if r.status.is_success() {
            self.session_id = r.header.session_id;
        }
        r
    }

    /// Sends and waits for the response with the same request id.
    pub async fn call(&mut self, msg: Message) -> Response {
        let id = msg.header().request_id;
        self.send(msg).await;
        let r = self.recv_response().await;
        assert_eq!(
            r.header.request_id, id,
            "response to another request: {r:?}"
        );
        r
    }

    pub async fn bind(&mut self, gateway: Option<(&str, &str)>, names: &[&str]) -> Response {
        let id = self.id();
        self.call(Message::bind(id, gateway, names)).await
    }
}

/// A received HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP/1.1 request on a new plain connection.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut b = HttpRequest::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    http(addr, "GET", path, &[], "").await
}

/// Polls `f` until it returns true or the wait runs out.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}
