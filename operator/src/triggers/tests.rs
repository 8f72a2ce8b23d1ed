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
