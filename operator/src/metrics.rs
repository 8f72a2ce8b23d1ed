//! Operator metrics (Prometheus text) and the `/healthz`, `/readyz`, `/metrics` HTTP endpoint.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Label of reconcile errors.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Short error kind, e.g. `kube` or `certificate`.
    pub reason: String,
}

/// Labels of one certificate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    /// Namespace of the gateway (or CA).
    pub namespace: String,
    /// Gateway name (empty for the namespace CA).
    pub gateway: String,
    /// `ca`, `server` or `client`.
    pub certificate: String,
}

/// Label of API calls the operator did not need to make.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SavedLabels {
    /// `apply` (the same object again, child unchanged) or `get` (answered from memory).
    pub call: &'static str,
}

/// Every metric the operator exports, and the readiness flag.
pub struct Metrics {
    registry: Registry,
    /// Reconciles started.
    pub reconciles: Counter,
    /// Failed reconciles by reason.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile durations, seconds.
    pub duration: Histogram,
    /// Certificate `notAfter`, Unix seconds.
    pub cert_expiry: Family<CertLabels, Gauge>,
    /// When the operator plans to renew (leaf) or rotate (CA) the certificate, Unix seconds: an
    /// alert can tell a renewal that is late from a certificate that is merely short-lived.
    pub cert_renewal: Family<CertLabels, Gauge>,
    /// Certificates issued or renewed.
    pub certs_issued: Counter,
    /// API calls skipped because the child was known unchanged ([`crate::children`]).
    pub api_calls_saved: Family<SavedLabels, Counter>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("edgeway_operator");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        let cert_expiry = Family::<CertLabels, Gauge>::default();
        let cert_renewal = Family::<CertLabels, Gauge>::default();
        let certs_issued = Counter::default();
        let api_calls_saved = Family::<SavedLabels, Counter>::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles by reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciles",
            duration.clone(),
        );
        registry.register(
            "certificate_not_after_timestamp_seconds",
            "notAfter of each certificate, Unix seconds",
            cert_expiry.clone(),
        );
        registry.register(
            "certificate_renewal_timestamp_seconds",
            "Planned renewal (leaf) or rotation (CA) of each certificate, Unix seconds",
            cert_renewal.clone(),
        );
        registry.register(
            "certificates_issued",
            "Certificates issued or renewed",
            certs_issued.clone(),
        );
        registry.register(
            "api_calls_saved",
            "API calls not made: applies of unchanged children, reads answered from memory",
            api_calls_saved.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            duration,
            cert_expiry,
            cert_renewal,
            certs_issued,
            api_calls_saved,
            ready: AtomicBool::new(false),
        }
    }

    /// Counts a reconcile and returns a guard that records its duration when dropped.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconciles.inc();
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn error(&self, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// Records a certificate's expiry and its planned renewal (Unix seconds; none for a
    /// certificate the user provides, which the operator does not renew).
    pub fn certificate(
        &self,
        namespace: &str,
        gateway: &str,
        certificate: &str,
        not_after: i64,
        renew_at: Option<i64>,
    ) {
        let labels = CertLabels {
            namespace: namespace.into(),
            gateway: gateway.into(),
            certificate: certificate.into(),
        };
        if let Some(at) = renew_at {
            self.cert_renewal.get_or_create(&labels).set(at);
        }
        self.cert_expiry.get_or_create(&labels).set(not_after);
    }

    /// Marks the process ready (controller running or standing by as a non-leader).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Records a reconcile's duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .observe(self.start.elapsed().as_secs_f64());
    }
}

fn respond(metrics: &Metrics, path: &str) -> Response<Full<Bytes>> {
    let (status, body, ctype) = match path {
        "/healthz" => (StatusCode::OK, "ok".to_owned(), "text/plain"),
        "/readyz" if metrics.ready.load(Ordering::Relaxed) => {
            (StatusCode::OK, "ok".to_owned(), "text/plain")
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready".to_owned(),
            "text/plain",
        ),
        "/metrics" => (
            StatusCode::OK,
            metrics.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        _ => (StatusCode::NOT_FOUND, "not found".to_owned(), "text/plain"),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// Binds `addr` and serves the endpoints until the task is dropped.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics and health endpoint listening");
    loop {
        let (stream, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = respond(&metrics, req.uri().path());
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests;
