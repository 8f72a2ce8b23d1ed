//! Platform test support: starting a platform from the shared test set-up
//! (`edgeway_testkit::platform::Setup`) and a real websocket edge (tokio-tungstenite over
//! tokio-rustls + the AlwaysOn codec). PKI, HTTP and waiting come from `edgeway_testkit`.
// Each test file uses a part of this module.
#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeway_platform::config::PlatformConfig;
use edgeway_platform::Running;
use edgeway_protocol::vtq::{GET_METADATA, NOTIFY_PROPERTY_UPDATE};
use edgeway_protocol::{split, Message, Reassembler, Request, Response, StatusCode};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

pub use edgeway_testkit::platform::{Setup, APP_KEY, APP_KEY_NAME};

/// How long the platform tests wait for something to happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// Starting a platform from a test set-up.
pub trait Start {
    /// Starts a platform from config text.
    async fn start_yaml(&self, yaml: &str) -> Running;
    /// Starts the default app-key platform plus `extra` config.
    async fn start(&self, extra: &str) -> Running;
}

impl Start for Setup {
    async fn start_yaml(&self, yaml: &str) -> Running {
        let config = PlatformConfig::parse(yaml, "test").unwrap();
        edgeway_platform::start(config).await.unwrap()
    }

    async fn start(&self, extra: &str) -> Running {
        self.start_yaml(&self.yaml(extra)).await
    }
}

/// Polls `f` until it returns true or [`WAIT`] runs out.
pub async fn eventually<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    edgeway_testkit::eventually(what, WAIT, f).await
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

    /// The next response; the platform's after-BIND requests met meanwhile are answered as
    /// an edge that cannot describe its things does.
    pub async fn recv_response(&mut self) -> Response {
        loop {
            match self.recv().await {
                Message::Response(r) => return r,
                Message::Request(r) if self.answer_sync(&r).await => {}
                other => panic!("expected a response, got {other:?}"),
            }
        }
    }

    /// The next request other than `GetMetadata` (answered NOT_FOUND).
    pub async fn recv_request(&mut self) -> Request {
        loop {
            match self.recv().await {
                Message::Request(r) if r.characteristic_name == GET_METADATA => {
                    self.answer_sync(&r).await;
                }
                Message::Request(r) => return r,
                other => panic!("expected a request, got {other:?}"),
            }
        }
    }

    /// Answers a request of the platform's after-BIND synchronisation: `GetMetadata` with
    /// NOT_FOUND, `NotifyPropertyUpdate` with SUCCESS. False for any other request.
    pub async fn answer_sync(&mut self, r: &Request) -> bool {
        let status = match r.characteristic_name.as_str() {
            GET_METADATA => StatusCode::NOT_FOUND,
            NOTIFY_PROPERTY_UPDATE => StatusCode::SUCCESS,
            _ => return false,
        };
        self.send(Message::reply_to(r, status, None)).await;
        true
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

    /// BIND, then, when all names were bound, the platform's synchronisation of each as an edge
    /// without metadata sees it: `GetMetadata` (NOT_FOUND), then `NotifyPropertyUpdate`.
    pub async fn bind(&mut self, gateway: Option<(&str, &str)>, names: &[&str]) -> Response {
        let r = self.bind_only(gateway, names).await;
        if r.status.is_success() {
            let mut waiting: Vec<&str> = names.to_vec();
            while !waiting.is_empty() {
                let req = self.recv_request().await;
                assert_eq!(req.characteristic_name, NOTIFY_PROPERTY_UPDATE, "{req:?}");
                waiting.retain(|n| *n != req.entity_name);
                self.answer_sync(&req).await;
            }
        }
        r
    }

    /// BIND alone: the platform's after-BIND requests are left to the caller.
    pub async fn bind_only(&mut self, gateway: Option<(&str, &str)>, names: &[&str]) -> Response {
        let id = self.id();
        self.call(Message::bind(id, gateway, names)).await
    }
}
