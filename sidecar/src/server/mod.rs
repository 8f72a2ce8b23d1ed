//! The device-facing server: TLS termination, then per request the layers
//! strip-identity → authenticate → set-identity → route (things API or upstream proxy).

pub mod authn;
pub mod credentials;
pub mod proxy;
pub mod response;
pub mod things_api;
pub mod xfcc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edgeway_runtime::http::{Connections, Limits};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::auth::authz::{self, Action};
use crate::auth::Identity;
use crate::metrics::Metrics;
use crate::registry::Registry;
use authn::{Authenticator, ConnIdentity, Refusal};
use edgeway_runtime::tls::reload::ReloadingServerConfig;
use proxy::Proxy;
use response::{error, Body};
use things_api::Route;

/// Everything a request needs, built once at start-up.
pub struct App {
    /// Client authentication.
    pub authn: Authenticator,
    /// The things served over REST.
    pub things: Arc<Registry>,
    /// Optional upstream forwarder.
    pub proxy: Option<Proxy>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Header that carries the verified identity.
    pub identity_header: HeaderName,
    /// Header naming how the identity was verified (`auth.methodHeader`).
    pub method_header: HeaderName,
    /// Who may do what on the things API (`auth.authorization`); empty: everyone.
    pub authz: Vec<crate::auth::authz::Rule>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Time to receive an authenticated request's body.
    pub body_timeout: Duration,
}

/// Accepts connections until `shutdown` turns true; TLS unless `tls` is `None` (explicit plaintext).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ReloadingServerConfig>>,
    handshake_timeout: Duration,
    limits: Limits,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Connections::new(limits.max_connections);
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // Over the cap the connection is closed at once, before TLS: idle or trickling
        // sockets must not starve real requests of descriptors.
        let Some(slot) = connections.admit() else {
            app.metrics.connection_refused();
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                Some(tls) => {
                    let acceptor = TlsAcceptor::from(tls.current());
                    let stream =
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                app.metrics.tls_handshake("error");
                                tracing::debug!(%remote, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                app.metrics.tls_handshake("timeout");
                                return;
                            }
                        };
                    app.metrics.tls_handshake("ok");
                    let leaf = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first());
                    let peer = leaf.and_then(|c| tls.peer_identity(c));
                    // Kept only when verified and named, for `x-forwarded-client-cert`.
                    let cert = leaf
                        .filter(|_| peer.is_some())
                        .map(|c| c.clone().into_owned());
                    let conn = ConnIdentity {
                        peer,
                        cert,
                        tls: true,
                    };
                    serve_conn(TokioIo::new(stream), app, conn, remote, limits).await;
                }
                None => {
                    let conn = ConnIdentity {
                        peer: None,
                        cert: None,
                        tls: false,
                    };
                    serve_conn(TokioIo::new(tcp), app, conn, remote, limits).await;
                }
            }
        });
    }
}

async fn serve_conn<I>(io: I, app: Arc<App>, conn: ConnIdentity, remote: SocketAddr, limits: Limits)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let svc = service_fn(move |req| {
        let (app, conn) = (app.clone(), conn.clone());
        async move { Ok::<_, std::convert::Infallible>(handle(&app, &conn, remote, req).await) }
    });
    if let Err(e) = edgeway_runtime::http::builder(&limits)
        .serve_connection(io, svc)
        .await
    {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}

/// One request through the layers; also counts it by route and status.
async fn handle(
    app: &App,
    conn: &ConnIdentity,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let path = req.uri().path().to_owned();
    if let Some(why) = suspicious_path(&path) {
        let resp = error(StatusCode::BAD_REQUEST, why);
        app.metrics
            .request("bad_path", resp.status().as_u16(), started.elapsed());
        return resp;
    }
    let route = Route::parse(&path);
    let route_name = match (&route, &app.proxy) {
        (Some(r), _) => r.name(),
        (None, Some(p)) if p.matches(&path) => "upstream",
        _ => "not_found",
    };
    let resp = handle_inner(app, conn, remote, route, req).await;
    app.metrics
        .request(route_name, resp.status().as_u16(), started.elapsed());
    resp
}

async fn handle_inner(
    app: &App,
    conn: &ConnIdentity,
    remote: SocketAddr,
    route: Option<Route>,
    req: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, incoming) = req.into_parts();
    // A client must never be able to assert an identity: drop every copy before anything else.
    strip_asserted(
        &mut parts.headers,
        &[&app.identity_header, &app.method_header],
    );

    // Authenticate from the headers before reading the body: an unauthenticated client must
    // not make the sidecar hold its body (300 stalled bodies held 340 MB). Only an OAuth form
    // body is part of the signature, so that one is read first, within the same bounds.
    let mut incoming = Some(incoming);
    let mut body = Bytes::new();
    if app.authn.needs_body(&parts) {
        if let Some(i) = incoming.take() {
            body = match read_body(app, i, app.max_body_bytes.min(OAUTH_FORM_MAX)).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
        }
    }
    let identity = match app.authn.authenticate(&parts, &body, conn).await {
        Ok(identity) => identity,
        Err(Refusal::Unauthenticated) => return unauthorized(app),
        Err(Refusal::TimestampRefused { earliest, latest }) => {
            return timestamp_refused(app, earliest, latest)
        }
        Err(Refusal::Busy) => return busy(),
    };
    let Ok(value) = HeaderValue::from_str(&identity.name) else {
        tracing::warn!(
            method = identity.method.as_str(),
            "identity is not a valid header value"
        );
        return unauthorized(app);
    };
    if let Some(i) = incoming.take() {
        body = match read_body(app, i, app.max_body_bytes).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
    }
    tracing::debug!(method = identity.method.as_str(), identity = %identity.name, path = parts.uri.path(), "authenticated");
    parts.headers.insert(app.identity_header.clone(), value);
    parts.headers.insert(
        app.method_header.clone(),
        HeaderValue::from_static(identity.method.as_str()),
    );

    if let Some(route) = route {
        if let Some(denied) = authorize(app, &identity, &route, &parts.method) {
            return denied;
        }
        let headers = parts
            .headers
            .iter()
            .filter(|(k, _)| *k != http::header::AUTHORIZATION)
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let query = parts.uri.query().map(form_pairs).unwrap_or_default();
        return things_api::handle(
            &app.things,
            &app.metrics,
            route,
            &parts.method,
            headers,
            query,
            &body,
        )
        .await;
    }
    match &app.proxy {
        Some(p) if p.matches(parts.uri.path()) => p.forward(parts, body, remote, conn).await,
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no route for {}", parts.uri.path()),
        ),
    }
}

/// Applies `auth.authorization` to a things API request: `None` to go on, or the 403.
fn authorize(
    app: &App,
    identity: &Identity,
    route: &Route,
    method: &http::Method,
) -> Option<Response<Body>> {
    if app.authz.is_empty() {
        return None;
    }
    let write = matches!(*method, http::Method::PUT | http::Method::POST);
    let (action, thing, name) = match route {
        Route::List => (Action::Read, None, None),
        Route::Properties(t) | Route::Metadata(t) => {
            let action = if write { Action::Write } else { Action::Read };
            (action, Some(t.as_str()), None)
        }
        Route::Property(t, p) => {
            let action = if write { Action::Write } else { Action::Read };
            (action, Some(t.as_str()), Some(p.as_str()))
        }
        Route::Service(t, s) => (Action::Invoke, Some(t.as_str()), Some(s.as_str())),
        Route::Event(t, e) => (Action::Fire, Some(t.as_str()), Some(e.as_str())),
    };
    let req = authz::Request {
        action,
        thing,
        template: thing.and_then(|t| app.things.lua().template(t)),
        name,
    };
    match authz::decide(&app.authz, identity, req) {
        authz::Decision::Open => None,
        authz::Decision::Allowed(rule) => {
            app.metrics.authorization("allow");
            tracing::debug!(rule, identity = %identity.name, "allowed");
            None
        }
        authz::Decision::Denied => {
            app.metrics.authorization("deny");
            tracing::info!(
                identity = %identity.name,
                method = identity.method.as_str(),
                action = ?action,
                thing = thing.unwrap_or("-"),
                name = name.unwrap_or("-"),
                "denied by auth.authorization"
            );
            Some(error(
                StatusCode::FORBIDDEN,
                format!(
                    "{} {:?} may not {} this (no rule of auth.authorization allows it)",
                    identity.method.as_str(),
                    identity.name,
                    format!("{action:?}").to_lowercase()
                ),
            ))
        }
    }
}

/// Decodes `a=1&b=two` query pairs (`+` is a space, as browsers send it).
fn form_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// Why a request path is refused before routing: a dot segment (`/app/../admin`, also
/// percent-encoded as `%2e`), or an encoded `/` or `\\` that an upstream could decode into one.
/// Matching prefixes on the raw text let `/app/../admin` and `/app/%2e%2e/admin` reach past
/// the upstream's prefix.
fn suspicious_path(path: &str) -> Option<&'static str> {
    // Byte scans without allocating: this runs on every request (lower-casing the path and
    // decoding each segment into new strings was 1.8 % of a Lua service call's CPU).
    let bytes = path.as_bytes();
    let encoded = |code: &[u8]| bytes.windows(3).any(|w| w.eq_ignore_ascii_case(code));
    if encoded(b"%2f") || encoded(b"%5c") || path.contains('\\') {
        return Some("encoded or backslash path separators are not accepted");
    }
    // `.` or `..`, each dot possibly written `%2e` (either case).
    let dot = |seg: &str| {
        let (mut rest, mut dots) = (seg.as_bytes(), 0);
        while let Some(&first) = rest.first() {
            rest = if first == b'.' {
                &rest[1..]
            } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
                &rest[3..]
            } else {
                return false;
            };
            dots += 1;
        }
        dots == 1 || dots == 2
    };
    if path.split('/').any(dot) {
        return Some("dot segments (. or ..) are not accepted in paths");
    }
    None
}

/// Headers only the sidecar may assert: the identity header and the forwarding headers.
const FORWARDING: [&str; 3] = ["x-forwarded-for", "x-forwarded-proto", xfcc::XFCC];

/// Removes every client copy of a header the sidecar asserts, in any spelling an upstream
/// could read as it: a CGI or WSGI app reads `X_Edgeway_Identity` as `HTTP_X_EDGEWAY_IDENTITY`,
/// exactly as `X-Edgeway-Identity` (nginx drops all underscore headers by default; Envoy has
/// `headers_with_underscores_action`).
fn strip_asserted(headers: &mut http::HeaderMap, ours: &[&HeaderName]) {
    let asserted = |name: &HeaderName| {
        let name = name.as_str().replace('_', "-");
        ours.iter().any(|o| name == o.as_str()) || FORWARDING.contains(&name.as_str())
    };
    let doomed: Vec<HeaderName> = headers.keys().filter(|k| asserted(k)).cloned().collect();
    for name in doomed {
        headers.remove(&name);
    }
}

/// Largest form body an OAuth request may sign: it is read and parsed before the request is
/// authenticated (a 1 MB form with a known consumer key cost ~130 ms of parsing each).
const OAUTH_FORM_MAX: usize = 64 << 10;

/// Reads a request body within `limit` bytes and the body deadline.
async fn read_body(app: &App, incoming: Incoming, limit: usize) -> Result<Bytes, Response<Body>> {
    let read = Limited::new(incoming, limit).collect();
    match tokio::time::timeout(app.body_timeout, read).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(_)) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {limit} bytes or unreadable"),
        )),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within {} ms",
                app.body_timeout.as_millis()
            ),
        )),
    }
}

/// Too many password checks waiting: the client may retry in a second.
fn busy() -> Response<Body> {
    let mut resp = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many authentication attempts in progress; retry",
    );
    resp.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// A 401 for a signature whose timestamp is outside the window: the body and the OAuth
/// challenge (`oauth_problem`, `oauth_acceptable_timestamps`, as the OAuth Problem Reporting
/// extension words them) say which timestamps the server accepts, so the client can fix its
/// clock instead of retrying blindly.
fn timestamp_refused(app: &App, earliest: u64, latest: u64) -> Response<Body> {
    unauthorized_with(
        app,
        format!(
            "oauth_timestamp is outside the window the server accepts now \
             ({earliest}-{latest}, Unix seconds): check the client's clock"
        ),
        Some(format!(
            "oauth_problem=\"timestamp_refused\", \
             oauth_acceptable_timestamps=\"{earliest}-{latest}\""
        )),
    )
}

fn unauthorized(app: &App) -> Response<Body> {
    unauthorized_with(app, "authentication required".into(), None)
}

/// A 401 with every configured scheme's challenge; `oauth_extra` is appended to the OAuth one
/// (RFC 5849 problem reporting) so a client can act on the reason.
fn unauthorized_with(app: &App, message: String, oauth_extra: Option<String>) -> Response<Body> {
    let mut resp = error(StatusCode::UNAUTHORIZED, message);
    for c in app.authn.challenges() {
        let c = match &oauth_extra {
            Some(extra) if c.starts_with("OAuth") => format!("{c}, {extra}"),
            _ => c.to_owned(),
        };
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(http::header::WWW_AUTHENTICATE, v);
        }
    }
    resp
}
