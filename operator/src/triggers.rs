//! What wakes a gateway's reconcile. A reconcile that finds nothing changed costs no API call
//! ([`crate::children`]), but one that does costs up to 12, so only changes that can alter its
//! outcome get through: a new spec (generation), a child changed or deleted
//! by someone else, a StatefulSet whose spec or ready pods changed, a referenced ConfigMap or
//! Secret. Status-only churn is dropped: the gateway's own status write and the StatefulSet
//! status rewrites of kube-controller-manager re-ran every reconcile about 2.5 more times per
//! gateway (3,463 reconciles for 1,000 gateways, `bench/run.sh operator`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::{future, Stream, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{predicates, reflector, watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};

use crate::crd::EdgeGateway;
use crate::references;

/// Gateways whose spec changed (new generation), kept in `writer`'s store for the reconciles
/// and in `referrers`' index. The store keeps them without their managedFields, which nothing
/// here reads (heaptrack, 3,000 gateways: the store was 53 MiB of a 107 MiB peak heap with
/// them, 17 MiB without; peak RSS for 10,000 gateways 432 → 311 MiB).
pub fn gateways(
    api: Api<EdgeGateway>,
    writer: reflector::store::Writer<EdgeGateway>,
    referrers: Arc<Referrers>,
) -> impl Stream<Item = Result<EdgeGateway, watcher::Error>> + Send {
    let events = watcher(api, watcher::Config::default())
        .modify(|gw| gw.metadata.managed_fields = None)
        .inspect(move |e| {
            if let Ok(e) = e {
                referrers.observe(e);
            }
        });
    reflector(writer, events)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default())
}

/// A ConfigMap or a Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Referenced {
    /// A ConfigMap (Lua scripts, CA bundles).
    ConfigMap,
    /// A Secret (app key, users, TLS material).
    Secret,
}

/// Which gateways reference each ConfigMap and Secret, kept from the gateway watch. Finding
/// them by asking every gateway for every ConfigMap or Secret event was O(gateways²): 152 s of
/// the operator's CPU for 10,000 gateways (`bench/run.sh operator`).
#[derive(Default)]
pub struct Referrers(Mutex<Index>);

#[derive(Default)]
struct Index {
    /// What each gateway references.
    of: HashMap<ObjectRef<EdgeGateway>, Vec<(Referenced, String)>>,
    /// Who references each (kind, namespace, name).
    by: HashMap<(Referenced, String, String), HashSet<ObjectRef<EdgeGateway>>>,
    /// Gateways seen during a re-list, to drop the others when it ends.
    relisted: Option<HashSet<ObjectRef<EdgeGateway>>>,
}

impl Index {
    fn forget(&mut self, gw: &ObjectRef<EdgeGateway>) {
        let ns = gw.namespace.clone().unwrap_or_default();
        for (kind, name) in self.of.remove(gw).unwrap_or_default() {
            let key = (kind, ns.clone(), name);
            if let Some(set) = self.by.get_mut(&key) {
                set.remove(gw);
                if set.is_empty() {
                    self.by.remove(&key);
                }
            }
        }
    }

    fn learn(&mut self, gw: &EdgeGateway) {
        let r = ObjectRef::from_obj(gw);
        self.forget(&r);
        let ns = gw.namespace().unwrap_or_default();
        let names: Vec<(Referenced, String)> = references::config_maps(gw)
            .into_iter()
            .map(|n| (Referenced::ConfigMap, n))
            .chain(
                references::secrets(gw)
                    .into_iter()
                    .map(|n| (Referenced::Secret, n)),
            )
            .collect();
        for (kind, name) in &names {
            self.by
                .entry((*kind, ns.clone(), name.clone()))
                .or_default()
                .insert(r.clone());
        }
        if let Some(seen) = self.relisted.as_mut() {
            seen.insert(r.clone());
        }
        self.of.insert(r, names);
    }
}

impl Referrers {
    /// Keeps the index up to date with one gateway watch event.
    pub fn observe(&self, event: &watcher::Event<EdgeGateway>) {
        let Ok(mut idx) = self.0.lock() else { return };
        match event {
            watcher::Event::Init => idx.relisted = Some(HashSet::new()),
            watcher::Event::InitApply(gw) | watcher::Event::Apply(gw) => idx.learn(gw),
            watcher::Event::Delete(gw) => idx.forget(&ObjectRef::from_obj(gw)),
            watcher::Event::InitDone => {
                let seen = idx.relisted.take().unwrap_or_default();
                let gone: Vec<_> = idx
                    .of
                    .keys()
                    .filter(|r| !seen.contains(*r))
                    .cloned()
                    .collect();
                for r in gone {
                    idx.forget(&r);
                }
            }
        }
    }

    /// The gateway that controls `obj` (its owner reference), and those that reference it.
    pub fn owner_and_referrers<K: Resource>(
        &self,
        kind: Referenced,
        obj: &K,
    ) -> Vec<ObjectRef<EdgeGateway>> {
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        let name = obj.meta().name.clone().unwrap_or_default();
        let mut gateways: Vec<ObjectRef<EdgeGateway>> = self
            .0
            .lock()
            .ok()
            .and_then(|idx| idx.by.get(&(kind, ns.clone(), name)).cloned())
            .map(|set| set.into_iter().collect())
            .unwrap_or_default();
        let owners = obj.owner_references().iter().filter(|o| {
            o.controller == Some(true)
                && o.kind == "EdgeGateway"
                && o.api_version.starts_with("edgeway.io/")
        });
        for o in owners {
            let owner = ObjectRef::new(&o.name).within(&ns);
            if !gateways.contains(&owner) {
                gateways.push(owner);
            }
        }
        gateways
    }
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

#[cfg(test)]
mod tests;
