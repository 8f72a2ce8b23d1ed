use super::*;
use futures::stream;
use k8s_openapi::api::apps::v1::StatefulSetStatus;
use kube::api::ObjectMeta;

fn sts(uid: &str, generation: i64, ready: i32, rv: &str) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some("gw".into()),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            generation: Some(generation),
            resource_version: Some(rv.into()),
            ..Default::default()
        },
        status: Some(StatefulSetStatus {
            ready_replicas: Some(ready),
            observed_generation: Some(generation),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Runs [`statefulsets`] over recorded watch events; the resourceVersions let through.
async fn passed(events: Vec<watcher::Event<StatefulSet>>) -> Vec<String> {
    statefulsets(stream::iter(events.into_iter().map(Ok)))
        .map(|s| s.map(|s| s.metadata.resource_version.unwrap_or_default()))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("recorded events carry no errors")
}

#[tokio::test]
async fn status_churn_is_dropped_but_ready_pods_spec_and_deletion_pass() {
    use watcher::Event::*;
    let got = passed(vec![
        Apply(sts("a", 1, 0, "1")),  // created: passes
        Apply(sts("a", 1, 0, "2")),  // controller-manager status rewrite: dropped
        Apply(sts("a", 1, 0, "3")),  // again: dropped
        Apply(sts("a", 1, 1, "4")),  // a pod got ready: passes
        Apply(sts("a", 2, 1, "5")),  // spec edited: passes
        Delete(sts("a", 2, 1, "6")), // deleted with nothing else changed: passes
        Apply(sts("b", 1, 0, "7")),  // recreated (new uid): passes
        Init,
        InitApply(sts("b", 1, 0, "8")), // re-list starts over: passes
        InitDone,
    ])
    .await;
    assert_eq!(got, ["1", "4", "5", "6", "7", "8"]);
}

#[test]
fn a_config_map_wakes_its_owner_and_its_referrers_once_each() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    let gateway = |name: &str, ca: &str| {
        let mut gw: EdgeGateway = serde_json::from_value(serde_json::json!({
            "apiVersion": "edgeway.io/v1alpha1", "kind": "EdgeGateway",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"platform": {
                "url": "wss://p:443/Thingworx/WS", "gatewayName": name,
                "appKey": {"name": "k", "key": "appKey"},
                "serverVerification": {"ca": {"configMapName": ca, "key": "ca.crt"}}}}
        }))
        .expect("gateway");
        gw.metadata.uid = Some(format!("uid-{name}"));
        gw
    };
    let referrers = Referrers::default();
    referrers.observe(&watcher::Event::Init);
    for gw in [
        gateway("a", "shared"),
        gateway("b", "shared"),
        gateway("c", "other"),
    ] {
        referrers.observe(&watcher::Event::InitApply(gw));
    }
    referrers.observe(&watcher::Event::InitDone);
    let owner = |kind: &str, name: &str, controller: bool| OwnerReference {
        api_version: "edgeway.io/v1alpha1".into(),
        kind: kind.into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        controller: Some(controller),
        ..Default::default()
    };
    let cm = |name: &str, owners: Vec<OwnerReference>| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            owner_references: Some(owners),
            ..Default::default()
        },
        ..Default::default()
    };
    let woken = |obj: &ConfigMap| {
        let mut names: Vec<String> = referrers
            .owner_and_referrers(Referenced::ConfigMap, obj)
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        names
    };
    // Referenced by a and b, owned by a: a once.
    assert_eq!(
        woken(&cm("shared", vec![owner("EdgeGateway", "a", true)])),
        ["a", "b"]
    );
    // Owned by c (its config), referenced by nobody.
    assert_eq!(
        woken(&cm("c-config", vec![owner("EdgeGateway", "c", true)])),
        ["c"]
    );
    // Not a controller reference, or another kind: nobody.
    assert!(woken(&cm("x", vec![owner("EdgeGateway", "a", false)])).is_empty());
    assert!(woken(&cm("y", vec![owner("Deployment", "a", true)])).is_empty());
    // A Secret of the same name is not the ConfigMap.
    assert!(referrers
        .owner_and_referrers(Referenced::Secret, &cm("shared", vec![]))
        .is_empty());
    // b now names another ConfigMap; a is deleted; a re-list without c forgets c.
    referrers.observe(&watcher::Event::Apply(gateway("b", "moved")));
    referrers.observe(&watcher::Event::Delete(gateway("a", "shared")));
    assert!(woken(&cm("shared", vec![])).is_empty());
    assert_eq!(woken(&cm("moved", vec![])), ["b"]);
    referrers.observe(&watcher::Event::Init);
    referrers.observe(&watcher::Event::InitApply(gateway("b", "moved")));
    referrers.observe(&watcher::Event::InitDone);
    assert!(woken(&cm("other", vec![])).is_empty());
    assert_eq!(woken(&cm("moved", vec![])), ["b"]);
}
