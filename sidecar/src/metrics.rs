//! Prometheus metrics of the sidecar, in one registry served on the admin port.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a served request; `route` is a fixed name, never the raw path.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route name such as `thing_property`.
    pub route: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// The connect stage that failed (`url`, `dns`, `tcp`, `proxy`, `tls`, `upgrade`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    /// A stage name.
    pub stage: &'static str,
}

/// Connect stages, in the order a connect goes through them.
pub const CONNECT_STAGES: [&str; 7] = [
    "url",
    "dns",
    "tcp",
    "proxy",
    "tls",
    "upgrade",
    "credentials",
];

/// A single bounded label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// A value from a small fixed set.
    pub kind: &'static str,
}

/// Labels of a certificate-expiry gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabel {
    /// Which certificate: `server`, `client` (the label the operator and platform use too).
    pub certificate: &'static str,
}

type HistogramFamily = Family<KindLabel, Histogram, fn() -> Histogram>;

/// All sidecar metrics; cheap to clone the handles out of, shared as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    auth_failures: Family<KindLabel, Counter>,
    tls_handshakes: Family<KindLabel, Counter>,
    connections_refused: Counter,
    tls_reloads: Family<KindLabel, Counter>,
    credential_reloads: Family<KindLabel, Counter>,
    authorization: Family<KindLabel, Counter>,
    lua_calls: HistogramFamily,
    lua_offloaded: Family<KindLabel, Counter>,
    lua_timeouts: Family<KindLabel, Counter>,
    cert_not_after: Family<CertLabel, Gauge<i64, AtomicI64>>,
    things: Family<KindLabel, Gauge<i64, AtomicI64>>,
    tunnel_up: Gauge<i64, AtomicI64>,
    tunnel_connect_failing: Family<StageLabel, Gauge<i64, AtomicI64>>,
    tunnel_disconnects: Family<KindLabel, Counter>,
    tunnel_updates: Family<KindLabel, Counter>,
    tunnel_queue_depth: Gauge<i64, AtomicI64>,
    tunnel_queue_capacity: Gauge<i64, AtomicI64>,
    tunnel_queue_dropped: Counter,
    tunnel_queue_bytes: Gauge<i64, AtomicI64>,
    tunnel_queue_write_failing: Gauge<i64, AtomicI64>,
    tunnel_queue_write_errors: Counter,
    /// Last absolute write-error count seen.
    write_errors_seen: AtomicU64,
    /// Last absolute drop count seen, to turn the outbox's total into counter increments.
    dropped_seen: AtomicU64,
}

fn lua_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 4.0, 10))
}

/// 0.5 ms to ~8 s: a property read answered from memory up to a service near its deadline.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.0, 15))
}

impl Metrics {
    /// Creates and registers every metric under the `edgeway_sidecar` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("edgeway_sidecar");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration: Family<RequestLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(request_histogram);
        let auth_failures = Family::<KindLabel, Counter>::default();
        let tls_handshakes = Family::<KindLabel, Counter>::default();
        let tls_reloads = Family::<KindLabel, Counter>::default();
        let credential_reloads = Family::<KindLabel, Counter>::default();
        let authorization = Family::<KindLabel, Counter>::default();
        let lua_calls: HistogramFamily = Family::new_with_constructor(lua_histogram);
        let lua_offloaded = Family::<KindLabel, Counter>::default();
        let lua_timeouts = Family::<KindLabel, Counter>::default();
        let cert_not_after = Family::<CertLabel, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's head to its response's head, by route and status",
            request_duration.clone(),
        );
        registry.register(
            "auth_failures",
            "Rejected authentication attempts by method",
            auth_failures.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes by result",
            tls_handshakes.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed on accept because the listener was at server.maxConnections",
            connections_refused.clone(),
        );
        registry.register(
            "tls_reloads",
            "TLS material reloads by result",
            tls_reloads.clone(),
        );
        registry.register(
            "authorization_decisions",
            "Things API requests decided by auth.authorization, by decision (allow, deny)",
            authorization.clone(),
        );
        registry.register(
            "credential_reloads",
            "Reloads of the basic users and OAuth consumers files by result",
            credential_reloads.clone(),
        );
        registry.register(
            "lua_call_duration_seconds",
            "Duration of Lua calls by kind (service, task, property)",
            lua_calls.clone(),
        );
        registry.register(
            "lua_offloaded_calls",
            "Lua calls that outran their slice on an async worker and finished off it, by kind",
            lua_offloaded.clone(),
        );
        registry.register(
            "lua_timeouts",
            "Lua calls aborted at their deadline (lua.deadlineMs), by kind",
            lua_timeouts.clone(),
        );
        registry.register(
            "certificate_not_after_timestamp_seconds",
            "Not-after of each certificate in use (server, client), Unix seconds",
            cert_not_after.clone(),
        );
        let things = Family::<KindLabel, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "things",
            "Things this sidecar serves: Lua things and this shard's simulated devices",
            things.clone(),
        );
        let tunnel_up = Gauge::<i64, AtomicI64>::default();
        let tunnel_disconnects = Family::<KindLabel, Counter>::default();
        let tunnel_updates = Family::<KindLabel, Counter>::default();
        let tunnel_queue_depth = Gauge::<i64, AtomicI64>::default();
        let tunnel_queue_capacity = Gauge::<i64, AtomicI64>::default();
        let tunnel_queue_dropped = Counter::default();
        let tunnel_queue_bytes = Gauge::<i64, AtomicI64>::default();
        let tunnel_queue_write_failing = Gauge::<i64, AtomicI64>::default();
        let tunnel_queue_write_errors = Counter::default();
        registry.register(
            "tunnel_up",
            "1 while the platform tunnel is established",
            tunnel_up.clone(),
        );
        let tunnel_connect_failing = Family::<StageLabel, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "tunnel_connect_failing",
            "1 for the stage at which the last connect attempt failed (all 0 once connected); the operator reads stage=\"proxy\" for the gateway's Connected condition",
            tunnel_connect_failing.clone(),
        );
        registry.register(
            "tunnel_disconnects",
            "Tunnel sessions lost, by reason",
            tunnel_disconnects.clone(),
        );
        registry.register(
            "tunnel_updates",
            "Property updates by outcome (sent, acked, rejected, unsubscribed, lagged)",
            tunnel_updates.clone(),
        );
        registry.register(
            "tunnel_queue_depth",
            "Updates waiting for the platform's acknowledgement",
            tunnel_queue_depth.clone(),
        );
        registry.register(
            "tunnel_queue_capacity",
            "Updates the queue holds before its overflow policy applies (tunnel.queue.capacity)",
            tunnel_queue_capacity.clone(),
        );
        registry.register(
            "tunnel_queue_dropped",
            "Updates dropped by the offline queue's overflow policy",
            tunnel_queue_dropped.clone(),
        );
        registry.register_with_unit(
            "tunnel_queue",
            "Bytes of the updates waiting for acknowledgement, as records in the queue's log (0 unless persisted or tunnel.queue.maxBytes is set)",
            prometheus_client::registry::Unit::Bytes,
            tunnel_queue_bytes.clone(),
        );
        registry.register(
            "tunnel_queue_write_failing",
            "1 while the persisted queue cannot be written (volume full?): updates are held in memory; the operator reads it for the gateway's QueuePersisted condition",
            tunnel_queue_write_failing.clone(),
        );
        registry.register(
            "tunnel_queue_write_errors",
            "Failed writes of the persisted queue",
            tunnel_queue_write_errors.clone(),
        );
        Self {
            tunnel_queue_bytes,
            tunnel_queue_write_failing,
            tunnel_queue_write_errors,
            write_errors_seen: AtomicU64::new(0),
            things,
            tunnel_up,
            tunnel_connect_failing,
            tunnel_disconnects,
            tunnel_updates,
            tunnel_queue_depth,
            tunnel_queue_capacity,
            tunnel_queue_dropped,
            dropped_seen: AtomicU64::new(0),
            registry,
            requests,
            request_duration,
            auth_failures,
            tls_handshakes,
            connections_refused,
            tls_reloads,
            credential_reloads,
            authorization,
            lua_calls,
            lua_offloaded,
            lua_timeouts,
            cert_not_after,
        }
    }

    /// Counts a served request and records how long it took.
    pub fn request(&self, route: &'static str, status: u16, took: Duration) {
        let labels = RequestLabels { route, status };
        self.requests.get_or_create(&labels).inc();
        self.request_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Counts a failed authentication for a method (`mtls`, `basic`, `oauth`, `none`), or
    /// `busy` for a basic attempt refused because too many hashes were waiting.
    pub fn auth_failure(&self, method: &'static str) {
        self.auth_failures
            .get_or_create(&KindLabel { kind: method })
            .inc();
    }

    /// Counts a TLS handshake by result (`ok`, `error`, `timeout`).
    pub fn tls_handshake(&self, result: &'static str) {
        self.tls_handshakes
            .get_or_create(&KindLabel { kind: result })
            .inc();
    }

    /// Counts a connection closed at the connection cap.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Counts a TLS reload by result.
    pub fn tls_reload(&self, result: &'static str) {
        self.tls_reloads
            .get_or_create(&KindLabel { kind: result })
            .inc();
    }

    /// Counts an authorization decision (`allow`, `deny`).
    pub fn authorization(&self, decision: &'static str) {
        self.authorization
            .get_or_create(&KindLabel { kind: decision })
            .inc();
    }

    /// Counts a credential files reload by result.
    pub fn credential_reload(&self, result: &'static str) {
        self.credential_reloads
            .get_or_create(&KindLabel { kind: result })
            .inc();
    }

    /// Records a Lua call's duration.
    pub fn lua_call(&self, kind: &'static str, took: Duration) {
        self.lua_calls
            .get_or_create(&KindLabel { kind })
            .observe(took.as_secs_f64());
    }

    /// Counts a Lua call moved off an async worker.
    pub fn lua_offloaded(&self, kind: &str) {
        let kind = match kind {
            "service" => "service",
            "task" => "task",
            _ => "property",
        };
        self.lua_offloaded.get_or_create(&KindLabel { kind }).inc();
    }

    /// Counts a Lua call aborted at its deadline.
    pub fn lua_timeout(&self, kind: &str) {
        let kind = match kind {
            "service" => "service",
            "task" => "task",
            _ => "property",
        };
        self.lua_timeouts.get_or_create(&KindLabel { kind }).inc();
    }

    /// Sets a certificate's expiry gauge.
    pub fn set_cert_not_after(&self, certificate: &'static str, unix_secs: i64) {
        self.cert_not_after
            .get_or_create(&CertLabel { certificate })
            .set(unix_secs);
    }

    /// Sets how many things of `kind` (`lua`, `simulated`) this process serves.
    pub fn set_things(&self, kind: &'static str, n: usize) {
        self.things
            .get_or_create(&KindLabel { kind })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Marks the tunnel up or down.
    pub fn tunnel_connected(&self, up: bool) {
        self.tunnel_up.set(i64::from(up));
    }

    /// Marks the stage at which the last connect attempt failed; `None` clears them all.
    pub fn tunnel_connect_failing(&self, stage: Option<&'static str>) {
        for s in CONNECT_STAGES {
            self.tunnel_connect_failing
                .get_or_create(&StageLabel { stage: s })
                .set(i64::from(Some(s) == stage));
        }
    }

    /// Counts a lost tunnel session.
    pub fn tunnel_disconnect(&self, reason: &'static str) {
        self.tunnel_disconnects
            .get_or_create(&KindLabel { kind: reason })
            .inc();
    }

    fn tunnel_update(&self, kind: &'static str, n: u64) {
        self.tunnel_updates
            .get_or_create(&KindLabel { kind })
            .inc_by(n);
    }

    /// Counts updates sent to the platform.
    pub fn tunnel_sent(&self, n: u64) {
        self.tunnel_update("sent", n);
    }

    /// Counts updates the platform acknowledged.
    pub fn tunnel_acked(&self, n: u64) {
        self.tunnel_update("acked", n);
    }

    /// Counts updates the platform refused.
    pub fn tunnel_rejected(&self, n: u64) {
        self.tunnel_update("rejected", n);
    }

    /// Counts updates of properties the platform did not subscribe to.
    pub fn tunnel_unsubscribed(&self, n: u64) {
        self.tunnel_update("unsubscribed", n);
    }

    /// Counts updates lost before reaching the queue (a lagging change feed).
    pub fn tunnel_lagged(&self, n: u64) {
        self.tunnel_update("lagged", n);
    }

    /// Records the queue's depth, bytes and persistence state, turning the outbox's totals
    /// (drops, write errors) into counter increments.
    pub fn tunnel_queue(&self, stats: &crate::tunnel::outbox::QueueStats) {
        self.tunnel_queue_depth.set(stats.len as i64);
        self.tunnel_queue_capacity.set(stats.capacity as i64);
        self.tunnel_queue_bytes.set(stats.bytes as i64);
        self.tunnel_queue_write_failing
            .set(i64::from(stats.write_failing));
        let seen = self.dropped_seen.swap(stats.dropped, Ordering::Relaxed);
        if stats.dropped > seen {
            self.tunnel_queue_dropped.inc_by(stats.dropped - seen);
        }
        let seen = self
            .write_errors_seen
            .swap(stats.write_errors, Ordering::Relaxed);
        if stats.write_errors > seen {
            self.tunnel_queue_write_errors
                .inc_by(stats.write_errors - seen);
        }
    }
}

impl edgeway_runtime::tls::reload::TlsObserver for Metrics {
    fn cert_not_after(&self, unix_secs: i64) {
        self.set_cert_not_after("server", unix_secs);
    }

    fn reloaded(&self, result: &'static str) {
        self.tls_reload(result);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
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
