//! Prometheus metrics and the JSON totals of `/api/stats`, updated together.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use edgeway_runtime::tls::reload::TlsObserver;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;

/// A single bounded label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// A value from a small fixed set.
    pub kind: &'static str,
}

/// Labels of a platform → edge request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EdgeRequestLabels {
    /// `readProperty`, `writeProperty`, `invokeService`, `notifyPropertyUpdate`.
    pub kind: &'static str,
    /// `success`, `edgeError`, `timeout`, `closed`.
    pub outcome: &'static str,
}

/// Which certificate a not-after gauge is about (the label the sidecar and operator use too).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabel {
    /// `server`: the AlwaysOn listener's.
    pub certificate: &'static str,
}

type HistogramFamily = Family<KindLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// All platform metrics and totals; shared as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    sessions: Gauge,
    sessions_total: Counter,
    auth_failures: Family<KindLabel, Counter>,
    /// Pushed property values by outcome: `stored`, `duplicate` (a resend, dropped).
    updates: Family<KindLabel, Counter>,
    events_stored: Family<KindLabel, Counter>,
    messages_from_edges: Family<KindLabel, Counter>,
    undecodable: Family<KindLabel, Counter>,
    edge_requests: Family<EdgeRequestLabels, Counter>,
    edge_latency: HistogramFamily,
    tls_handshakes: Family<KindLabel, Counter>,
    tls_reloads: Family<KindLabel, Counter>,
    cert_not_after: Family<CertLabel, Gauge<i64, AtomicI64>>,
    stream_dropped: Counter,
    totals: Totals,
}

/// Plain totals for `/api/stats` (prometheus counters are not meant to be read back).
#[derive(Default)]
struct Totals {
    sessions_total: AtomicU64,
    auth_failures: AtomicU64,
    updates_stored: AtomicU64,
    events_stored: AtomicU64,
    duplicates: AtomicU64,
    stream_dropped: AtomicU64,
    from_edges: Mutex<BTreeMap<&'static str, u64>>,
    to_edges: Mutex<BTreeMap<&'static str, BTreeMap<&'static str, u64>>>,
    auth_failure_reasons: Mutex<BTreeMap<&'static str, u64>>,
}

/// Snapshot served by `GET /api/stats`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    /// Sessions connected now.
    pub sessions_active: i64,
    /// Sessions that authenticated since start.
    pub sessions_total: u64,
    /// Refused authentications since start.
    pub auth_failures: u64,
    /// Refusals by reason.
    pub auth_failures_by_reason: BTreeMap<&'static str, u64>,
    /// Property values stored.
    pub updates_stored: u64,
    /// Events stored (duplicates not counted).
    pub events_stored: u64,
    /// Pushed values dropped as duplicates of stored ones.
    pub duplicates_dropped: u64,
    /// SSE clients dropped for falling behind.
    pub stream_clients_dropped: u64,
    /// Messages received from edges, by kind.
    pub messages_from_edges: BTreeMap<&'static str, u64>,
    /// Requests sent to edges, by kind then outcome.
    pub requests_to_edges: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry(key).or_default() += 1;
}

impl Metrics {
    /// Creates and registers every metric under the `edgeway_platform` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("edgeway_platform");
        let sessions = Gauge::default();
        let sessions_total = Counter::default();
        let auth_failures = Family::<KindLabel, Counter>::default();
        let updates = Family::<KindLabel, Counter>::default();
        let events_stored = Family::<KindLabel, Counter>::default();
        let messages_from_edges = Family::<KindLabel, Counter>::default();
        let undecodable = Family::<KindLabel, Counter>::default();
        let edge_requests = Family::<EdgeRequestLabels, Counter>::default();
        let edge_latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let tls_handshakes = Family::<KindLabel, Counter>::default();
        let tls_reloads = Family::<KindLabel, Counter>::default();
        let cert_not_after = Family::<CertLabel, Gauge<i64, AtomicI64>>::default();
        let stream_dropped = Counter::default();
        registry.register(
            "tunnels_up",
            "AlwaysOn tunnels (sessions) authenticated and connected now",
            sessions.clone(),
        );
        registry.register(
            "tunnels_established",
            "AlwaysOn tunnels (sessions) authenticated since start",
            sessions_total.clone(),
        );
        registry.register(
            "auth_failures",
            "Refused AlwaysOn authentications by reason",
            auth_failures.clone(),
        );
        registry.register(
            "tunnel_updates",
            "Property values pushed by edges (UpdateSubscribedPropertyValues), by outcome (stored, duplicate)",
            updates.clone(),
        );
        registry.register(
            "events_received",
            "Events fired by edges, by outcome (stored, duplicate, refused)",
            events_stored.clone(),
        );
        registry.register(
            "edge_messages_undecodable",
            "AlwaysOn messages from edges that did not decode, by reason",
            undecodable.clone(),
        );
        registry.register(
            "edge_messages",
            "AlwaysOn messages received from edges by kind",
            messages_from_edges.clone(),
        );
        registry.register(
            "edge_requests",
            "Platform to edge requests by kind and outcome",
            edge_requests.clone(),
        );
        registry.register(
            "edge_request_duration_seconds",
            "Latency of platform to edge requests through the tunnel",
            edge_latency.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes on the AlwaysOn listener by result",
            tls_handshakes.clone(),
        );
        registry.register(
            "tls_reloads",
            "TLS material reloads by result",
            tls_reloads.clone(),
        );
        registry.register(
            "certificate_not_after_timestamp_seconds",
            "Not-after of the served certificate (certificate=\"server\"), Unix seconds",
            cert_not_after.clone(),
        );
        registry.register(
            "stream_clients_dropped",
            "Server-sent-event clients dropped for falling behind",
            stream_dropped.clone(),
        );
        Self {
            registry,
            sessions,
            sessions_total,
            auth_failures,
            updates,
            events_stored,
            messages_from_edges,
            undecodable,
            edge_requests,
            edge_latency,
            tls_handshakes,
            tls_reloads,
            cert_not_after,
            stream_dropped,
            totals: Totals::default(),
        }
    }

    /// A session authenticated.
    pub fn session_opened(&self) {
        self.sessions.inc();
        self.sessions_total.inc();
        self.totals.sessions_total.fetch_add(1, Ordering::Relaxed);
    }

    /// An authenticated session ended.
    pub fn session_closed(&self) {
        self.sessions.dec();
    }

    /// An authentication was refused for `reason` (a fixed name).
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&KindLabel { kind: reason })
            .inc();
        self.totals.auth_failures.fetch_add(1, Ordering::Relaxed);
        bump(&self.totals.auth_failure_reasons, reason);
    }

    /// `n` property values were stored.
    pub fn updates_stored(&self, n: u64) {
        self.updates
            .get_or_create(&KindLabel { kind: "stored" })
            .inc_by(n);
        self.totals.updates_stored.fetch_add(n, Ordering::Relaxed);
    }

    /// An event from an edge was `stored`, a `duplicate` (a resend) or `refused`.
    pub fn event(&self, outcome: &'static str) {
        self.events_stored
            .get_or_create(&KindLabel { kind: outcome })
            .inc();
        if outcome == "stored" {
            self.totals.events_stored.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `n` pushed values were duplicates.
    pub fn duplicates(&self, n: u64) {
        self.updates
            .get_or_create(&KindLabel { kind: "duplicate" })
            .inc_by(n);
        self.totals.duplicates.fetch_add(n, Ordering::Relaxed);
    }

    /// A message of `kind` arrived from an edge.
    pub fn edge_message(&self, kind: &'static str) {
        self.messages_from_edges
            .get_or_create(&KindLabel { kind })
            .inc();
        bump(&self.totals.from_edges, kind);
    }

    /// A message from an edge did not decode (`reason`: a `CodecError` kind).
    pub fn undecodable(&self, reason: &'static str) {
        self.undecodable
            .get_or_create(&KindLabel { kind: reason })
            .inc();
    }

    /// A platform → edge request of `kind` ended with `outcome` after `took`.
    pub fn edge_request(&self, kind: &'static str, outcome: &'static str, took: Duration) {
        self.edge_requests
            .get_or_create(&EdgeRequestLabels { kind, outcome })
            .inc();
        self.edge_latency
            .get_or_create(&KindLabel { kind })
            .observe(took.as_secs_f64());
        let mut m = self
            .totals
            .to_edges
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *m.entry(kind).or_default().entry(outcome).or_default() += 1;
    }

    /// A TLS handshake ended with `result` (`ok`, `error`, `timeout`).
    pub fn tls_handshake(&self, result: &'static str) {
        self.tls_handshakes
            .get_or_create(&KindLabel { kind: result })
            .inc();
    }

    /// An SSE client was dropped for falling behind.
    pub fn stream_client_dropped(&self) {
        self.stream_dropped.inc();
        self.totals.stream_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The totals for `/api/stats`.
    pub fn snapshot(&self) -> StatsSnapshot {
        let lock = |m: &Mutex<BTreeMap<&'static str, u64>>| {
            m.lock().unwrap_or_else(|p| p.into_inner()).clone()
        };
        StatsSnapshot {
            sessions_active: self.sessions.get(),
            sessions_total: self.totals.sessions_total.load(Ordering::Relaxed),
            auth_failures: self.totals.auth_failures.load(Ordering::Relaxed),
            auth_failures_by_reason: lock(&self.totals.auth_failure_reasons),
            updates_stored: self.totals.updates_stored.load(Ordering::Relaxed),
            events_stored: self.totals.events_stored.load(Ordering::Relaxed),
            duplicates_dropped: self.totals.duplicates.load(Ordering::Relaxed),
            stream_clients_dropped: self.totals.stream_dropped.load(Ordering::Relaxed),
            messages_from_edges: lock(&self.totals.from_edges),
            requests_to_edges: self
                .totals
                .to_edges
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

impl TlsObserver for Metrics {
    fn cert_not_after(&self, unix_secs: i64) {
        self.cert_not_after
            .get_or_create(&CertLabel {
                certificate: "server",
            })
            .set(unix_secs);
    }

    fn reloaded(&self, result: &'static str) {
        self.tls_reloads
            .get_or_create(&KindLabel { kind: result })
            .inc();
    }
}

impl edgeway_runtime::admin::MetricsText for Metrics {
    /// The registry in the OpenMetrics text format.
    fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
