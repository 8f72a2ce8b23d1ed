//! kube-apiserver `SIGKILL`ed while the operator reconciles 20 new gateways, back 3 s later:
//! the operator (not restarted) converges — every gateway gets exactly the children the first
//! gateway got, nothing twice, the shared CA Secrets once — and the time it took is measured.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, ListParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use kube::Client;

use super::{wait, Ctx, Outcome};
use crate::cluster::{gateway, ControlPlane, Operator};

const NS: &str = "faults-apiserver";
const GATEWAYS: usize = 20;
const SELECTOR: &str = "app.kubernetes.io/managed-by=edgeway-operator";

/// Children per (kind, gateway); the shared ones (namespace CAs) under gateway "".
pub async fn children(client: &Client, ns: &str) -> Result<BTreeMap<(String, String), usize>> {
    let lp = ListParams::default().labels(SELECTOR);
    let mut out = BTreeMap::new();
    let mut add = |kind: &str, labels: Option<&BTreeMap<String, String>>| {
        let gw = labels
            .and_then(|l| l.get("app.kubernetes.io/instance"))
            .cloned()
            .unwrap_or_default();
        *out.entry((kind.to_owned(), gw)).or_insert(0) += 1;
    };
    for o in Api::<StatefulSet>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        add("StatefulSet", o.metadata.labels.as_ref());
    }
    for o in Api::<Service>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        add("Service", o.metadata.labels.as_ref());
    }
    for o in Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        add("ConfigMap", o.metadata.labels.as_ref());
    }
    for o in Api::<Secret>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        add("Secret", o.metadata.labels.as_ref());
    }
    Ok(out)
}

/// Whether `name` has been reconciled: its status observed its generation.
pub async fn reconciled(client: &Client, ns: &str, name: &str) -> Result<bool> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "edgeway.io",
        "v1alpha1",
        "EdgeGateway",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let gw = api.get(name).await?;
    Ok(gw.data["status"]["observedGeneration"].as_i64() == gw.metadata.generation)
}

/// Creates a gateway.
pub async fn create(client: &Client, ns: &str, name: &str) -> Result<()> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "edgeway.io",
        "v1alpha1",
        "EdgeGateway",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let obj: DynamicObject = serde_json::from_value(gateway(name))?;
    api.create(&PostParams::default(), &obj).await?;
    Ok(())
}

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let cp =
        ControlPlane::start(&ctx.files.dir.join("cluster-apiserver"), &ctx.bins.operator).await?;
    cp.gateway_namespace(NS).await?;
    let c = &cp.client;
    let mut op = Operator::start(
        &ctx.bins.operator,
        &cp,
        "op-a",
        None,
        &ctx.files.dir.join("operator-apiserver.log"),
    )?;
    create(c, NS, "g-0").await?;
    wait("g-0 reconciled", Duration::from_secs(60), || {
        reconciled(c, NS, "g-0")
    })
    .await?;
    let before = children(c, NS).await?;
    let of = |m: &BTreeMap<(String, String), usize>, gw: &str| -> BTreeMap<String, usize> {
        m.iter()
            .filter(|((_, g), _)| g == gw)
            .map(|((k, _), n)| (k.clone(), *n))
            .collect()
    };
    let one = of(&before, "g-0");
    ensure!(!one.is_empty(), "g-0 has no children");

    for i in 1..=GATEWAYS {
        create(c, NS, &format!("g-{i}")).await?;
    }
    // Mid-reconcile: the operator is working through the burst.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cp.restart_apiserver(Duration::from_secs(3)).await?;
    let t1 = Instant::now();
    wait("the API server back", Duration::from_secs(120), || async {
        Ok(cp.healthy().await)
    })
    .await?;
    let back = t1.elapsed();
    for i in 0..=GATEWAYS {
        let name = format!("g-{i}");
        wait(
            &format!("{name} reconciled"),
            Duration::from_secs(180),
            || reconciled(c, NS, &name),
        )
        .await?;
    }
    let converged = t1.elapsed();
    op.ensure_alive()?;
    let after = children(c, NS).await?;
    for i in 0..=GATEWAYS {
        let gw = format!("g-{i}");
        ensure!(
            of(&after, &gw) == one,
            "{gw}'s children {:?}, g-0 had {one:?}",
            of(&after, &gw)
        );
    }
    ensure!(
        of(&after, "") == of(&before, ""),
        "shared objects {:?}, before the burst {:?}",
        of(&after, ""),
        of(&before, "")
    );
    let objects: usize = after.values().sum();
    Ok(Outcome {
        fault: format!("kube-apiserver SIGKILL while {GATEWAYS} new gateways reconcile, restarted 3 s later"),
        audit: None,
        resends_dropped: 0,
        detect: None,
        recover: Some(converged),
        note: format!(
            "API server serving again {back:.1?} after the restart; all {} gateways reconciled {converged:.1?} after it; {objects} objects, each gateway exactly g-0's {one:?}, operator never restarted",
            GATEWAYS + 1
        ),
    })
}
