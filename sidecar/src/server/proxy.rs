//! Reverse proxy to the device app on loopback, after authentication.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, AUTHORIZATION, HOST};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use super::authn::ConnIdentity;
use super::response::{error, Body};
use super::xfcc;
use crate::config::UpstreamConfig;

/// Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A forwarder to `127.0.0.1:port`.
pub struct Proxy {
    config: UpstreamConfig,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Proxy {
    /// Builds the pooled client for the upstream.
    pub fn new(config: UpstreamConfig) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { config, client }
    }

    /// Whether a path belongs to the upstream: the prefix, matched on whole segments
    /// (`/app` takes `/app` and `/app/x`, not `/appfoo`). Paths with dot segments or encoded
    /// separators were refused before routing ([`super::suspicious_path`]).
    pub fn matches(&self, path: &str) -> bool {
        let prefix = self.config.prefix.as_str();
        match path.strip_prefix(prefix) {
            Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    /// Forwards an authenticated request; the identity header was already set by the caller.
    pub async fn forward(
        &self,
        mut parts: http::request::Parts,
        body: Bytes,
        remote: SocketAddr,
        conn: &ConnIdentity,
    ) -> Response<Body> {
        let tls = conn.tls;
        let mut body = body;
        let stripped;
        let mut pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        if !self.config.forward_credentials {
            // OAuth parameters are credentials too: off the query, off a form body.
            if let Some((path, query)) = pq.split_once('?') {
                let kept = without_oauth(query);
                if kept.len() != query.len() {
                    stripped = match kept {
                        q if q.is_empty() => path.to_owned(),
                        q => format!("{path}?{q}"),
                    };
                    pq = &stripped;
                }
            }
            let form = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            if form {
                if let Ok(text) = std::str::from_utf8(&body) {
                    let kept = without_oauth(text);
                    if kept.len() != text.len() {
                        body = Bytes::from(kept);
                        parts.headers.remove(http::header::CONTENT_LENGTH);
                    }
                }
            }
        }
        let pq = if self.config.strip_prefix {
            let rest = &pq[self.config.prefix.len().min(pq.len())..];
            if rest.starts_with('/') {
                rest.to_owned()
            } else {
                format!("/{rest}")
            }
        } else {
            pq.to_owned()
        };
        let uri: Uri = match format!("http://127.0.0.1:{}{pq}", self.config.port).parse() {
            Ok(u) => u,
            Err(_) => return error(StatusCode::BAD_REQUEST, "request path cannot be forwarded"),
        };
        for h in HOP_BY_HOP {
            parts.headers.remove(*h);
        }
        if !self.config.forward_credentials {
            parts.headers.remove(AUTHORIZATION);
        }
        if !parts.headers.contains_key(HOST) {
            if let Some(a) = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                parts.headers.insert(HOST, a);
            }
        }
        // The client's own forwarding headers were removed before authentication: the
        // upstream learns the address the sidecar saw, not one a client wrote.
        let xff = HeaderName::from_static("x-forwarded-for");
        if let Ok(v) = HeaderValue::from_str(&remote.ip().to_string()) {
            parts.headers.insert(xff, v);
        }
        parts.headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static(if tls { "https" } else { "http" }),
        );
        if self.config.forward_client_cert {
            let value = conn.cert.as_ref().and_then(xfcc::value);
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                parts.headers.insert(HeaderName::from_static(xfcc::XFCC), v);
            }
        }
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        let req = Request::from_parts(parts, Full::new(body));
        let timeout = Duration::from_millis(self.config.timeout_ms);
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Ok(Ok(resp)) => {
                let (mut parts, body) = resp.into_parts();
                for h in HOP_BY_HOP {
                    parts.headers.remove(*h);
                }
                Response::from_parts(parts, body.boxed())
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, port = self.config.port, "upstream request failed");
                error(StatusCode::BAD_GATEWAY, "upstream unavailable")
            }
            Err(_) => error(StatusCode::GATEWAY_TIMEOUT, "upstream timed out"),
        }
    }
}

/// `a=1&oauth_signature=x&b=2` without its `oauth_*` pairs (RFC 5849 protocol parameters).
fn without_oauth(pairs: &str) -> String {
    pairs
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("oauth_"))
        .collect::<Vec<_>>()
        .join("&")
}
