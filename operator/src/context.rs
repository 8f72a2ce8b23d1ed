//! What every step of a reconcile shares, near the bottom of the operator's module graph (only
//! [`crate::error`] and [`crate::children`] are below it): the [`Settings`], the [`Context`]
//! handed to each reconcile, and Events via [`publish`] (children are written through
//! [`Children`]). `controller`, `secrets` and `references` build on it; it imports none of them.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};

use crate::certs::HOUR;
use crate::children::Children;
use crate::crd::{EdgeGateway, EdgeGatewayStatus};
use crate::metrics::Metrics;
use crate::resources::FIELD_MANAGER;
use crate::status::Problem;

/// Operator-wide settings (from the command line).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Sidecar image used when a gateway does not name one.
    pub sidecar_image: String,
    /// Cluster DNS domain for certificate names.
    pub cluster_domain: String,
    /// Lifetime of a namespace CA, seconds (rotated at 2/3).
    pub ca_lifetime: i64,
    /// How long a rotated CA's successor is published in `ca.crt` before it signs, seconds:
    /// devices that trust only the old CA keep verifying servers meanwhile. 0: at once.
    pub ca_overlap: i64,
    /// Image prefixes a gateway may name (`spec.pod.image`, `spec.upstream.image`); empty:
    /// any. Whoever may create an EdgeGateway otherwise chooses what runs in its pods.
    pub allowed_images: Vec<String>,
    /// The PodDisruptionBudget API the cluster serves (`policy/v1`, or `policy/v1beta1` on
    /// 1.20), found at start; `None`: no budgets are made.
    pub disruption_api: Option<kube::api::ApiResource>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            sidecar_image: format!("docker.io/edgeway/edgeway:{}", env!("CARGO_PKG_VERSION")),
            cluster_domain: "cluster.local".into(),
            ca_lifetime: 3650 * 24 * HOUR,
            ca_overlap: 30 * 24 * HOUR,
            allowed_images: Vec::new(),
            disruption_api: None,
        }
    }
}

/// What reconciles share.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes Kubernetes Events on gateways.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub settings: Settings,
    /// What the operator knows of its children: skips no-op applies and re-reads.
    pub children: Arc<Children>,
    /// The status last written per gateway ([`Context::recent_status`]).
    written_status: std::sync::Mutex<WrittenStatus>,
    /// Last Lua check per gateway (`ns/name`): fingerprint of scripts and things, and its result.
    pub lua_checks: std::sync::Mutex<std::collections::HashMap<String, (String, Option<Problem>)>>,
}

/// How long a written status stands in for the one the watch shows: the gateway watch delivers
/// the operator's own status write some milliseconds later, and a reconcile started meanwhile
/// (its children's events queue one) saw the old status and wrote the same again — 827 extra
/// writes for 1,000 gateways (`bench/run.sh operator`, API server request counts).
const STATUS_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Statuses written in the last [`STATUS_WINDOW`], by gateway UID.
#[derive(Default)]
struct WrittenStatus {
    by_uid: std::collections::HashMap<String, (std::time::Instant, EdgeGatewayStatus)>,
    /// Size at which old entries are next dropped (doubles, so dropping is amortized O(1)).
    prune_at: usize,
}

impl Context {
    /// The status this process wrote for `gw` within the last few seconds, else the gateway's
    /// own: the newest the operator can know.
    pub fn recent_status(&self, gw: &EdgeGateway) -> Option<EdgeGatewayStatus> {
        let uid = gw.uid().unwrap_or_default();
        let written = self.written_status.lock().ok().and_then(|w| {
            w.by_uid
                .get(&uid)
                .filter(|(at, _)| at.elapsed() < STATUS_WINDOW)
                .map(|(_, s)| s.clone())
        });
        written.or_else(|| gw.status.clone())
    }

    /// Records a status just written for `gw`.
    pub fn wrote_status(&self, gw: &EdgeGateway, status: EdgeGatewayStatus) {
        let Ok(mut w) = self.written_status.lock() else {
            return;
        };
        if w.by_uid.len() >= w.prune_at {
            w.by_uid.retain(|_, (at, _)| at.elapsed() < STATUS_WINDOW);
            w.prune_at = (w.by_uid.len() * 2).max(64);
        }
        let uid = gw.uid().unwrap_or_default();
        w.by_uid.insert(uid, (std::time::Instant::now(), status));
    }
}

pub(crate) fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

/// What one reconcile made (certificates issued, credentials generated), published as one
/// Event when it is done: an Event per item made three per new gateway, a fifth of the API
/// server's writes for 1,000 gateways (`bench/run.sh operator`).
#[derive(Default)]
pub struct Made(std::sync::Mutex<Vec<(&'static str, String, String)>>);

impl Made {
    /// Records one item: the Event reason it would have alone, what was made, and its Secret.
    pub(crate) fn add(&self, reason: &'static str, note: String, secret: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.push((reason, note, secret.to_owned()));
        }
    }

    /// Publishes what was made: one item as its own Event, several as one whose reason is
    /// theirs when they share it, else `Provisioned`.
    pub(crate) async fn publish(self, ctx: &Context, gw: &EdgeGateway) {
        let items = self.0.into_inner().unwrap_or_default();
        let Some((first, _, _)) = items.first() else {
            return;
        };
        let reason = if items.iter().all(|(r, _, _)| r == first) {
            *first
        } else {
            "Provisioned"
        };
        let secret = (items.len() == 1).then(|| items[0].2.clone());
        let note = items
            .into_iter()
            .map(|(_, n, _)| n)
            .collect::<Vec<_>>()
            .join("; ");
        publish_about(ctx, gw, EventType::Normal, reason, note, secret.as_deref()).await;
    }
}

pub(crate) async fn publish(
    ctx: &Context,
    gw: &EdgeGateway,
    type_: EventType,
    reason: &str,
    note: String,
) {
    publish_about(ctx, gw, type_, reason, note, None).await
}

/// Publishes an event on the gateway, naming a related Secret (so each Secret has its own series).
pub(crate) async fn publish_about(
    ctx: &Context,
    gw: &EdgeGateway,
    type_: EventType,
    reason: &str,
    note: String,
    secret: Option<&str>,
) {
    let secondary = secret.map(|name| ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        name: Some(name.into()),
        namespace: gw.namespace(),
        ..Default::default()
    });
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &gw.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot publish event");
    }
}

/// Makes a Context for `client` (events are reported as `edgeway-operator`/`instance`).
pub fn context(
    client: Client,
    metrics: Arc<Metrics>,
    settings: Settings,
    instance: Option<String>,
) -> Arc<Context> {
    let reporter = kube::runtime::events::Reporter {
        controller: FIELD_MANAGER.into(),
        instance,
    };
    let saved = metrics.api_calls_saved.clone();
    Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        metrics,
        settings,
        children: Arc::new(Children::new(saved)),
        written_status: Default::default(),
        lua_checks: Default::default(),
    })
}
