//! Monitoring: a real Prometheus (Debian's binary, on this machine, which is the node) scrapes
//! the gateways, the platform and the operator the way the chart's PodMonitors and
//! ServiceMonitor say, loads the chart's alert rules, and answers every query of the chart's
//! dashboard with the fleet's real numbers.
//!
//! No Prometheus Operator runs here: [`scrape_config`] does its part, the translation of a
//! monitor into a scrape job (keep the pods or endpoints whose labels match the selector and
//! whose port has the monitor's name, set `namespace`/`pod`, then the monitor's own
//! relabelings), for the fields the chart uses. Debian builds Prometheus without its Kubernetes
//! discovery, so [`discover`] stands in for it: it lists the pods (or endpoints) of the
//! monitor's namespaces and gives each port the `__meta_kubernetes_*` labels that discovery
//! would, and Prometheus's own relabeling does the rest.

use crate::cluster::{wait_for, MANAGER};
use crate::http::request;
use crate::scenarios::{Suite, GW_NS};
use anyhow::{anyhow, bail, ensure, Context as _, Result};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Devices the suite's gateways serve at this point: 1,200 meters and two Lua pumps.
const THINGS: f64 = 1202.0;

/// Kills Prometheus when the scenario ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Suite {
    /// The chart's monitoring objects drive a real Prometheus over the running fleet.
    pub async fn monitoring(&self) -> Result<()> {
        let Some(bin) = &self.s.prometheus else {
            println!(
                "    skipped: no --prometheus (pod IPs are reachable only on the local cluster)"
            );
            return Ok(());
        };
        self.monitoring_crds().await?;
        let set = r#"metrics={"serviceMonitor":{"enabled":true},"podMonitor":{"enabled":true}}"#;
        self.release("upgrade", &["--set-json", set])?;

        let dir =
            std::env::temp_dir().join(format!("edgeway-e2e-prometheus-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("data"))?;
        let mut jobs = Vec::new();
        for (kind, plural) in [
            ("PodMonitor", "podmonitors"),
            ("ServiceMonitor", "servicemonitors"),
        ] {
            let api = self.monitors(kind, plural);
            for m in api.list(&ListParams::default()).await?.items {
                let targets = self.discover(kind, &m).await?;
                jobs.push(scrape_config(kind, &m, targets)?);
            }
        }
        ensure!(
            jobs.len() == 3,
            "3 monitors expected (gateways, platform, operator): {jobs:#?}"
        );
        let rules = self.s.repo.join("charts/edgeway/files/alerts.yaml");
        let config = json!({
            "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
            "rule_files": [rules],
            "scrape_configs": jobs,
        });
        std::fs::write(
            dir.join("prometheus.yml"),
            serde_json::to_vec_pretty(&config)?,
        )?;
        let addr = free_addr()?;
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let _running = Running(child);
        let result = self.monitoring_checks(addr).await;
        if result.is_err() {
            let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!("    prometheus log (last lines):");
            for l in tail.iter().rev() {
                eprintln!("      {l}");
            }
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    async fn monitoring_checks(&self, prom: SocketAddr) -> Result<()> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), GW_NS)
            .list(&ListParams::default().labels("app.kubernetes.io/name=edgeway-gateway"))
            .await?
            .items
            .len();
        // Every gateway pod, the platform and the operator scraped and up.
        let targets = wait_for(
            "every target scraped and up",
            Duration::from_secs(90),
            || async {
                let t = prom_get(prom, "/api/v1/targets?state=active").await?;
                let active = t["activeTargets"].as_array().context("no activeTargets")?;
                let down: Vec<String> = active
                    .iter()
                    .filter(|t| t["health"] != "up")
                    .map(|t| format!("{} {} ({})", t["scrapeUrl"], t["health"], t["lastError"]))
                    .collect();
                let gateways = active
                    .iter()
                    .filter(|t| t["labels"]["gateway"].is_string())
                    .count();
                if down.is_empty() && gateways == pods && active.len() >= pods + 2 {
                    return Ok(Some(active.len()));
                }
                Err(anyhow!(
                    "{gateways}/{pods} gateway pods among {} targets; not up: {down:?}",
                    active.len()
                ))
            },
        )
        .await?;
        println!("    {targets} targets up ({pods} gateway pods, the platform, the operator)");

        // The fleet numbers the dashboard's top row shows, against what the suite knows.
        let gateways = query_number(
            prom,
            "count(count by (namespace, gateway) (edgeway_sidecar_tunnel_up))",
        )
        .await?;
        ensure!(
            gateways == 2.0,
            "dashboard 'Gateways' = {gateways}, 2 gateways run"
        );
        let up = query_number(prom, "sum(edgeway_sidecar_tunnel_up)").await?;
        ensure!(
            up == pods as f64,
            "dashboard 'Tunnels up' = {up}, {pods} pods are connected"
        );
        let things = query_number(prom, "sum(edgeway_sidecar_things)").await?;
        ensure!(
            things == THINGS,
            "dashboard 'Devices' = {things}, want {THINGS}"
        );
        let shards = query_number(
            prom,
            "count(count by (shard) (edgeway_sidecar_things{gateway=\"meters\"}))",
        )
        .await?;
        ensure!(
            shards == 3.0,
            "the fleet's pods carry {shards} shard labels, want 3"
        );
        let rate = positive(
            prom,
            "sum(rate(edgeway_sidecar_tunnel_updates_total{kind=\"acked\"}[30s]))",
        )
        .await?;
        // The platform's scrape: it holds a tunnel per gateway pod and stores what they send.
        let platform_up = query_number(prom, "sum(edgeway_platform_tunnels_up)").await?;
        ensure!(
            platform_up == pods as f64,
            "the platform counts {platform_up} tunnels, {pods} pods are connected"
        );
        let stored = positive(
            prom,
            "sum(rate(edgeway_platform_tunnel_updates_total{kind=\"stored\"}[30s]))",
        )
        .await?;
        // honorLabels: the operator's certificate series keep the gateway's namespace.
        let certs = query_number(prom, &format!(
            "count(edgeway_operator_certificate_renewal_timestamp_seconds{{namespace=\"{GW_NS}\",gateway=\"meters\"}})"
        ))
        .await?;
        ensure!(
            certs >= 2.0,
            "operator certificate series of {GW_NS}/meters: {certs} (honorLabels?)"
        );
        println!("    gateways 2, tunnels up {up}, devices {things}, 3 shards, {rate:.1} updates/s acknowledged, {stored:.1}/s stored by the platform ({platform_up} tunnels), {certs} operator certificates of meters");

        // Every dashboard query evaluates; those over always-present series return data.
        let dash: Value = serde_json::from_slice(&std::fs::read(
            self.s.repo.join("charts/edgeway/files/dashboard.json"),
        )?)?;
        let mut asked = 0;
        let mut empty = Vec::new();
        for panel in dash["panels"].as_array().context("panels")? {
            for t in panel["targets"].as_array().into_iter().flatten() {
                let expr = grafana_vars(t["expr"].as_str().context("expr")?);
                let r = query(prom, &expr)
                    .await
                    .with_context(|| format!("dashboard panel {:?}: {expr}", panel["title"]))?;
                asked += 1;
                if r.as_array().is_some_and(|a| a.is_empty()) {
                    empty.push(format!("{}: {expr}", panel["title"]));
                }
            }
        }
        println!("    {asked} dashboard queries evaluated; {} without data now (errors, drops, Lua, ... that have not happened):", empty.len());
        for e in &empty {
            println!("      {e}");
        }
        ensure!(
            empty.len() < asked / 2,
            "most dashboard queries are empty: {empty:#?}"
        );

        // The alert rules load and evaluate; a healthy fleet raises none of them.
        let rules = wait_for("alert rules evaluated", Duration::from_secs(30), || async {
            let r = prom_get(prom, "/api/v1/rules?type=alert").await?;
            let rules: Vec<Value> = r["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let bad: Vec<String> = rules
                .iter()
                .filter(|r| r["health"] != "ok")
                .map(|r| format!("{}: {} {}", r["name"], r["health"], r["lastError"]))
                .collect();
            if rules.len() >= 14 && bad.is_empty() {
                return Ok(Some(rules));
            }
            Err(anyhow!("{} rules, not ok: {bad:?}", rules.len()))
        })
        .await?;
        let raised: Vec<String> = rules
            .iter()
            .filter(|r| r["state"] != "inactive")
            .map(|r| format!("{} ({}): {}", r["name"], r["state"], r["alerts"]))
            .collect();
        ensure!(
            raised.is_empty(),
            "a healthy fleet raises alerts: {raised:#?}"
        );
        println!(
            "    {} alert rules loaded and evaluated, none pending or firing",
            rules.len()
        );
        Ok(())
    }

    /// Our stand-ins for the Prometheus Operator's CRDs (hack/monitoring/crds.yaml).
    async fn monitoring_crds(&self) -> Result<()> {
        let text = std::fs::read_to_string(self.s.repo.join("hack/monitoring/crds.yaml"))?;
        let list: Value = serde_saphyr::from_str(&text).context("hack/monitoring/crds.yaml")?;
        let api = Api::<CustomResourceDefinition>::all(self.client.clone());
        for item in list["items"].as_array().context("items")? {
            let crd: CustomResourceDefinition = serde_json::from_value(item.clone())?;
            let name = crd.metadata.name.clone().context("CRD name")?;
            api.patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await
            .with_context(|| format!("applying CRD {name}"))?;
            wait_for(
                &format!("CRD {name} established"),
                Duration::from_secs(60),
                || async {
                    let c = api.get(&name).await?;
                    let ok = c
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    Ok(ok.then_some(()))
                },
            )
            .await?;
        }
        Ok(())
    }

    /// The targets Prometheus's Kubernetes discovery would give a monitor (role `pod` for a
    /// PodMonitor, `endpoints` for a ServiceMonitor), in the monitor's namespaces, with the
    /// meta labels its relabeling reads.
    async fn discover(&self, kind: &str, m: &DynamicObject) -> Result<Vec<Value>> {
        let sel = &m.data["spec"]["namespaceSelector"];
        let namespaces: Vec<Option<String>> = if sel["any"] == true {
            vec![None]
        } else if let Some(names) = sel["matchNames"].as_array() {
            names
                .iter()
                .map(|n| n.as_str().map(str::to_owned))
                .collect()
        } else {
            vec![m.metadata.namespace.clone()]
        };
        let mut targets = Vec::new();
        for ns in namespaces {
            if kind == "PodMonitor" {
                let api: Api<Pod> = match &ns {
                    Some(ns) => Api::namespaced(self.client.clone(), ns),
                    None => Api::all(self.client.clone()),
                };
                for pod in api.list(&ListParams::default()).await?.items {
                    let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
                        continue;
                    };
                    let mut base = serde_json::Map::new();
                    base.insert(
                        "__meta_kubernetes_namespace".into(),
                        json!(pod.metadata.namespace),
                    );
                    base.insert(
                        "__meta_kubernetes_pod_name".into(),
                        json!(pod.metadata.name),
                    );
                    for (k, v) in pod.metadata.labels.iter().flatten() {
                        base.insert(
                            format!("__meta_kubernetes_pod_label_{}", label_name(k)),
                            json!(v),
                        );
                    }
                    for c in pod.spec.iter().flat_map(|s| &s.containers) {
                        for p in c.ports.iter().flatten() {
                            let mut labels = base.clone();
                            labels.insert(
                                "__meta_kubernetes_pod_container_port_name".into(),
                                json!(p.name.clone().unwrap_or_default()),
                            );
                            targets.push(json!({"targets": [format!("{ip}:{}", p.container_port)], "labels": labels}));
                        }
                    }
                }
            } else {
                let ns = ns.context("a ServiceMonitor here names its namespaces")?;
                let services = Api::<Service>::namespaced(self.client.clone(), &ns);
                for ep in Api::<Endpoints>::namespaced(self.client.clone(), &ns)
                    .list(&ListParams::default())
                    .await?
                    .items
                {
                    let name = ep.metadata.name.clone().unwrap_or_default();
                    let Ok(svc) = services.get(&name).await else {
                        continue;
                    };
                    let mut base = serde_json::Map::new();
                    base.insert("__meta_kubernetes_namespace".into(), json!(ns));
                    for (k, v) in svc.metadata.labels.iter().flatten() {
                        base.insert(
                            format!("__meta_kubernetes_service_label_{}", label_name(k)),
                            json!(v),
                        );
                    }
                    for subset in ep.subsets.iter().flatten() {
                        for a in subset.addresses.iter().flatten() {
                            for p in subset.ports.iter().flatten() {
                                let mut labels = base.clone();
                                let pod = a.target_ref.as_ref().and_then(|r| r.name.clone());
                                labels.insert(
                                    "__meta_kubernetes_pod_name".into(),
                                    json!(pod.unwrap_or_default()),
                                );
                                labels.insert(
                                    "__meta_kubernetes_endpoint_port_name".into(),
                                    json!(p.name.clone().unwrap_or_default()),
                                );
                                targets.push(json!({"targets": [format!("{}:{}", a.ip, p.port)], "labels": labels}));
                            }
                        }
                    }
                }
            }
        }
        Ok(targets)
    }

    fn monitors(&self, kind: &str, plural: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
        Api::namespaced_with(self.client.clone(), &self.s.namespace, &ar)
    }
}

/// The scrape job the Prometheus Operator makes of a PodMonitor's or ServiceMonitor's first
/// endpoint (`role: pod` / `role: endpoints`).
fn scrape_config(kind: &str, m: &DynamicObject, targets: Vec<Value>) -> Result<Value> {
    let spec = &m.data["spec"];
    let (role, meta, endpoint) = match kind {
        "PodMonitor" => ("pod", "pod", &spec["podMetricsEndpoints"][0]),
        _ => ("endpoints", "service", &spec["endpoints"][0]),
    };
    let mut relabel = Vec::new();
    for (k, v) in spec["selector"]["matchLabels"]
        .as_object()
        .context("selector")?
    {
        let k = label_name(k);
        relabel.push(json!({"action": "keep", "source_labels": [format!("__meta_kubernetes_{meta}_label_{k}")], "regex": v}));
    }
    let port_label = if role == "pod" {
        "__meta_kubernetes_pod_container_port_name"
    } else {
        "__meta_kubernetes_endpoint_port_name"
    };
    relabel
        .push(json!({"action": "keep", "source_labels": [port_label], "regex": endpoint["port"]}));
    relabel.push(
        json!({"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"}),
    );
    relabel.push(json!({"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"}));
    for r in endpoint["relabelings"].as_array().into_iter().flatten() {
        let mut out = serde_json::Map::new();
        for (k, v) in r.as_object().context("relabeling")? {
            let key = match k.as_str() {
                "sourceLabels" => "source_labels",
                "targetLabel" => "target_label",
                "separator" | "regex" | "replacement" | "action" | "modulus" => k.as_str(),
                other => bail!("relabeling field {other} not translated"),
            };
            out.insert(key.to_owned(), v.clone());
        }
        relabel.push(Value::Object(out));
    }
    Ok(json!({
        "job_name": format!("{}/{}", kind, m.metadata.name.as_deref().unwrap_or("")),
        "metrics_path": endpoint["path"].as_str().unwrap_or("/metrics"),
        "honor_labels": endpoint["honorLabels"] == true,
        "static_configs": targets,
        "relabel_configs": relabel,
    }))
}

/// A Kubernetes label as a Prometheus label name (as its Kubernetes discovery writes it).
fn label_name(k: &str) -> String {
    k.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// What Grafana puts in for the dashboard's variables.
fn grafana_vars(expr: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$__range", "5m")
        .replace("$namespace", ".*")
        .replace("$gateway", ".*")
}

fn free_addr() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// GET from Prometheus's API; its `data`.
async fn prom_get(prom: SocketAddr, path: &str) -> Result<Value> {
    let r = request(prom, None, "GET", path, &[], None).await?;
    let body = r.json()?;
    ensure!(
        r.status == 200 && body["status"] == "success",
        "GET {path}: {} {body}",
        r.status
    );
    Ok(body["data"].clone())
}

/// An instant query's result vector.
async fn query(prom: SocketAddr, expr: &str) -> Result<Value> {
    let data = prom_get(prom, &format!("/api/v1/query?query={}", encode(expr))).await?;
    Ok(data["result"].clone())
}

/// An instant query that must yield one number.
async fn query_number(prom: SocketAddr, expr: &str) -> Result<f64> {
    let r = query(prom, expr).await?;
    let v = r[0]["value"][1]
        .as_str()
        .with_context(|| format!("{expr}: no single value in {r}"))?;
    v.parse().with_context(|| format!("{expr}: {v}"))
}

/// Waits (up to a minute: rates need two scrapes) until `expr` yields a number above zero.
async fn positive(prom: SocketAddr, expr: &str) -> Result<f64> {
    wait_for(&format!("{expr} > 0"), Duration::from_secs(60), || async {
        Ok(query_number(prom, expr).await.ok().filter(|r| *r > 0.0))
    })
    .await
}

/// Percent-encoding of a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
