//! What the operator already knows of its children, so a reconcile asks the API server only
//! what it cannot know.
//!
//! Every child kind is watched anyway (a changed or deleted child wakes its gateway); the watches
//! here also keep each child's *live version* (resourceVersion; for a StatefulSet its generation
//! and ready pods, as its status churns without mattering). After the operator applies or reads a
//! child it remembers that version, a hash of what it applied and, for its own Secrets, what it
//! read. While the watch still shows that version nobody changed the child, so:
//! - an apply of the same object again is skipped (it would change nothing);
//! - a read of a Secret or ConfigMap (the operator's own, or one a gateway references; both
//!   kinds are watched in full, as metadata, for the references) is answered from memory;
//! - one the (fully listed) watch has never seen and the operator never wrote is absent.
//!
//! Anything else — a version the watch has not caught up with, a child edited or deleted by
//! someone else — goes to the API server, so the worst a stale watch costs is a request.
//! Measured with `bench/run.sh operator` (docs/performance.md §5, the API server's request
//! counts for 1,000 gateways): about 17,500 calls saved, among them every second-reconcile
//! apply and 2,000 GETs each of Secrets and ConfigMaps.

use std::any::Any;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::error::{kube_err, Error};
use crate::metrics::SavedLabels;
use crate::resources::FIELD_MANAGER;

/// Kind, namespace, name.
type Key = (&'static str, String, String);

/// What a child's watch shows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Live {
    /// Changes whenever the child changes in a way the operator cares about.
    pub version: String,
    /// A StatefulSet's ready pods (0 for other kinds).
    pub ready: i32,
}

impl Live {
    /// A child whose every change matters: its resourceVersion.
    fn of_meta(meta: &ObjectMeta) -> Self {
        Self {
            version: meta.resource_version.clone().unwrap_or_default(),
            ready: 0,
        }
    }
}

/// One kind's watch in one scope (a namespace, or all of them).
#[derive(Default)]
struct Watch {
    /// The first full list has arrived: absence from `live` means absence.
    listed: bool,
    live: HashMap<(String, String), Live>,
    /// A re-list in progress; replaces `live` when complete.
    relist: Option<HashMap<(String, String), Live>>,
}

/// What the operator last wrote or read of one child.
struct Known {
    /// Empty: read and found absent.
    version: String,
    /// Hash of the last applied object (0: never applied by this process).
    applied: u64,
    /// The object, kept for children the operator reads (see [`Children::remember`]).
    object: Option<Arc<dyn Any + Send + Sync>>,
    /// The operator reads this child (so it keeps the object when it writes it).
    read: bool,
}

impl Known {
    /// Read and found absent.
    fn absent() -> Self {
        Self {
            version: String::new(),
            applied: 0,
            object: None,
            read: true,
        }
    }
}

/// A child kind the operator applies or reads.
pub trait Child:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Kind name, as in error messages.
    const KIND: &'static str;
    /// The version a watch of this kind shows.
    fn live(&self) -> Live {
        Live::of_meta(self.meta())
    }
}

impl Child for Secret {
    const KIND: &'static str = "Secret";
}

impl Child for k8s_openapi::api::core::v1::ConfigMap {
    const KIND: &'static str = "ConfigMap";
}

impl Child for k8s_openapi::api::core::v1::Service {
    const KIND: &'static str = "Service";
}

impl Child for StatefulSet {
    const KIND: &'static str = "StatefulSet";
    /// Generation and ready pods: kube-controller-manager rewrites the status (and so the
    /// resourceVersion) several times per pod start, none of which a reconcile would act on.
    fn live(&self) -> Live {
        let ready = self.status.as_ref().and_then(|s| s.ready_replicas);
        Live {
            version: format!("g{}", self.metadata.generation.unwrap_or_default()),
            ready: ready.unwrap_or(0),
        }
    }
}

/// A watched object that stands for a child of kind `C` (the child itself or its metadata).
pub trait Watched<C: Child>: Resource {
    /// Its live version.
    fn live(&self) -> Live;
}

impl<C: Child> Watched<C> for C {
    fn live(&self) -> Live {
        Child::live(self)
    }
}

impl<C: Child> Watched<C> for PartialObjectMeta<C> {
    fn live(&self) -> Live {
        Live::of_meta(&self.metadata)
    }
}

/// Whether the child is unchanged since the operator last applied or read it.
fn unchanged(known: &Known, live: &Option<Option<Live>>) -> bool {
    matches!(live, Some(Some(l)) if l.version == known.version)
}

/// What is kept of a child for reads, and what [`Children::get`] returns whether it asked or
/// not: the data, and of the metadata only who it is and its version (a replace sends that
/// back). Without labels, owners and managed fields here the operator's peak RSS for 10,000
/// gateways went from 311 to 282 MiB.
fn kept<C: Child>(mut obj: C) -> C {
    let meta = obj.meta_mut();
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        resource_version: meta.resource_version.take(),
        ..ObjectMeta::default()
    };
    obj
}

/// The operator's memory of its children (see the module doc).
pub struct Children {
    watches: Mutex<HashMap<(&'static str, Option<String>), Watch>>,
    known: Mutex<HashMap<Key, Known>>,
    saved: Family<SavedLabels, Counter>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn hash_of<K: Serialize>(obj: &K) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(obj).unwrap_or_default().hash(&mut h);
    // 0 means "only read".
    h.finish().max(1)
}

impl Children {
    /// Empty; counts the calls it saves in `saved`.
    pub fn new(saved: Family<SavedLabels, Counter>) -> Self {
        Self {
            watches: Mutex::default(),
            known: Mutex::default(),
            saved,
        }
    }

    fn saved(&self, call: &'static str) {
        self.saved.get_or_create(&SavedLabels { call }).inc();
    }

    /// Passes a watch of kind `C` in `scope` through, keeping its live versions.
    pub fn track<C, W>(
        self: &Arc<Self>,
        scope: Option<String>,
        events: impl Stream<Item = Result<watcher::Event<W>, watcher::Error>> + Send,
    ) -> impl Stream<Item = Result<watcher::Event<W>, watcher::Error>> + Send
    where
        C: Child,
        W: Watched<C>,
    {
        let this = Arc::clone(self);
        events.inspect(move |e| {
            if let Ok(e) = e {
                this.observe::<C, W>(&scope, e);
            }
        })
    }

    fn observe<C: Child, W: Watched<C>>(&self, scope: &Option<String>, event: &watcher::Event<W>) {
        let key = |o: &W| (o.namespace().unwrap_or_default(), o.name_any());
        let mut watches = lock(&self.watches);
        let w = watches.entry((C::KIND, scope.clone())).or_default();
        match event {
            watcher::Event::Init => w.relist = Some(HashMap::new()),
            watcher::Event::InitApply(o) => {
                w.relist
                    .get_or_insert_with(HashMap::new)
                    .insert(key(o), o.live());
            }
            watcher::Event::InitDone => {
                w.live = w.relist.take().unwrap_or_default();
                w.listed = true;
            }
            watcher::Event::Apply(o) => {
                w.live.insert(key(o), o.live());
            }
            watcher::Event::Delete(o) => {
                let (ns, name) = key(o);
                w.live.remove(&(ns.clone(), name.clone()));
                drop(watches);
                lock(&self.known).remove(&(C::KIND, ns, name));
            }
        }
    }

    /// The live version of a child: `Some(None)` when a listed watch does not have it,
    /// `None` when no listed watch covers its namespace.
    fn live<C: Child>(&self, ns: &str, name: &str) -> Option<Option<Live>> {
        let watches = lock(&self.watches);
        [Some(ns.to_owned()), None].into_iter().find_map(|scope| {
            let w = watches.get(&(C::KIND, scope))?;
            w.listed
                .then(|| w.live.get(&(ns.to_owned(), name.to_owned())).cloned())
        })
    }

    /// Remembers `obj` as just written (`applied`: hash of what was applied) or read (`None`).
    /// The object itself is kept when read, or when written and read before (the operator's
    /// own Secrets): what the operator only writes is not kept, as it would cost memory per
    /// gateway for nothing.
    fn remember<C: Child>(&self, obj: &C, applied: Option<u64>) {
        let key = (C::KIND, obj.namespace().unwrap_or_default(), obj.name_any());
        let version = Child::live(obj).version;
        let mut known = lock(&self.known);
        let read = applied.is_none() || known.get(&key).is_some_and(|k| k.read);
        let object = read.then(|| Arc::new(kept(obj.clone())) as Arc<dyn Any + Send + Sync>);
        // A read of the version the operator itself wrote still holds what it applied.
        let applied = applied.unwrap_or_else(|| {
            known
                .get(&key)
                .filter(|k| k.version == version)
                .map_or(0, |k| k.applied)
        });
        known.insert(
            key,
            Known {
                version,
                applied,
                object,
                read,
            },
        );
    }

    /// Server-side applies `obj` by [`FIELD_MANAGER`], unless exactly this was applied last and
    /// the child has not changed since.
    pub async fn apply<C: Child>(&self, api: &Api<C>, obj: &C) -> Result<(), Error> {
        let name = obj.name_any();
        let ns = obj.namespace().unwrap_or_default();
        let applied = hash_of(obj);
        let live = self.live::<C>(&ns, &name);
        let skip = lock(&self.known)
            .get(&(C::KIND, ns.clone(), name.clone()))
            .is_some_and(|k| k.applied == applied && unchanged(k, &live));
        if skip {
            self.saved("apply");
            return Ok(());
        }
        let written = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(obj),
            )
            .await
            .map_err(kube_err("apply", C::KIND, &name))?;
        self.remember(&written, Some(applied));
        Ok(())
    }

    /// Reads a ConfigMap or Secret whose every change the watches see (the operator's own, or
    /// one a gateway references): from memory while unchanged, `None` without asking when the
    /// listed watch has never seen it and the operator never wrote it. Either way the object
    /// carries only its identity, version and data (see [`kept`]).
    pub async fn get<C: Child>(
        &self,
        api: &Api<C>,
        ns: &str,
        name: &str,
    ) -> Result<Option<C>, Error> {
        let live = self.live::<C>(ns, name);
        let key = (C::KIND, ns.to_owned(), name.to_owned());
        {
            let mut known = lock(&self.known);
            let k = known.get(&key);
            let kept = k
                .filter(|k| unchanged(k, &live))
                .and_then(|k| k.object.as_ref()?.downcast_ref::<C>());
            if let Some(o) = kept {
                self.saved("get");
                return Ok(Some(o.clone()));
            }
            // The listed watch does not have it, and what the operator knows (if anything) is
            // that it was absent: absent, without asking.
            if matches!(live, Some(None)) && k.is_none_or(|k| k.version.is_empty()) {
                self.saved("get");
                known.insert(key, Known::absent());
                return Ok(None);
            }
        }
        let found = api
            .get_opt(name)
            .await
            .map_err(kube_err("get", C::KIND, name))?;
        match &found {
            Some(o) => self.remember(o, None),
            None => {
                lock(&self.known).insert(key, Known::absent());
            }
        }
        Ok(found.map(kept))
    }

    /// Remembers a child the operator just read, created or replaced (not applied).
    pub fn saw<C: Child>(&self, obj: &C) {
        self.remember(obj, None);
    }

    /// A StatefulSet's ready pods as its listed watch last saw them (0 if absent); `None`
    /// when no watch covers the namespace (a reconcile run on its own, as tests do).
    pub fn ready_replicas(&self, ns: &str, name: &str) -> Option<i32> {
        self.live::<StatefulSet>(ns, name)
            .map(|l| l.map_or(0, |l| l.ready))
    }
}

#[cfg(test)]
mod tests;
