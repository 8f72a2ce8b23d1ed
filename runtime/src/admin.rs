//! The plain-HTTP admin listener both servers run: `/healthz`, `/readyz` and Prometheus
//! `/metrics` (OpenMetrics text from whatever [`MetricsText`] the server keeps).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Whether the server should receive traffic; flipped off at shutdown so Services drain first.
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    /// Marks ready or not ready.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Current readiness.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The admin listener's limits: probes and scrapers, a few at a time.
pub const LIMITS: crate::http::Limits = crate::http::Limits {
    max_connections: 64,
    header_timeout: Duration::from_secs(10),
};

/// A metrics registry that renders itself as OpenMetrics text.
pub trait MetricsText: Send + Sync + 'static {
    /// The whole exposition.
    fn encode(&self) -> String;
}

/// Serves the admin endpoints until `shutdown` turns true.
pub async fn serve<M: MetricsText>(
    listener: TcpListener,
    metrics: Arc<M>,
    ready: Arc<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = crate::http::Connections::new(LIMITS.max_connections);
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                // Out of descriptors: back off instead of spinning on accept.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some(slot) = connections.admit() else {
            continue; // dropped: closed at once
        };
        let (metrics, ready) = (metrics.clone(), ready.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let svc = service_fn(move |req| {
                let resp = route(&req, metrics.as_ref(), &ready);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = crate::http::builder(&LIMITS)
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn route(
    req: &Request<Incoming>,
    metrics: &dyn MetricsText,
    ready: &Readiness,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "only GET");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        "/readyz" if ready.get() => text(StatusCode::OK, "ready\n".into(), "text/plain"),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready\n".into(),
            "text/plain",
        ),
        "/metrics" => text(
            StatusCode::OK,
            metrics.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        _ => json_error(StatusCode::NOT_FOUND, "not found"),
    }
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The JSON error shape of every Edgeway endpoint: `{"error": "..."}`.
fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message }).to_string();
    text(status, body, "application/json")
}
