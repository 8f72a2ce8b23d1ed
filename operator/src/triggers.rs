//! What wakes a gateway's reconcile. Every reconcile costs about 17 API calls, so only changes
//! that can alter its outcome get through: a new spec (generation), a child changed or deleted
//! by someone else, a StatefulSet whose spec or ready pods changed, a referenced ConfigMap or
//! Secret. Status-only churn is dropped: the gateway's own status write and the StatefulSet
//! status rewrites of kube-controller-manager re-ran every reconcile about 2.5 more times per
//! gateway (3,463 reconciles for 1,000 gateways, `bench/run.sh operator`).

use std::collections::HashMap;

use futures::{future, Stream, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{predicates, reflector, watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};

use crate::crd::EdgeGateway;

/// Gateways whose spec changed (new generation), kept in `writer`'s store for the reconciles.
pub fn gateways(
    api: Api<EdgeGateway>,
    writer: reflector::store::Writer<EdgeGateway>,
) -> impl Stream<Item = Result<EdgeGateway, watcher::Error>> + Send {
    reflector(writer, watcher(api, watcher::Config::default()))
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default())
}

/// What of a StatefulSet a reconcile reads: its spec (generation) and its ready pods.
fn statefulset_revision(s: &StatefulSet) -> (Option<i64>, i32) {
    let ready = s.status.as_ref().and_then(|st| st.ready_replicas);
    (s.metadata.generation, ready.unwrap_or(0))
}

/// Owned StatefulSets (from a watch's events) that were created, deleted, re-specified or
/// changed their ready pods. Deletions always pass (kube's generation predicate can swallow
/// them), so a deleted StatefulSet is recreated at once.
pub fn statefulsets(
    events: impl Stream<Item = Result<watcher::Event<StatefulSet>, watcher::Error>> + Send,
) -> impl Stream<Item = Result<StatefulSet, watcher::Error>> + Send {
    let mut seen: HashMap<String, (Option<i64>, i32)> = HashMap::new();
    events.filter_map(move |event| {
        let out = match event {
            Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                let revision = statefulset_revision(&s);
                let changed = seen.insert(s.uid().unwrap_or_default(), revision) != Some(revision);
                changed.then_some(Ok(s))
            }
            Ok(watcher::Event::Delete(s)) => {
                seen.remove(&s.uid().unwrap_or_default());
                Some(Ok(s))
            }
            // A re-list: deletions missed meanwhile leave stale entries, so start over.
            Ok(watcher::Event::Init) => {
                seen.clear();
                None
            }
            Ok(watcher::Event::InitDone) => None,
            Err(e) => Some(Err(e)),
        };
        future::ready(out)
    })
}

/// The gateway that controls `obj` (its owner reference), and those in its namespace whose
/// `names` include `obj`'s name.
pub fn owner_and_referrers<K: Resource>(
    store: &Store<EdgeGateway>,
    obj: &K,
    names: fn(&EdgeGateway) -> Vec<String>,
) -> Vec<ObjectRef<EdgeGateway>> {
    let ns = obj.meta().namespace.as_deref().unwrap_or_default();
    let mut gateways = referrers(store, obj, names);
    let owners = obj.owner_references().iter().filter(|o| {
        o.controller == Some(true)
            && o.kind == "EdgeGateway"
            && o.api_version.starts_with("edgeway.io/")
    });
    for o in owners {
        let owner = ObjectRef::new(&o.name).within(ns);
        if !gateways.contains(&owner) {
            gateways.push(owner);
        }
    }
    gateways
}

/// Gateways in `obj`'s namespace whose `names` include `obj`'s name.
fn referrers<K: Resource>(
    store: &Store<EdgeGateway>,
    obj: &K,
    names: fn(&EdgeGateway) -> Vec<String>,
) -> Vec<ObjectRef<EdgeGateway>> {
    let (ns, name) = (
        obj.meta().namespace.as_deref(),
        obj.meta().name.as_deref().unwrap_or_default(),
    );
    store
        .state()
        .iter()
        .filter(|gw| gw.metadata.namespace.as_deref() == ns && names(gw).iter().any(|n| n == name))
        .map(|gw| ObjectRef::from_obj(gw.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests;
