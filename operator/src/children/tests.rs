//! `Children` without an API server: its client points at a closed port, so a call it makes
//! fails, and one it saves succeeds.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;

use super::*;

fn dead_client() -> kube::Client {
    // Port 1 on loopback: nothing listens, so every request fails at once.
    let config = kube::Config::new("http://127.0.0.1:1".parse().expect("url"));
    kube::Client::try_from(config).expect("client")
}

fn meta(name: &str, rv: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("ns".into()),
        resource_version: Some(rv.into()),
        ..Default::default()
    }
}

fn config_map(name: &str, rv: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta(name, rv),
        data: Some(BTreeMap::from([("k".into(), value.into())])),
        ..Default::default()
    }
}

fn secret(name: &str, rv: &str) -> Secret {
    Secret {
        metadata: meta(name, rv),
        string_data: Some(BTreeMap::from([("password".into(), "p".into())])),
        ..Default::default()
    }
}

fn children() -> Arc<Children> {
    Arc::new(Children::new(Family::default()))
}

fn saved(c: &Children, call: &'static str) -> u64 {
    c.saved.get_or_create(&SavedLabels { call }).get()
}

/// Feeds watch events of kind `C` in the `ns` scope.
fn watch<C: Child>(c: &Children, events: Vec<Event<C>>) {
    for e in &events {
        c.observe::<C, C>(&Some("ns".into()), e);
    }
}

fn listed<C: Child>(c: &Children, objects: Vec<C>) {
    let mut events = vec![Event::Init];
    events.extend(objects.into_iter().map(Event::InitApply));
    events.push(Event::InitDone);
    watch(c, events);
}

#[tokio::test]
async fn an_apply_is_skipped_only_while_the_child_is_unchanged_and_the_object_the_same() {
    let c = children();
    let api: Api<ConfigMap> = Api::namespaced(dead_client(), "ns");
    let cm = config_map("cm", "", "a");
    // Nothing known: the call is made (and fails here).
    assert!(c.apply(&api, &cm).await.is_err());
    // As if the apply had answered with resourceVersion 7, and the watch shows 7.
    c.remember(&config_map("cm", "7", "a"), Some(hash_of(&cm)));
    listed(&c, vec![config_map("cm", "7", "a")]);
    assert!(
        c.apply(&api, &cm).await.is_ok(),
        "same object, unchanged child"
    );
    assert_eq!(saved(&c, "apply"), 1);
    // A different object is applied.
    assert!(c.apply(&api, &config_map("cm", "", "b")).await.is_err());
    // Someone else edits the child (version 8): applied again.
    watch(&c, vec![Event::Apply(config_map("cm", "8", "x"))]);
    assert!(c.apply(&api, &cm).await.is_err());
    // Deleted: applied again, and forgotten.
    watch(&c, vec![Event::Apply(config_map("cm", "7", "a"))]);
    assert!(c.apply(&api, &cm).await.is_ok());
    watch(&c, vec![Event::Delete(config_map("cm", "7", "a"))]);
    assert!(c.apply(&api, &cm).await.is_err());
    assert!(c.known.lock().unwrap().is_empty());
    assert_eq!(saved(&c, "apply"), 2);
}

#[tokio::test]
async fn a_watch_behind_the_operators_own_write_costs_a_call_not_a_skip() {
    let c = children();
    let api: Api<ConfigMap> = Api::namespaced(dead_client(), "ns");
    let cm = config_map("cm", "", "a");
    listed(&c, vec![config_map("cm", "6", "old")]);
    c.remember(&config_map("cm", "7", "a"), Some(hash_of(&cm)));
    assert!(c.apply(&api, &cm).await.is_err(), "watch still at 6");
    watch(&c, vec![Event::Apply(config_map("cm", "7", "a"))]);
    assert!(c.apply(&api, &cm).await.is_ok());
}

#[tokio::test]
async fn own_secrets_are_read_from_memory_and_absence_is_trusted_only_once_listed() {
    let c = children();
    let api: Api<Secret> = Api::namespaced(dead_client(), "ns");
    // No listed watch: a read asks the API server.
    assert!(c.get(&api, "ns", "s").await.is_err());
    // A watch mid-list is not listed yet.
    watch::<Secret>(&c, vec![Event::Init]);
    assert!(c.get(&api, "ns", "s").await.is_err());
    watch::<Secret>(&c, vec![Event::InitDone]);
    assert!(matches!(c.get(&api, "ns", "s").await, Ok(None)));
    // Written by the operator at version 3, seen by the watch: answered from memory.
    c.saw(&secret("s", "3"));
    watch(&c, vec![Event::Apply(secret("s", "3"))]);
    let read = c.get(&api, "ns", "s").await.expect("from memory");
    assert_eq!(read.and_then(|s| s.resource_version()), Some("3".into()));
    // Changed by someone else: asked again.
    watch(&c, vec![Event::Apply(secret("s", "4"))]);
    assert!(c.get(&api, "ns", "s").await.is_err());
    // The watch has a Secret the operator never read: asked.
    watch(&c, vec![Event::Apply(secret("other", "9"))]);
    assert!(c.get(&api, "ns", "other").await.is_err());
    assert_eq!(saved(&c, "get"), 2);
}

#[test]
fn a_read_of_the_version_the_operator_applied_keeps_what_it_applied() {
    let c = children();
    let s = secret("s", "5");
    c.remember(&s, Some(42));
    c.saw(&s);
    let key = ("Secret", "ns".to_owned(), "s".to_owned());
    assert_eq!(c.known.lock().unwrap()[&key].applied, 42);
    c.saw(&secret("s", "6"));
    assert_eq!(c.known.lock().unwrap()[&key].applied, 0);
}

#[test]
fn a_relist_replaces_what_the_watch_had_and_statefulsets_carry_their_ready_pods() {
    let c = children();
    let sts = |name: &str, generation: i64, ready: i32| StatefulSet {
        metadata: ObjectMeta {
            generation: Some(generation),
            ..meta(name, "100")
        },
        status: Some(StatefulSetStatus {
            ready_replicas: Some(ready),
            ..Default::default()
        }),
        ..Default::default()
    };
    listed(&c, vec![sts("a", 1, 0), sts("b", 1, 2)]);
    assert_eq!(c.ready_replicas("ns", "b"), Some(2));
    assert_eq!(
        c.live::<StatefulSet>("ns", "a"),
        Some(Some(Live {
            version: "g1".into(),
            ready: 0
        }))
    );
    // Status churn that changes neither generation nor ready pods keeps the version.
    let mut churned = sts("a", 1, 0);
    churned.metadata.resource_version = Some("101".into());
    watch(&c, vec![Event::Apply(churned)]);
    assert_eq!(
        c.live::<StatefulSet>("ns", "a").flatten().unwrap().version,
        "g1"
    );
    // A relist without `b` (deleted while the watch was down) forgets it.
    listed(&c, vec![sts("a", 2, 1)]);
    assert_eq!(c.ready_replicas("ns", "b"), Some(0));
    assert_eq!(c.live::<StatefulSet>("ns", "b"), Some(None));
    assert_eq!(c.ready_replicas("ns", "a"), Some(1));
    assert_eq!(c.ready_replicas("other", "a"), None);
    // Another namespace has no listed watch here.
    assert_eq!(c.live::<StatefulSet>("other", "a"), None);
}

#[tokio::test]
async fn a_secret_read_absent_then_written_is_read_back_from_memory() {
    let c = children();
    let api: Api<Secret> = Api::namespaced(dead_client(), "ns");
    listed::<Secret>(&c, vec![]);
    assert!(matches!(c.get(&api, "ns", "s").await, Ok(None)));
    assert!(
        matches!(c.get(&api, "ns", "s").await, Ok(None)),
        "still absent"
    );
    // The operator applies it (the answer carries version 3); the watch catches up.
    c.remember(&secret("s", "3"), Some(7));
    watch(&c, vec![Event::Apply(secret("s", "3"))]);
    let read = c.get(&api, "ns", "s").await.expect("from memory");
    assert_eq!(read.and_then(|s| s.resource_version()), Some("3".into()));
    // A ConfigMap the operator only applies is not kept, so a read of it asks.
    let maps: Api<ConfigMap> = Api::namespaced(dead_client(), "ns");
    c.remember(&config_map("cm", "4", "a"), Some(9));
    watch(&c, vec![Event::Apply(config_map("cm", "4", "a"))]);
    assert!(c.get(&maps, "ns", "cm").await.is_err());
}

/// What a read returns from memory is the child's identity, version and data: its labels,
/// owners and managed fields are not kept (the memory of 10,000 gateways' Secrets).
#[tokio::test]
async fn a_read_from_memory_returns_identity_version_and_data_only() {
    let c = children();
    let api: Api<Secret> = Api::namespaced(dead_client(), "ns");
    let mut s = secret("s", "7");
    s.metadata.uid = Some("u-1".into());
    s.metadata.labels = Some(BTreeMap::from([("app".into(), "x".into())]));
    s.metadata.owner_references = Some(vec![Default::default()]);
    s.metadata.managed_fields = Some(vec![Default::default()]);
    c.saw(&s);
    listed(&c, vec![secret("s", "7")]);
    let read = c
        .get(&api, "ns", "s")
        .await
        .expect("from memory")
        .expect("present");
    assert_eq!(saved(&c, "get"), 1);
    assert_eq!(read.string_data, s.string_data, "data kept");
    assert_eq!(
        (
            read.metadata.name.as_deref(),
            read.metadata.namespace.as_deref()
        ),
        (Some("s"), Some("ns"))
    );
    assert_eq!(read.metadata.uid.as_deref(), Some("u-1"));
    assert_eq!(read.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(read.metadata.labels, None);
    assert_eq!(read.metadata.owner_references, None);
    assert_eq!(read.metadata.managed_fields, None);
}
