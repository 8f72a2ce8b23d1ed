//! Kubernetes helpers of the suite: the client, waiting on conditions (never fixed sleeps),
//! server-side apply, Secret data, and what to print when a scenario fails.

use anyhow::{anyhow, bail, Context as _, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret};
use kube::api::{ListParams, LogParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource};
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

/// Field manager of everything the suite applies.
pub const MANAGER: &str = "edgeway-e2e";

/// A client for the cluster of `kubeconfig`.
pub async fn client(kubeconfig: &str) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {kubeconfig}"))?;
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

/// Polls `check` every `every` until it returns `Some`, or fails after `timeout` with the last
/// reason `check` gave (its `Err` is a "not yet, because ..." and is not fatal).
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last = String::from("not checked yet");
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() > timeout {
            bail!("{what}: not after {timeout:?} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Server-side applies `obj` (a typed object with name and namespace set).
pub async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or_else(|| anyhow!("object without a name"))?;
    let api = Api::<K>::namespaced(client.clone(), ns);
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .with_context(|| format!("applying {} {ns}/{name}", K::kind(&Default::default())))
}

/// One key of a Secret, as text.
pub async fn secret_value(client: &Client, ns: &str, name: &str, key: &str) -> Result<String> {
    let s = Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .with_context(|| format!("Secret {ns}/{name}"))?;
    let data = s
        .data
        .and_then(|mut d| d.remove(key))
        .ok_or_else(|| anyhow!("Secret {ns}/{name} has no key {key}"))?;
    String::from_utf8(data.0).with_context(|| format!("Secret {ns}/{name} key {key} is not UTF-8"))
}

/// A ConfigMap holding `data`.
pub fn config_map(name: &str, data: BTreeMap<String, String>) -> ConfigMap {
    let mut cm = ConfigMap {
        data: Some(data),
        ..Default::default()
    };
    cm.metadata.name = Some(name.into());
    cm
}

/// An Opaque Secret holding `data`.
pub fn secret(name: &str, data: BTreeMap<String, String>) -> Secret {
    let mut s = Secret {
        string_data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    s.metadata.name = Some(name.into());
    s
}

/// Prints pods, recent events and container logs of `namespaces`: what a failed run needs.
pub async fn diagnose(client: &Client, namespaces: &[&str]) {
    for ns in namespaces {
        eprintln!("\n===== namespace {ns}: pods =====");
        let pods = Api::<Pod>::namespaced(client.clone(), ns);
        let list = match pods.list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) => {
                eprintln!("listing pods: {e}");
                continue;
            }
        };
        for p in &list {
            let status = p.status.clone().unwrap_or_default();
            eprintln!(
                "{} phase={} ip={} conditions={}",
                p.metadata.name.as_deref().unwrap_or("?"),
                status.phase.as_deref().unwrap_or("?"),
                status.pod_ip.as_deref().unwrap_or("-"),
                serde_json::to_string(&status.conditions).unwrap_or_default()
            );
            for cs in status.container_statuses.unwrap_or_default() {
                eprintln!(
                    "  container {} ready={} restarts={} state={}",
                    cs.name,
                    cs.ready,
                    cs.restart_count,
                    serde_json::to_string(&cs.state).unwrap_or_default()
                );
            }
        }
        eprintln!("\n===== namespace {ns}: events =====");
        if let Ok(events) = Api::<Event>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
        {
            for e in events.items.iter().rev().take(40).rev() {
                eprintln!(
                    "{} {}/{}: {} {}",
                    e.type_.as_deref().unwrap_or(""),
                    e.involved_object.kind.as_deref().unwrap_or(""),
                    e.involved_object.name.as_deref().unwrap_or(""),
                    e.reason.as_deref().unwrap_or(""),
                    e.message.as_deref().unwrap_or("")
                );
            }
        }
        for p in &list {
            let name = p.metadata.name.clone().unwrap_or_default();
            let containers = p
                .spec
                .as_ref()
                .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_else(Vec::new);
            for c in containers {
                let lp = LogParams {
                    container: Some(c.clone()),
                    tail_lines: Some(60),
                    ..Default::default()
                };
                eprintln!("\n===== logs {ns}/{name} [{c}] (last 60 lines) =====");
                match pods.logs(&name, &lp).await {
                    Ok(l) => eprintln!("{l}"),
                    Err(e) => eprintln!("(no logs: {e})"),
                }
            }
        }
    }
}

/// The `status` of a condition of `type_` in an object's `.status.conditions`.
pub fn condition(obj: &Value, type_: &str) -> Option<String> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str().map(str::to_owned))
}
