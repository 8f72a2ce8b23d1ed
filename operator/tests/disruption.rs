//! PodDisruptionBudgets on a real kube-apiserver 1.20, which serves `policy/v1beta1` only: the
//! operator finds that version, applies a budget selecting a multi-pod gateway's pods, and
//! neutralises it (allows every disruption) when the gateway turns it off.

mod common;

use std::sync::Arc;

use common::*;
use edgeway_operator::context::{self, Settings};
use edgeway_operator::controller::{disruption_api, reconcile};
use edgeway_operator::crd::EdgeGateway;
use edgeway_operator::metrics::Metrics;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};

#[tokio::test]
async fn a_multi_pod_gateway_gets_a_budget_in_the_version_the_cluster_serves() {
    let client = client().await;
    install_crd(&client).await;
    let ar = disruption_api(&client)
        .await
        .expect("kube-apiserver 1.20 serves a PodDisruptionBudget API");
    assert_eq!(
        ar.api_version, "policy/v1beta1",
        "1.20 has no policy/v1 budgets"
    );
    let ns = namespace(&client, "pdb").await;
    prerequisites(&client, &ns).await;
    let ctx = context::context(
        client.clone(),
        Arc::new(Metrics::new()),
        Settings {
            sidecar_image: "edgeway/edgeway-sidecar:test".into(),
            disruption_api: Some(ar.clone()),
            ..Settings::default()
        },
        Some("tests".into()),
    );
    let gws: Api<EdgeGateway> = Api::namespaced(client.clone(), &ns);
    let budgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);

    let create = |gw: EdgeGateway| {
        let gws = gws.clone();
        async move {
            gws.create(&PostParams::default(), &gw)
                .await
                .expect("create gateway")
        }
    };
    create(gateway("one", serde_json::json!({}))).await;
    reconcile(Arc::new(gws.get("one").await.unwrap()), ctx.clone())
        .await
        .expect("reconcile");
    assert!(
        budgets.get_opt("one").await.unwrap().is_none(),
        "one pod: no budget"
    );

    let three = serde_json::json!({"spec": {"pod": {"replicas": 3}}});
    create(gateway("three", three)).await;
    reconcile(Arc::new(gws.get("three").await.unwrap()), ctx.clone())
        .await
        .expect("reconcile");
    let b = budgets.get("three").await.expect("a budget for three pods");
    assert_eq!(b.data["spec"]["maxUnavailable"], 1);
    assert_eq!(
        b.data["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
        "three"
    );
    assert_eq!(
        b.metadata.owner_references.as_ref().unwrap()[0].name,
        "three",
        "garbage-collected with its gateway"
    );

    // Turned off: the budget stays but allows every disruption.
    gws.patch(
        "three",
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"spec": {"pod": {"disruptionBudget": {"enabled": false}}}}),
        ),
    )
    .await
    .unwrap();
    reconcile(Arc::new(gws.get("three").await.unwrap()), ctx.clone())
        .await
        .expect("reconcile");
    let b = budgets.get("three").await.unwrap();
    assert_eq!(b.data["spec"]["maxUnavailable"], "100%");
    delete_namespace(&client, &ns).await;
}
