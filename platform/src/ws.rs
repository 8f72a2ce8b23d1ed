//! The AlwaysOn listener: TLS accept, websocket upgrade at `/Thingworx/WS`, and the per-session
//! loop (AUTH first, then messages in, replies and platform requests out).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeway_protocol::{split, Auth, Message, Reassembler, ReassemblerConfig, StatusCode};
use edgeway_runtime::tls::reload::ReloadingServerConfig;
use edgeway_runtime::ws::{self as socket, CloseCode, End, Frame, OpCode, Socket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use yawc::{HttpStream, UpgradeFut, WebSocket, WebSocketError};

use crate::config::WebsocketConfig;
use crate::edge::{self, EdgeContext};
use crate::session::{EdgeSession, Identity, Outbound, TunnelError};

/// The websocket path edges connect to.
pub const WS_PATH: &str = "/Thingworx/WS";

/// Close code for policy violations (failed or missing AUTH).
pub const CLOSE_POLICY: u16 = 1008;
/// Close code for text frames (binary only).
pub const CLOSE_UNSUPPORTED: u16 = 1003;
/// Close code when the platform stops or drops an idle session.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Messages queued per session before senders wait.
const OUTBOUND_QUEUE: usize = 256;
/// How long a finished session's writer may take to flush its close.
const WRITER_GRACE: Duration = Duration::from_secs(2);
/// How long shutdown waits for sessions to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Longest a write to an edge may wait for the edge to read: a peer that stops reading is
/// dropped after this, instead of holding its session and buffers (nginx's `send_timeout`
/// default is 60 s; an edge that reads nothing for 30 s is gone for the tunnel anyway).
const WRITE_STALL: Duration = Duration::from_secs(30);
/// Largest message (and all partial messages together) a connection may send before AUTH: an
/// AUTH carries an app key or a user name and password, a few hundred bytes.
const PRE_AUTH_MESSAGE: usize = 64 << 10;
/// Longest a refused connection's close handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest upgrade request head: a browser's is ~500 bytes, an SDK's less. hyper's floor.
const MAX_UPGRADE_HEAD: usize = 8 << 10;

/// A write that may stall: `None` when it did not finish within `limit`.
async fn bounded<T>(write: impl std::future::Future<Output = T>, limit: Duration) -> Option<T> {
    tokio::time::timeout(limit, write).await.ok()
}

/// The TLS side of the listener: the reloading config, restricted to HTTP/1.1 ALPN.
pub struct TlsSource {
    reloading: Arc<ReloadingServerConfig>,
    cache: Mutex<Option<(Arc<rustls::ServerConfig>, Arc<rustls::ServerConfig>)>>,
}

impl TlsSource {
    /// Wraps the reloading config.
    pub fn new(reloading: Arc<ReloadingServerConfig>) -> Self {
        Self {
            reloading,
            cache: Mutex::new(None),
        }
    }

    /// The config for the next handshake. The sidecar's builder offers `h2` too; a websocket
    /// upgrade needs HTTP/1.1, so the ALPN list is narrowed (once per reloaded config).
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        let base = self.reloading.current();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((src, patched)) = cache.as_ref() {
            if Arc::ptr_eq(src, &base) {
                return patched.clone();
            }
        }
        let mut cfg = (*base).clone();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let patched = Arc::new(cfg);
        *cache = Some((base, patched.clone()));
        patched
    }
}

/// Listener settings shared by every connection.
pub struct Listener {
    /// Protocol handling and shared state.
    pub ctx: Arc<EdgeContext>,
    /// TLS, or `None` for `plaintext: true`.
    pub tls: Option<TlsSource>,
    /// Websocket limits and liveness.
    pub config: WebsocketConfig,
}

/// Accepts connections until `shutdown` turns true, then closes sessions (1001) and returns.
pub async fn serve(listener: TcpListener, l: Arc<Listener>, mut shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, remote)) => {
                    let l = l.clone();
                    let rx = shutdown.clone();
                    conns.spawn(async move { connection(tcp, remote, l, rx).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.abort_all();
    }
}

async fn connection(
    tcp: TcpStream,
    remote: SocketAddr,
    l: Arc<Listener>,
    shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let deadline = Instant::now() + Duration::from_millis(l.config.handshake_timeout_ms);
    let Some(tls) = &l.tls else {
        upgrade(tcp, remote, None, deadline, &l, shutdown).await;
        return;
    };
    let acceptor = TlsAcceptor::from(tls.current());
    let stream = match tokio::time::timeout_at(deadline.into(), acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            l.ctx.metrics.tls_handshake("error");
            tracing::info!(%remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            l.ctx.metrics.tls_handshake("timeout");
            tracing::info!(%remote, "TLS handshake timed out");
            return;
        }
    };
    l.ctx.metrics.tls_handshake("ok");
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| {
            let id = tls.reloading.peer_identity(c);
            if id.is_none() {
                tracing::warn!(%remote, "verified client certificate names no CN or SAN; ignored");
            }
            id
        });
    upgrade(stream, remote, cert, deadline, &l, shutdown).await;
}

/// The websocket of a session: the upgraded HTTP/1.1 connection.
type Ws = Socket<HttpStream>;
type Sink = SplitSink<Ws, Frame>;
type WsStream = SplitStream<Ws>;
type Body = Full<Bytes>;

/// What an upgrade request is answered with.
enum Answer {
    /// The 101, the upgrade to await, and whether permessage-deflate was agreed.
    Upgrade(hyper::Response<Body>, UpgradeFut, bool),
    /// 404 or 400, then the connection closes.
    Refused(hyper::Response<Body>),
}

/// Answers the upgrade request: 404 for any path but [`WS_PATH`], 400 for a request that is
/// no websocket upgrade; otherwise the 101 (with permessage-deflate when offered and enabled),
/// the upgrade to await and whether compression was agreed.
fn answer(req: &mut hyper::Request<Incoming>, options: &yawc::Options) -> Answer {
    let refuse = |status: http::StatusCode, why: String| {
        let mut r = hyper::Response::new(Full::new(Bytes::from(why)));
        *r.status_mut() = status;
        // One request per connection: hyper closes after a response saying so.
        r.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        r
    };
    if req.uri().path() != WS_PATH {
        let why = format!("no websocket endpoint at {}", req.uri().path());
        return Answer::Refused(refuse(http::StatusCode::NOT_FOUND, why));
    }
    match WebSocket::upgrade_with_options(&mut *req, options.clone()) {
        Ok((resp, fut)) => {
            let compressed = resp
                .headers()
                .get(http::header::SEC_WEBSOCKET_EXTENSIONS)
                .and_then(|v| v.to_str().ok())
                .is_some_and(socket::names_deflate);
            Answer::Upgrade(resp.map(|_| Full::new(Bytes::new())), fut, compressed)
        }
        Err(e) => Answer::Refused(refuse(
            http::StatusCode::BAD_REQUEST,
            format!("not a websocket upgrade: {e}"),
        )),
    }
}

/// The HTTP/1.1 upgrade to a websocket, by `deadline`: one request per connection, its head
/// bounded, then the session.
async fn upgrade<S>(
    stream: S,
    remote: SocketAddr,
    cert: Option<String>,
    deadline: Instant,
    l: &Listener,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let options = socket::options(
        End::Server,
        l.config.max_message_bytes + 64,
        l.config.compression,
    );
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Mutex::new(Some(tx));
    let service = service_fn(move |mut req: hyper::Request<Incoming>| {
        let resp = match answer(&mut req, &options) {
            Answer::Upgrade(resp, fut, compressed) => {
                if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = tx.send((fut, compressed));
                }
                resp
            }
            Answer::Refused(refusal) => {
                tracing::info!(%remote, status = %refusal.status(), path = req.uri().path(), "websocket upgrade refused");
                refusal
            }
        };
        async move { Ok::<_, std::convert::Infallible>(resp) }
    });
    // Not `keep_alive(false)`: hyper would then answer the 101 with `Connection: close`.
    let conn = http1::Builder::new()
        .max_buf_size(MAX_UPGRADE_HEAD)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let handshake = async {
        let (served, agreed) = tokio::join!(conn, rx);
        if let Err(e) = served {
            tracing::info!(%remote, error = %e, "websocket upgrade failed");
        }
        let (fut, compressed) = agreed.ok()?;
        match fut.await {
            Ok(ws) => Some((ws, compressed)),
            Err(e) => {
                tracing::info!(%remote, error = %e, "websocket upgrade failed");
                None
            }
        }
    };
    let (ws, compressed) = match tokio::time::timeout_at(deadline.into(), handshake).await {
        Ok(Some(ws)) => ws,
        Ok(None) => return,
        Err(_) => {
            tracing::info!(%remote, "websocket upgrade timed out");
            return;
        }
    };
    run_session(Socket::new(ws), compressed, remote, cert, l, shutdown).await;
}

fn close_frame(code: u16, reason: &str) -> Frame {
    Frame::close(CloseCode::from(code), reason)
}

/// Sends one AlwaysOn message, split into chunks when it exceeds `chunk`.
async fn send_message(sink: &mut Sink, msg: &Message, chunk: usize) -> Result<(), WebSocketError> {
    let write = async {
        feed_message(sink, msg, chunk).await?;
        sink.flush().await
    };
    bounded(write, WRITE_STALL).await.unwrap_or_else(|| {
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "edge does not read").into())
    })
}

/// Queues one AlwaysOn message's frames without flushing, so a burst of replies shares one
/// TLS record and one `write(2)`.
async fn feed_message(sink: &mut Sink, msg: &Message, chunk: usize) -> Result<(), WebSocketError> {
    let frames = match split(msg, chunk) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, kind = msg.kind(), "cannot encode message; dropped");
            return Ok(());
        }
    };
    for f in frames {
        sink.feed(Frame::binary(f)).await?;
    }
    Ok(())
}

/// Refuses a connection before a session exists: UNAUTHORIZED, then close 1008.
async fn refuse(sink: &mut Sink, reply: Option<Message>, reason: &str, chunk: usize) {
    if let Some(r) = reply {
        let _ = send_message(sink, &r, chunk).await;
    }
    // A peer that does not read must not hold the connection open past its refusal.
    let _ = bounded(sink.send(close_frame(CLOSE_POLICY, reason)), CLOSE_TIMEOUT).await;
    let _ = bounded(sink.close(), CLOSE_TIMEOUT).await;
}

async fn writer(mut sink: Sink, mut rx: mpsc::Receiver<Outbound>, chunk: usize) {
    'session: while let Some(first) = rx.recv().await {
        // Everything already queued goes out with one flush: one reply per update message
        // flushed alone costs a TLS record and a syscall each, the tunnel's main cost.
        let mut next = Some(first);
        let mut burst = 0;
        while let Some(o) = next.take() {
            let r = match o {
                Outbound::Message(m) => {
                    bounded(feed_message(&mut sink, &m, chunk), WRITE_STALL).await
                }
                Outbound::Ping => {
                    let payload = Bytes::copy_from_slice(&edgeway_protocol::ping_payload());
                    bounded(sink.feed(Frame::ping(payload)), WRITE_STALL).await
                }
                Outbound::Close(code, reason) => {
                    let _ = bounded(sink.send(close_frame(code, &reason)), CLOSE_TIMEOUT).await;
                    break 'session;
                }
            };
            if !matches!(r, Some(Ok(()))) {
                break 'session;
            }
            burst += 1;
            // Bounded, so a busy session still flushes regularly.
            if burst < OUTBOUND_QUEUE {
                next = rx.try_recv().ok();
            }
        }
        if !matches!(bounded(sink.flush(), WRITE_STALL).await, Some(Ok(()))) {
            break;
        }
    }
    let _ = bounded(sink.close(), CLOSE_TIMEOUT).await;
}

/// What ended the AUTH phase without a session.
enum First {
    Message(Message),
    Gone,
}

async fn run_session(
    ws: Ws,
    compressed: bool,
    remote: SocketAddr,
    cert: Option<String>,
    l: &Listener,
    shutdown: watch::Receiver<bool>,
) {
    let ctx = &l.ctx;
    let chunk = l.config.chunk_size;
    let (mut sink, mut stream) = ws.split();
    // Before AUTH a connection may hold one partial message of an AUTH's size; 64 partials of
    // 1 MiB each were accepted from unauthenticated peers.
    let mut before_auth = Reassembler::new(ReassemblerConfig {
        max_message_size: PRE_AUTH_MESSAGE,
        max_pending: 1,
        max_pending_bytes: PRE_AUTH_MESSAGE,
        ..ReassemblerConfig::default()
    });
    let Some((auth, identity)) =
        authenticate(&mut sink, &mut stream, &mut before_auth, remote, cert, l).await
    else {
        return;
    };
    let mut reassembler = Reassembler::new(ReassemblerConfig {
        max_message_size: l.config.max_message_bytes,
        max_pending_bytes: 2 * l.config.max_message_bytes,
        ..ReassemblerConfig::default()
    });

    let id = ctx.new_session_id();
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let session = Arc::new(EdgeSession::new(
        id,
        identity,
        remote,
        compressed,
        tx.clone(),
        ctx.metrics.clone(),
    ));
    let mut header = auth.header;
    header.session_id = id;
    if send_message(
        &mut sink,
        &Message::response(header, StatusCode::SUCCESS, None),
        chunk,
    )
    .await
    .is_err()
    {
        return;
    }
    ctx.registry.add_session(session.clone());
    ctx.metrics.session_opened();
    tracing::info!(session = id, principal = %session.principal, %remote, "edge authenticated");
    let writer = tokio::spawn(writer(sink, rx, chunk));

    let why = serve_session(&mut stream, &mut reassembler, &session, &tx, l, shutdown).await;

    ctx.registry.remove_session(id);
    session.shut();
    ctx.metrics.session_closed();
    tracing::info!(session = id, principal = %session.principal, reason = %why, "session ended");
    // Let the writer flush a queued close; then make sure it is gone.
    let _ = tx.try_send(Outbound::Close(1000, String::new()));
    drop(tx);
    drop(session);
    let abort = writer.abort_handle();
    if tokio::time::timeout(WRITER_GRACE, writer).await.is_err() {
        abort.abort();
    }
}

/// Reads the first message within the auth timeout and checks it is an acceptable AUTH. On
/// refusal it answers, closes, counts the reason and returns `None`.
async fn authenticate(
    sink: &mut Sink,
    stream: &mut WsStream,
    reassembler: &mut Reassembler,
    remote: SocketAddr,
    cert: Option<String>,
    l: &Listener,
) -> Option<(Auth, Identity)> {
    let ctx = &l.ctx;
    let chunk = l.config.chunk_size;
    // AUTH must come first, within the auth timeout.
    let auth_deadline = Instant::now() + Duration::from_millis(ctx.auth.timeout_ms);
    let first = loop {
        // Checked here too: `timeout_at` polls the stream first, so a peer that never stops
        // sending (pings, say) would never see the deadline.
        let next = if Instant::now() >= auth_deadline {
            Err(())
        } else {
            tokio::time::timeout_at(auth_deadline.into(), stream.next())
                .await
                .map_err(drop)
        };
        let frame = match next {
            Err(_) => {
                ctx.metrics.auth_failure("timeout");
                tracing::warn!(%remote, "no AUTH in time; closing");
                refuse(sink, None, "no AUTH in time", chunk).await;
                return None;
            }
            Ok(None | Some(Err(_))) => break First::Gone,
            Ok(Some(Ok(f))) => f,
        };
        match frame.opcode() {
            OpCode::Binary => match reassembler.push(frame.payload(), Instant::now()) {
                Ok(Some(m)) => break First::Message(m),
                Ok(None) => continue,
                Err(e) => {
                    ctx.metrics.auth_failure("malformed");
                    tracing::warn!(%remote, error = %e, "undecodable message before AUTH; closing");
                    refuse(sink, None, "malformed message", chunk).await;
                    return None;
                }
            },
            OpCode::Text => {
                ctx.metrics.auth_failure("malformed");
                let _ = sink
                    .send(close_frame(CLOSE_UNSUPPORTED, "binary messages only"))
                    .await;
                return None;
            }
            OpCode::Close => break First::Gone,
            _ => continue,
        }
    };
    let msg = match first {
        First::Gone => return None,
        First::Message(m) => m,
    };
    let auth = match msg {
        Message::Auth(a) => a,
        other => {
            ctx.metrics.auth_failure("notAuthFirst");
            tracing::warn!(%remote, kind = other.kind(), "message before AUTH; closing");
            let reply = edge::reply(
                *other.header(),
                StatusCode::UNAUTHORIZED,
                Some("AUTH must be the first message".to_owned()),
            );
            refuse(sink, Some(reply), "not authenticated", chunk).await;
            return None;
        }
    };
    if ctx.throttle.blocked(remote.ip(), Instant::now()) {
        ctx.metrics.auth_failure("throttled");
        tracing::warn!(%remote, "AUTH refused: too many failed attempts from this address");
        let reason = "too many failed AUTH attempts from this address; retry later";
        let reply = edge::reply(
            auth.header,
            StatusCode::UNAUTHORIZED,
            Some(reason.to_owned()),
        );
        refuse(sink, Some(reply), reason, chunk).await;
        return None;
    }
    match ctx.authenticate(&auth, cert.as_deref()) {
        Ok(identity) => Some((auth, identity)),
        Err(r) => {
            ctx.throttle.failed(remote.ip(), Instant::now());
            ctx.metrics.auth_failure(r.label);
            tracing::warn!(%remote, reason = r.reason, "AUTH refused");
            let reply = edge::reply(
                auth.header,
                StatusCode::UNAUTHORIZED,
                Some(r.reason.to_owned()),
            );
            refuse(sink, Some(reply), r.reason, chunk).await;
            None
        }
    }
}

/// The authenticated session: handles messages, pings and the idle deadline until the
/// connection ends; returns why it ended.
async fn serve_session(
    stream: &mut WsStream,
    reassembler: &mut Reassembler,
    session: &Arc<EdgeSession>,
    tx: &mpsc::Sender<Outbound>,
    l: &Listener,
    mut shutdown: watch::Receiver<bool>,
) -> String {
    let ctx = &l.ctx;
    let id = session.id;
    let ping_every = Duration::from_millis(l.config.ping_interval_ms);
    let idle = Duration::from_millis(l.config.idle_timeout_ms);
    let tick_every = if !ping_every.is_zero() {
        Some(ping_every)
    } else if !idle.is_zero() {
        Some(idle / 2)
    } else {
        None
    };
    let mut ticker = tokio::time::interval(tick_every.unwrap_or(Duration::from_secs(3600)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut last_seen = Instant::now();

    loop {
        tokio::select! {
            frame = stream.next() => {
                let frame = match frame {
                    None => break "connection closed".to_owned(),
                    Some(Err(e)) => break format!("websocket error: {e}"),
                    Some(Ok(f)) => f,
                };
                last_seen = Instant::now();
                match frame.opcode() {
                    OpCode::Binary => match reassembler.push(frame.payload(), last_seen) {
                        Ok(Some(m)) => {
                            let reply = match edge::handle(ctx, session, m) {
                                edge::Step::Nothing => None,
                                edge::Step::Reply(r) => Some(r),
                                edge::Step::Bound(r, things) => {
                                    // After the answer is queued, so the edge sees it first.
                                    let (c, s) = (ctx.clone(), session.clone());
                                    let sent = tx.send(Outbound::Message(r)).await.is_ok();
                                    tokio::spawn(crate::sync::after_bind(c, s, things));
                                    if !sent {
                                        break "writer ended".to_owned();
                                    }
                                    None
                                }
                                edge::Step::Subscriptions(r) => {
                                    let (c, s) = (ctx.clone(), session.clone());
                                    tokio::spawn(crate::sync::answer_subscriptions(c, s, r));
                                    None
                                }
                            };
                            if let Some(reply) = reply {
                                if tx.send(Outbound::Message(reply)).await.is_err() {
                                    break "writer ended".to_owned();
                                }
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            ctx.metrics.undecodable(e.kind());
                            tracing::warn!(session = id, error = %e, "undecodable message dropped");
                            // A response that does not decode fails its request now (REST 502
                            // with the reason), not at its deadline as a 504.
                            if let Some((code, header)) = Message::peek_header(frame.payload()) {
                                if StatusCode::from_code(code).is_some() {
                                    session.fail(
                                        header.request_id,
                                        TunnelError::Protocol(format!("undecodable response: {e}")),
                                    );
                                }
                            }
                        }
                    },
                    OpCode::Text => {
                        let _ = tx.send(Outbound::Close(CLOSE_UNSUPPORTED, "binary messages only".into())).await;
                        break "text frame".to_owned();
                    }
                    OpCode::Close => break "closed by edge".to_owned(),
                    _ => {}
                }
            }
            _ = ticker.tick(), if tick_every.is_some() => {
                if !idle.is_zero() && last_seen.elapsed() > idle {
                    let _ = tx.try_send(Outbound::Close(CLOSE_GOING_AWAY, "idle".into()));
                    break format!("idle for {} ms", idle.as_millis());
                }
                if !ping_every.is_zero() {
                    let _ = tx.try_send(Outbound::Ping);
                }
            }
            _ = shutdown.changed() => {
                let _ = tx.send(Outbound::Close(CLOSE_GOING_AWAY, "platform shutting down".into())).await;
                break "platform shutting down".to_owned();
            }
        }
    }
}
