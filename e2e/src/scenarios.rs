//! The scenarios of issue 5, in order: each one asserts what a user would check by hand.

use crate::cluster::{apply, condition, config_map, secret, secret_value, wait_for, MANAGER};
use crate::http::{self, follow_events, pem_serial, request, Tls};
use crate::reach::Reach;
use anyhow::{anyhow, bail, ensure, Context as _, Result};
use edgeway_operator::certs::{Ca, Usage};
use edgeway_operator::crd::{EdgeGateway, KeyAlgorithm};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the gateways run.
pub const GW_NS: &str = "e2e-gw";
/// Devices of the fleet gateway (examples/cluster/demo-fleet.yaml).
const FLEET: usize = 1200;
/// Things of the Lua gateway (examples/cluster/demo-lua.yaml).
const PUMPS: [&str; 2] = ["Pump1", "Pump2"];
/// Fleet devices whose values are followed across the platform restart, one per pod.
const SAMPLES: [&str; 3] = ["meter-0", "meter-400", "meter-800"];

/// Settings of a run (from the command line).
pub struct Settings {
    /// Repository root (chart, examples).
    pub repo: PathBuf,
    /// Kubeconfig path (for helm and kubectl).
    pub kubeconfig: String,
    /// Release name and namespace of the chart.
    pub release: String,
    /// Namespace of the release.
    pub namespace: String,
    /// The helm command (`helm`, or `python e2e/helm.py`).
    pub helm: Vec<String>,
    /// Image repository and tag the chart installs.
    pub image: (String, String),
    /// Mosquitto image of the MQTT scenario.
    pub mosquitto_image: String,
    /// Prometheus binary of the monitoring scenario (none: skipped).
    pub prometheus: Option<PathBuf>,
}

/// State shared by the scenarios.
pub struct Suite {
    /// Settings.
    pub s: Settings,
    /// API client.
    pub client: Client,
    /// Service addressing.
    pub reach: Reach,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Suite {
    fn helm(&self, args: &[&str]) -> Result<()> {
        let (cmd, pre) = self.s.helm.split_first().context("empty --helm")?;
        let out = Command::new(cmd)
            .args(pre)
            .args(args)
            .args(["--kubeconfig", &self.s.kubeconfig])
            .output()
            .with_context(|| format!("running {cmd}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(out.status.success(), "helm {}: {text}", args.join(" "));
        println!("    helm {}: ok", args[0]);
        Ok(())
    }

    pub(crate) fn platform_name(&self) -> String {
        format!("{}-platform", self.s.release)
    }

    async fn platform(&self) -> Result<(SocketAddr, Vec<(&'static str, String)>)> {
        let ns = &self.s.namespace;
        let addr = self.reach.service(ns, &self.platform_name(), 8080).await?;
        let token = secret_value(&self.client, ns, &self.platform_name(), "rest-token").await?;
        Ok((addr, vec![("authorization", format!("Bearer {token}"))]))
    }

    pub(crate) async fn platform_get(&self, path: &str) -> Result<Value> {
        let (addr, auth) = self.platform().await?;
        let r = request(addr, None, "GET", path, &auth, None).await?;
        ensure!(
            r.status == 200,
            "GET {path}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    /// Installs the chart with the reference platform, waiting until it is ready.
    pub async fn install(&self) -> Result<()> {
        self.release("install", &["--create-namespace"])?;
        let deploy = Api::<Deployment>::namespaced(self.client.clone(), &self.s.namespace)
            .get(&format!("{}-operator", self.s.release))
            .await?;
        let ready = deploy.status.and_then(|s| s.ready_replicas).unwrap_or(0);
        ensure!(ready >= 1, "operator Deployment has {ready} ready replicas");
        Ok(())
    }

    /// `helm install` or `upgrade` of the chart with the suite's values (the image under test,
    /// the reference platform) and `extra` arguments, waiting until it is ready.
    pub(crate) fn release(&self, verb: &str, extra: &[&str]) -> Result<()> {
        let chart = self.s.repo.join("charts/edgeway");
        let image = json!({"repository": self.s.image.0, "tag": self.s.image.1,
                           "pullPolicy": "IfNotPresent"})
        .to_string();
        let image = format!("image={image}");
        let chart = chart.to_string_lossy();
        let mut args = vec![verb, &self.s.release, &chart, "-n", &self.s.namespace];
        args.extend_from_slice(&["--set-json", &image, "--set-json", "platform.enabled=true"]);
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--wait", "--timeout", "300s"]);
        self.helm(&args)
    }

    /// `helm test`: the chart's own test pods pass.
    pub async fn helm_test(&self) -> Result<()> {
        self.helm(&[
            "test",
            &self.s.release,
            "-n",
            &self.s.namespace,
            "--timeout",
            "180s",
        ])
    }

    /// Creates the gateway namespace, what the gateways reference, and the two example gateways.
    pub async fn apply_gateways(&self) -> Result<()> {
        let ns_api = Api::<Namespace>::all(self.client.clone());
        let ns: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GW_NS}}))?;
        ns_api
            .patch(GW_NS, &PatchParams::apply(MANAGER), &Patch::Apply(&ns))
            .await?;
        let pns = &self.s.namespace;
        let app_key = secret_value(&self.client, pns, &self.platform_name(), "appKey").await?;
        let ca = secret_value(
            &self.client,
            pns,
            &format!("{}-tls", self.platform_name()),
            "ca.crt",
        )
        .await?;
        apply(
            &self.client,
            GW_NS,
            &secret(
                "platform-app-key",
                BTreeMap::from([("appKey".into(), app_key)]),
            ),
        )
        .await?;
        apply(
            &self.client,
            GW_NS,
            &config_map("platform-ca", BTreeMap::from([("ca.crt".into(), ca)])),
        )
        .await?;
        let lua = std::fs::read_to_string(self.s.repo.join("examples/sidecar/lua/pump.lua"))?;
        apply(
            &self.client,
            GW_NS,
            &config_map("pump-template", BTreeMap::from([("pump.lua".into(), lua)])),
        )
        .await?;
        for file in ["demo-lua.yaml", "demo-fleet.yaml"] {
            let path = self.s.repo.join("examples/cluster").join(file);
            let text = std::fs::read_to_string(&path)?;
            let gw: EdgeGateway = serde_saphyr::from_str(&text)
                .with_context(|| format!("{} is not an EdgeGateway", path.display()))?;
            apply(&self.client, GW_NS, &gw).await?;
        }
        Ok(())
    }

    async fn gateway(&self, name: &str) -> Result<Value> {
        let gw = Api::<EdgeGateway>::namespaced(self.client.clone(), GW_NS)
            .get(name)
            .await?;
        Ok(serde_json::to_value(gw)?)
    }

    /// Both gateways become Ready, with every device running.
    pub async fn gateways_ready(&self) -> Result<()> {
        for (name, devices) in [("pumps", 0), ("meters", FLEET as i64)] {
            wait_for(
                &format!("EdgeGateway {name} Ready"),
                Duration::from_secs(420),
                || async move {
                    let gw = self.gateway(name).await?;
                    let ready = condition(&gw, "Ready");
                    let running = gw.pointer("/status/devicesRunning").and_then(Value::as_i64);
                    if ready.as_deref() == Some("True") && running.unwrap_or(0) >= devices {
                        return Ok(Some(()));
                    }
                    Err(anyhow!("Ready={ready:?} devicesRunning={running:?}"))
                },
            )
            .await?;
            println!("    {name}: Ready");
        }
        Ok(())
    }

    /// The platform lists every device and Lua thing, connected, with fresh values.
    pub async fn platform_sees_everything(&self) -> Result<()> {
        wait_for(
            "every thing connected with a fresh value",
            Duration::from_secs(120),
            || async {
                let things = self.platform_get("/api/things").await?;
                let things = things.as_array().context("/api/things is not an array")?;
                let fresh = now_ms() - 30_000;
                let ok = |t: &&Value| {
                    t["connected"] == true && t["lastUpdate"].as_i64().unwrap_or(0) > fresh
                };
                let meters = things
                    .iter()
                    .filter(|t| t["name"].as_str().is_some_and(|n| n.starts_with("meter-")))
                    .filter(ok)
                    .count();
                let pumps = things
                    .iter()
                    .filter(|t| PUMPS.iter().any(|p| t["name"] == *p))
                    .filter(ok)
                    .count();
                if meters == FLEET && pumps == PUMPS.len() {
                    return Ok(Some(()));
                }
                Err(anyhow!(
                    "{meters}/{FLEET} meters and {pumps}/2 pumps connected and fresh"
                ))
            },
        )
        .await?;
        let path = "/api/things/meter-0/properties/reading";
        let first = self.platform_get(path).await?["value"]
            .as_f64()
            .context("reading is not a number")?;
        wait_for(
            "meter-0 reading advances",
            Duration::from_secs(30),
            || async {
                let v = self.platform_get(path).await?["value"].as_f64();
                Ok(v.filter(|v| *v > first).map(|_| ()))
            },
        )
        .await?;
        println!("    {FLEET} meters + 2 pumps connected; meter-0 counts from {first}");
        Ok(())
    }

    /// A service invoked through the platform runs the Lua code in the gateway pod.
    pub async fn service_through_platform(&self) -> Result<()> {
        let (addr, auth) = self.platform().await?;
        let r = request(
            addr,
            None,
            "POST",
            "/api/things/Pump1/services/Start",
            &auth,
            Some(json!({"speed": 1500})),
        )
        .await?;
        ensure!(
            r.status == 200,
            "Start: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        let body = r.json()?;
        ensure!(
            body.to_string().contains("true"),
            "Start did not return true: {body}"
        );
        // A live read goes down the tunnel to the thing's VM.
        let speed = self
            .platform_get("/api/things/Pump1/properties/Speed?live=1")
            .await?;
        ensure!(speed["value"] == 1500, "Speed after Start: {speed}");
        // The Lua code rejects a bad argument: its error comes back through the tunnel.
        let r = request(
            addr,
            None,
            "POST",
            "/api/things/Pump1/services/Start",
            &auth,
            Some(json!({"speed": -1})),
        )
        .await?;
        ensure!(
            r.status >= 400 && String::from_utf8_lossy(&r.body).contains("speed must be"),
            "bad Start: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        println!("    Start(1500) ran in the pod; Speed=1500; Start(-1) refused by the script");
        Ok(())
    }

    pub(crate) async fn gateway_tls(&self, client: Option<(String, String)>) -> Result<Tls> {
        Ok(Tls {
            ca_pem: secret_value(&self.client, GW_NS, "edgeway-ca", "ca.crt").await?,
            server_name: format!("pumps.{GW_NS}.svc"),
            client,
        })
    }

    /// The gateway's HTTPS server refuses missing or wrong credentials and accepts right ones.
    pub async fn gateway_auth(&self) -> Result<()> {
        let addr = self.reach.service(GW_NS, "pumps", 8443).await?;
        let path = "/Thingworx/Things/Pump1/Properties/Speed";
        let anon = self.gateway_tls(None).await?;
        let r = request(addr, Some(&anon), "GET", path, &[], None).await?;
        ensure!(r.status == 401, "no credentials: {}", r.status);
        let user = secret_value(&self.client, GW_NS, "pumps-basic-auth", "username").await?;
        let pass = secret_value(&self.client, GW_NS, "pumps-basic-auth", "password").await?;
        let basic = |u: &str, p: &str| {
            use base64::Engine as _;
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            vec![("authorization", format!("Basic {b}"))]
        };
        let r = request(addr, Some(&anon), "GET", path, &basic(&user, "wrong"), None).await?;
        ensure!(r.status == 401, "wrong password: {}", r.status);
        let r = request(addr, Some(&anon), "GET", path, &basic(&user, &pass), None).await?;
        ensure!(r.status == 200, "right password: {}", r.status);
        ensure!(
            String::from_utf8_lossy(&r.body).contains("1500"),
            "Speed is not 1500: {}",
            String::from_utf8_lossy(&r.body)
        );
        // A device certificate from the namespace CA.
        let ca = Ca::load(
            &secret_value(&self.client, GW_NS, "edgeway-ca", "tls.crt").await?,
            &secret_value(&self.client, GW_NS, "edgeway-ca", "tls.key").await?,
        )?;
        let now = now_ms() / 1000;
        let dev = ca.issue(
            "device-1",
            &[],
            Usage::Client,
            KeyAlgorithm::EcdsaP256,
            now,
            3600,
        )?;
        let mtls = self
            .gateway_tls(Some((dev.cert_pem.clone(), dev.key_pem.clone())))
            .await?;
        let r = request(addr, Some(&mtls), "GET", path, &[], None).await?;
        ensure!(r.status == 200, "device certificate: {}", r.status);
        // A certificate from a CA the gateway does not trust.
        let stranger = Ca::generate("stranger", now, 3600)?;
        let bad = stranger.issue(
            "device-1",
            &[],
            Usage::Client,
            KeyAlgorithm::EcdsaP256,
            now,
            3600,
        )?;
        let bad = self.gateway_tls(Some((bad.cert_pem, bad.key_pem))).await?;
        match request(addr, Some(&bad), "GET", path, &[], None).await {
            Ok(r) if r.status == 200 => bail!("a certificate of an unknown CA was accepted"),
            Ok(r) => println!("    unknown CA: {}", r.status),
            Err(e) => println!("    unknown CA: refused ({e:#})"),
        }
        // The gateway's own tunnel certificate is no device: it chains to edgeway-tunnel-ca.
        let tunnel = self
            .gateway_tls(Some((
                secret_value(&self.client, GW_NS, "pumps-client-tls", "tls.crt").await?,
                secret_value(&self.client, GW_NS, "pumps-client-tls", "tls.key").await?,
            )))
            .await?;
        match request(addr, Some(&tunnel), "GET", path, &[], None).await {
            Ok(r) if r.status == 200 => {
                bail!("the tunnel client certificate was accepted as a device")
            }
            Ok(r) => println!("    tunnel certificate as a device: {}", r.status),
            Err(e) => println!("    tunnel certificate as a device: refused ({e:#})"),
        }
        println!("    no credentials 401, wrong password 401, right password 200, device cert 200");
        Ok(())
    }

    /// The tunnel session Pump1 is bound to (the platform does not ask gateways for
    /// certificates, so sessions are told apart by their things).
    async fn pumps_session(&self) -> Result<Value> {
        let t = self.platform_get("/api/things/Pump1").await?;
        ensure!(t["connected"] == true, "Pump1 is not connected: {t}");
        Ok(t["sessionId"].clone())
    }

    /// Shortening the certificate lifetime renews both certificates; the tunnel stays up and
    /// the HTTPS server presents the new certificate without a restart.
    pub async fn certificate_renewal(&self) -> Result<()> {
        let serial = |name: &'static str| async move {
            pem_serial(&secret_value(&self.client, GW_NS, name, "tls.crt").await?)
        };
        let (server0, client0) = (
            serial("pumps-server-tls").await?,
            serial("pumps-client-tls").await?,
        );
        let session0 = self.pumps_session().await?;
        let pods0 = self.pod_uids("pumps").await?;
        Api::<EdgeGateway>::namespaced(self.client.clone(), GW_NS)
            .patch(
                "pumps",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"certificates": {"durationHours": 1}}})),
            )
            .await?;
        let (server1, client1) =
            wait_for("certificates renewed", Duration::from_secs(120), || async {
                let (s, c) = (
                    serial("pumps-server-tls").await?,
                    serial("pumps-client-tls").await?,
                );
                Ok((s != server0 && c != client0).then_some((s, c)))
            })
            .await?;
        let addr = self.reach.service(GW_NS, "pumps", 8443).await?;
        let tls = self.gateway_tls(None).await?;
        wait_for(
            "the gateway presents the new certificate",
            Duration::from_secs(240),
            || async {
                let r = request(addr, Some(&tls), "GET", "/healthz", &[], None).await?;
                let presented = http::serial(&r.peer_cert.context("no peer certificate")?)?;
                if presented == server1 {
                    return Ok(Some(()));
                }
                Err(anyhow!("presents {presented}, want {server1}"))
            },
        )
        .await?;
        let session1 = self.pumps_session().await?;
        ensure!(
            session1 == session0,
            "the tunnel reconnected during the renewal: {session0} -> {session1}"
        );
        ensure!(
            self.pod_uids("pumps").await? == pods0,
            "the gateway pods were replaced"
        );
        println!(
            "    server {server0} -> {server1}, client {client0} -> {client1}; same tunnel session"
        );
        Ok(())
    }

    pub(crate) async fn pod_uids(&self, gateway: &str) -> Result<Vec<String>> {
        let lp = ListParams::default().labels(&format!(
            "app.kubernetes.io/name=edgeway-gateway,app.kubernetes.io/instance={gateway}"
        ));
        let mut uids: Vec<String> = Api::<Pod>::namespaced(self.client.clone(), GW_NS)
            .list(&lp)
            .await?
            .items
            .into_iter()
            .filter_map(|p| p.metadata.uid)
            .collect();
        uids.sort();
        ensure!(!uids.is_empty(), "no pods of {gateway}");
        Ok(uids)
    }

    /// Deleting the platform pod: gateways reconnect and replay, no update is lost.
    pub async fn platform_restart(&self) -> Result<()> {
        // Follow the old platform's stream: the last value it stored per sample device.
        let seen: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
        let (addr, auth) = self.platform().await?;
        let follower = {
            let seen = seen.clone();
            tokio::spawn(async move {
                follow_events(addr, "/api/stream", &auth, |data| {
                    let Ok(v) = serde_json::from_str::<Value>(data) else {
                        return;
                    };
                    let (Some(thing), Some(value)) = (v["thing"].as_str(), v["value"].as_f64())
                    else {
                        return;
                    };
                    if SAMPLES.contains(&thing) && v["property"] == "reading" {
                        let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
                        let e = s.entry(thing.to_owned()).or_insert(value);
                        *e = e.max(value);
                    }
                })
                .await
            })
        };
        wait_for(
            "stream shows the samples",
            Duration::from_secs(30),
            || async {
                let n = seen.lock().unwrap_or_else(|e| e.into_inner()).len();
                Ok((n == SAMPLES.len()).then_some(()))
            },
        )
        .await?;
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.s.namespace);
        let lp = ListParams::default().labels(&format!(
            "app.kubernetes.io/instance={},app.kubernetes.io/component=platform",
            self.s.release
        ));
        let old: Vec<String> = pods
            .list(&lp)
            .await?
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        ensure!(old.len() == 1, "platform pods: {old:?}");
        pods.delete(&old[0], &DeleteParams::default()).await?;
        // The stream ends when the old platform goes away.
        let _ = tokio::time::timeout(Duration::from_secs(90), follower).await;
        let last = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.reach.reset(&self.s.namespace, &self.platform_name());
        wait_for(
            "a new platform pod is ready",
            Duration::from_secs(180),
            || async {
                let ready = pods.list(&lp).await?.items.into_iter().any(|p| {
                    p.metadata.name.as_deref() != Some(&old[0])
                        && p.status
                            .and_then(|s| s.conditions)
                            .unwrap_or_default()
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                });
                Ok(ready.then_some(()))
            },
        )
        .await?;
        wait_for("gateways reconnected", Duration::from_secs(180), || async {
            let gws = self.platform_get("/api/gateways").await?;
            let n = gws.as_array().map(Vec::len).unwrap_or(0);
            Ok((n >= 4).then_some(()))
        })
        .await?;
        for thing in SAMPLES {
            let before = *last
                .get(thing)
                .ok_or_else(|| anyhow!("{thing} never seen"))?;
            let path = format!("/api/things/{thing}/properties/reading?history=1");
            // Replay first, then new values: wait until the history reaches past the outage.
            let values = wait_for(
                &format!("{thing} history past {before}"),
                Duration::from_secs(60),
                || async {
                    let h = self.platform_get(&path).await?;
                    let mut values: Vec<f64> = h["history"]
                        .as_array()
                        .context("no history")?
                        .iter()
                        .filter_map(|p| p["value"].as_f64())
                        .collect();
                    values.sort_by(f64::total_cmp);
                    Ok((values.last().copied().unwrap_or(0.0) > before + 2.0).then_some(values))
                },
            )
            .await?;
            let first = values[0];
            ensure!(
                first <= before + 1.0,
                "{thing}: the old platform stored up to {before}, the new one starts at {first}: lost"
            );
            for w in values.windows(2) {
                ensure!(
                    w[1] - w[0] == 1.0,
                    "{thing}: history jumps {} -> {}: {values:?}",
                    w[0],
                    w[1]
                );
            }
            println!(
                "    {thing}: old platform's last {before}; new one has {first}..{} gapless",
                values[values.len() - 1]
            );
        }
        Ok(())
    }

    /// Deleting a gateway removes everything it owned.
    pub async fn delete_gateway(&self) -> Result<()> {
        self.delete_and_wait_owned("meters").await
    }

    async fn delete_and_wait_owned(&self, name: &str) -> Result<()> {
        Api::<EdgeGateway>::namespaced(self.client.clone(), GW_NS)
            .delete(name, &DeleteParams::default())
            .await?;
        let c = &self.client;
        wait_for(
            &format!("everything {name} owned is gone"),
            Duration::from_secs(180),
            || async move {
                let mut left = Vec::new();
                if Api::<StatefulSet>::namespaced(c.clone(), GW_NS)
                    .get_opt(name)
                    .await?
                    .is_some()
                {
                    left.push(format!("StatefulSet {name}"));
                }
                for svc in [name.to_owned(), format!("{name}-headless")] {
                    if Api::<Service>::namespaced(c.clone(), GW_NS)
                        .get_opt(&svc)
                        .await?
                        .is_some()
                    {
                        left.push(format!("Service {svc}"));
                    }
                }
                if Api::<ConfigMap>::namespaced(c.clone(), GW_NS)
                    .get_opt(&format!("{name}-config"))
                    .await?
                    .is_some()
                {
                    left.push(format!("ConfigMap {name}-config"));
                }
                for s in ["server-tls", "client-tls", "basic-auth"] {
                    let s = format!("{name}-{s}");
                    if Api::<Secret>::namespaced(c.clone(), GW_NS)
                        .get_opt(&s)
                        .await?
                        .is_some()
                    {
                        left.push(format!("Secret {s}"));
                    }
                }
                let lp = ListParams::default().labels(&format!(
                    "app.kubernetes.io/name=edgeway-gateway,app.kubernetes.io/instance={name}"
                ));
                let pods = Api::<Pod>::namespaced(c.clone(), GW_NS).list(&lp).await?;
                if !pods.items.is_empty() {
                    left.push(format!("{} pods", pods.items.len()));
                }
                if left.is_empty() {
                    return Ok(Some(()));
                }
                Err(anyhow!("left: {}", left.join(", ")))
            },
        )
        .await?;
        println!("    {name}: StatefulSet, pods, Services, ConfigMap, Secrets removed");
        Ok(())
    }

    /// Uninstalling the chart removes everything it made (the CRD stays, as Helm keeps CRDs).
    pub async fn uninstall(&self) -> Result<()> {
        self.delete_and_wait_owned("pumps").await?;
        self.helm(&[
            "uninstall",
            &self.s.release,
            "-n",
            &self.s.namespace,
            "--wait",
            "--timeout",
            "180s",
        ])?;
        let c = &self.client;
        let ns = &self.s.namespace;
        let sel = format!("app.kubernetes.io/instance={}", self.s.release);
        wait_for("release objects gone", Duration::from_secs(180), || async {
            let lp = ListParams::default().labels(&sel);
            let mut left = Vec::new();
            let n = Api::<Pod>::namespaced(c.clone(), ns)
                .list(&lp)
                .await?
                .items
                .len();
            if n > 0 {
                left.push(format!("{n} pods"));
            }
            let n = Api::<Deployment>::namespaced(c.clone(), ns)
                .list(&lp)
                .await?
                .items
                .len();
            if n > 0 {
                left.push(format!("{n} Deployments"));
            }
            let n = Api::<Service>::namespaced(c.clone(), ns)
                .list(&lp)
                .await?
                .items
                .len();
            if n > 0 {
                left.push(format!("{n} Services"));
            }
            let n = Api::<ServiceAccount>::namespaced(c.clone(), ns)
                .list(&lp)
                .await?
                .items
                .len();
            if n > 0 {
                left.push(format!("{n} ServiceAccounts"));
            }
            let n = Api::<Secret>::namespaced(c.clone(), ns)
                .list(&lp)
                .await?
                .items
                .len();
            if n > 0 {
                left.push(format!("{n} Secrets"));
            }
            let n = Api::<ClusterRole>::all(c.clone())
                .list(&lp)
                .await?
                .items
                .len();
            if n > 0 {
                left.push(format!("{n} ClusterRoles"));
            }
            let n = Api::<ClusterRoleBinding>::all(c.clone())
                .list(&lp)
                .await?
                .items
                .len();
            if n > 0 {
                left.push(format!("{n} ClusterRoleBindings"));
            }
            if left.is_empty() {
                return Ok(Some(()));
            }
            Err(anyhow!("left: {}", left.join(", ")))
        })
        .await?;
        println!("    release objects removed");
        Ok(())
    }
}
