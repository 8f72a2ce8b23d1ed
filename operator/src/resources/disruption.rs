//! A PodDisruptionBudget per gateway: a node drain takes down at most `maxUnavailable` of its
//! pods at once. On by default from two pods up; one pod cannot stay up through a drain anyway,
//! and a budget of `maxUnavailable: 1` over one pod lets the drain proceed, so a leftover budget
//! after scaling down to one pod is harmless (it goes with the gateway, by owner reference).
//!
//! Kubernetes 1.21+ serves `policy/v1`, 1.20 only `policy/v1beta1` (same fields here); the
//! operator finds out which at start, so the object is built for a given [`ApiResource`].

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ApiResource, DynamicObject};

use super::{child_meta, selector_labels, workload, Names};
use crate::crd::EdgeGateway;

/// What to do about a gateway's budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Budget {
    /// Apply one with this `maxUnavailable`.
    Apply(IntOrString),
    /// Nothing (off by default: one pod or none).
    Leave,
}

/// The decision, from the spec and the pod count. Turned off explicitly, the budget allows
/// every disruption (`maxUnavailable: 100%`) rather than being deleted: the operator has no
/// delete right on anything, and one that existed before is neutralised all the same.
pub fn decide(gw: &EdgeGateway) -> Budget {
    let d = &gw.spec.pod.disruption_budget;
    match d.enabled {
        Some(false) => Budget::Apply(IntOrString::String("100%".into())),
        Some(true) => Budget::Apply(IntOrString::Int(d.max_unavailable)),
        None if workload::replicas(gw) > 1 => Budget::Apply(IntOrString::Int(d.max_unavailable)),
        None => Budget::Leave,
    }
}

/// The budget object (named like the gateway) selecting its pods.
pub fn object(
    gw: &EdgeGateway,
    names: &Names,
    api: &ApiResource,
    max_unavailable: &IntOrString,
) -> DynamicObject {
    let mut o = DynamicObject::new(&names.gateway, api);
    o.metadata = child_meta(gw, names, names.gateway.clone());
    o.data = serde_json::json!({
        "spec": {
            "maxUnavailable": max_unavailable,
            "selector": {"matchLabels": selector_labels(names)},
        }
    });
    o
}
