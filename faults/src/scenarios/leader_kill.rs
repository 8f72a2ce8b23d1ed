//! Two operator replicas; the one holding the Lease is `SIGKILL`ed (the Lease is not released).
//! The other takes over within the lease (15 s + 5 s grace), reconciles a new gateway, and
//! leaves what the dead leader made as it was: no conflicting rewrite.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::Client;

use super::apiserver_restart::{create, reconciled};
use super::{wait, Ctx, Outcome};
use crate::cluster::{ControlPlane, Operator};

const NS: &str = "faults-leader";
const LEASE_NS: &str = "faults-lease";

async fn holder(client: &Client) -> Result<Option<String>> {
    let lease = Api::<Lease>::namespaced(client.clone(), LEASE_NS)
        .get_opt("edgeway-operator")
        .await?;
    Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity))
}

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let cp = ControlPlane::start(&ctx.files.dir.join("cluster-leader"), &ctx.bins.operator).await?;
    let c = &cp.client;
    cp.gateway_namespace(NS).await?;
    let mut ns = Namespace::default();
    ns.metadata.name = Some(LEASE_NS.into());
    Api::<Namespace>::all(c.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let log = |id: &str| ctx.files.dir.join(format!("operator-{id}.log"));
    let mut ops = [
        Operator::start(
            &ctx.bins.operator,
            &cp,
            "op-a",
            Some(LEASE_NS),
            &log("op-a"),
        )?,
        Operator::start(
            &ctx.bins.operator,
            &cp,
            "op-b",
            Some(LEASE_NS),
            &log("op-b"),
        )?,
    ];
    wait("a leader", Duration::from_secs(60), || async {
        Ok(holder(c).await?.is_some())
    })
    .await?;
    let leader = holder(c).await?.context("no holder")?;
    create(c, NS, "g-1").await?;
    wait("g-1 reconciled", Duration::from_secs(60), || {
        reconciled(c, NS, "g-1")
    })
    .await?;
    let sts: Api<StatefulSet> = Api::namespaced(c.clone(), NS);
    let before = sts.get("g-1").await?;

    let i = ops
        .iter()
        .position(|o| o.identity == leader)
        .context("the leader is not ours")?;
    ops[i].kill();
    let t0 = Instant::now();
    let other = ops[1 - i].identity.clone();
    wait(
        "the standby to take the Lease",
        Duration::from_secs(90),
        || async { Ok(holder(c).await?.as_deref() == Some(other.as_str())) },
    )
    .await?;
    let takeover = t0.elapsed();
    ensure!(
        takeover <= Duration::from_secs(25),
        "takeover took {takeover:?} (lease 15 s + 5 s grace)"
    );
    create(c, NS, "g-2").await?;
    wait(
        "g-2 reconciled by the new leader",
        Duration::from_secs(60),
        || reconciled(c, NS, "g-2"),
    )
    .await?;
    // The new leader's first pass went over g-1 too (it reconciles everything on start).
    wait("g-1 reconciled again", Duration::from_secs(60), || {
        reconciled(c, NS, "g-1")
    })
    .await?;
    let after = sts.get("g-1").await?;
    ensure!(
        after.metadata.generation == before.metadata.generation,
        "the new leader rewrote g-1's StatefulSet (generation {:?} -> {:?})",
        before.metadata.generation,
        after.metadata.generation
    );
    let managers: Vec<String> = after
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.operation.as_deref() == Some("Apply"))
        .filter_map(|m| m.manager)
        .collect();
    ensure!(
        managers.iter().all(|m| m == "edgeway-operator"),
        "more than one writer applies g-1's StatefulSet: {managers:?}"
    );
    ops[1 - i].ensure_alive()?;
    Ok(Outcome {
        fault: "the leading operator SIGKILLed (Lease not released), a standby running".into(),
        audit: None,
        resends_dropped: 0,
        detect: None,
        recover: Some(takeover),
        note: format!(
            "{leader} killed; {other} held the Lease {takeover:.1?} later (lease 15 s + grace 5 s), reconciled a new gateway; g-1's StatefulSet unchanged (generation {:?}), one applier",
            after.metadata.generation
        ),
    })
}
