//! Operator scale against a real API server (`e2e/cluster/apiserver.sh`):
//!
//! - `operator-crd`: installs the EdgeGateway CRD from a YAML file and waits until Established.
//! - `operator-scale`: creates N EdgeGateways while `edgeway-operator run` is running, and times
//!   until every gateway has its Secrets, ConfigMap, Services and StatefulSet (seen by watches,
//!   so the API server is not polled); reads the operator's CPU and RSS from /proc.
//! - `operator-floor`: the same objects written by a plain client (server-side apply, N gateways
//!   in `--concurrency` parallel chains), replayed from what the operator made for a few
//!   gateways: what the API server alone needs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::{stream, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::util::percentile;

/// Label the operator puts on everything it makes (its children watches select on it).
const MANAGED: &str = "app.kubernetes.io/managed-by=edgeway-operator";
/// The namespace CA Secrets, one each per namespace (gateway CA, tunnel CA).
const CA_SECRETS: [&str; 2] = ["edgeway-ca", "edgeway-tunnel-ca"];
/// Field manager of the floor's writes.
const MANAGER: &str = "edgeway-bench";
/// Suffixes of the children of gateway `g`, by kind (names are `g` + suffix).
const CHILDREN: [(&str, &str); 7] = [
    ("Secret", "-server-tls"),
    ("Secret", "-client-tls"),
    ("Secret", "-basic-auth"),
    ("ConfigMap", "-config"),
    ("Service", ""),
    ("Service", "-headless"),
    ("StatefulSet", ""),
];

/// Options of `operator-crd`.
#[derive(clap::Args)]
pub struct CrdArgs {
    /// Kubeconfig of the API server.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// CRD YAML (`edgeway-operator crd`).
    #[arg(long)]
    file: PathBuf,
}

/// Options of `operator-scale`.
#[derive(clap::Args)]
pub struct ScaleArgs {
    /// Kubeconfig of the API server.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// How many EdgeGateways to create.
    #[arg(long, default_value_t = 100)]
    gateways: usize,
    /// Namespace (created; must not exist yet).
    #[arg(long, default_value = "bench-op")]
    namespace: String,
    /// The operator's pid, for CPU and RSS from /proc.
    #[arg(long)]
    operator_pid: u32,
    /// Gateway creations in flight at once.
    #[arg(long, default_value_t = 32)]
    create_concurrency: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// After everything exists, watch this long more to see the operator's idle cost.
    #[arg(long, default_value_t = 10)]
    settle: u64,
}

/// Options of `operator-floor`.
#[derive(clap::Args)]
pub struct FloorArgs {
    /// Kubeconfig of the API server.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// How many gateways' objects to write.
    #[arg(long, default_value_t = 100)]
    gateways: usize,
    /// Where the operator made the objects that are replayed (same name length as --namespace,
    /// so every replayed object has the size of its original).
    #[arg(long, default_value = "bench-op")]
    from_namespace: String,
    /// Namespace to write into (created; must not exist yet, and no operator may watch it).
    #[arg(long, default_value = "bench-fl")]
    namespace: String,
    /// Gateways whose objects are captured and replayed round-robin.
    #[arg(long, default_value_t = 3)]
    templates: usize,
    /// Gateways written at once (each one's objects in sequence, as a reconcile does).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

/// Name of the i-th benchmark gateway; fixed width so replayed objects keep their sizes.
fn gw_name(i: usize) -> String {
    format!("gw-{i:05}")
}

async fn client(path: &Path) -> anyhow::Result<Client> {
    let kc = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .context("kubeconfig")?;
    Client::try_from(cfg).context("kube client")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // One thread: the operator, the API server and etcd share the machine's cores with us.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

fn gateway_resource() -> ApiResource {
    ApiResource {
        group: "edgeway.io".into(),
        version: "v1alpha1".into(),
        api_version: "edgeway.io/v1alpha1".into(),
        kind: "EdgeGateway".into(),
        plural: "edgegateways".into(),
    }
}

fn resource(kind: &str) -> anyhow::Result<ApiResource> {
    Ok(match kind {
        "Secret" => ApiResource::erase::<Secret>(&()),
        "ConfigMap" => ApiResource::erase::<ConfigMap>(&()),
        "Service" => ApiResource::erase::<Service>(&()),
        "StatefulSet" => ApiResource::erase::<StatefulSet>(&()),
        "EdgeGateway" => gateway_resource(),
        other => bail!("no resource for kind {other}"),
    })
}

/// A small realistic gateway (after examples/cluster/gateway.yaml): platform app key and CA from
/// references, mTLS + generated basic auth, 10 simulated devices in 1 pod, no Lua.
fn gateway(name: &str) -> Value {
    json!({
        "apiVersion": "edgeway.io/v1alpha1",
        "kind": "EdgeGateway",
        "metadata": {"name": name},
        "spec": {
            "platform": {
                "url": "wss://platform.example.com:443/Thingworx/WS",
                "gatewayName": name,
                "appKey": {"name": "platform-app-key", "key": "appKey"},
                "serverVerification": {"ca": {"configMapName": "platform-ca", "key": "ca.crt"}},
            },
            "server": {"port": 8443, "clientAuth": "optional", "authMethods": ["mtls", "basic"]},
            "certificates": {"durationHours": 2160},
            "simulation": {
                "count": 10,
                "namePrefix": "sensor-",
                "properties": [{
                    "name": "temperature", "baseType": "NUMBER", "intervalMs": 1000,
                    "generator": {"kind": "sine", "min": 15, "max": 30, "periodMs": 60000},
                }],
            },
            "pod": {"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
        },
    })
}

/// A self-signed certificate's worth of PEM for the platform-ca ConfigMap (its content is never
/// verified here: no pod runs).
const PLATFORM_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBfTCCASOgAwIBAgIUJ0benchbenchbenchbenchbenchbenchwCgYIKoZIzj0EAwIw\n-----END CERTIFICATE-----\n";

/// Creates the namespace and what gateways reference (app key Secret, platform CA ConfigMap).
async fn prepare_namespace(client: &Client, ns: &str) -> anyhow::Result<()> {
    let nss: Api<Namespace> = Api::all(client.clone());
    let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
    nss.create(&PostParams::default(), &obj)
        .await
        .with_context(|| format!("creating namespace {ns}"))?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": "platform-app-key"},
        "stringData": {"appKey": "bench-app-key-0123456789abcdef"},
    }))?;
    secrets
        .create(&PostParams::default(), &s)
        .await
        .context("creating platform-app-key")?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "platform-ca"},
        "data": {"ca.crt": PLATFORM_CA},
    }))?;
    cms.create(&PostParams::default(), &cm)
        .await
        .context("creating platform-ca")?;
    Ok(())
}

/// `operator-crd`.
pub fn crd(a: CrdArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = client(&a.kubeconfig).await?;
        let text = std::fs::read_to_string(&a.file)
            .with_context(|| format!("reading {}", a.file.display()))?;
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&text)
            .context("CRD YAML does not fit CustomResourceDefinition")?;
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        let api: Api<CustomResourceDefinition> = Api::all(client);
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .context("applying the CRD")?;
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let c = api.get(&name).await.context("reading the CRD")?;
            let established = c.status.and_then(|s| s.conditions).is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if established {
                break;
            }
            if Instant::now() > end {
                bail!("CRD {name} not Established after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("{}", json!({"crd": name, "established": true}));
        Ok(())
    })
}

/// utime+stime of `pid`, seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

/// A `/proc/PID/status` field in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What a watch saw: an object of `kind` named `name` exists (first sighting is kept), or
/// the initial list of `kind` is complete.
enum Seen {
    Object(&'static str, String),
    Status(String),
    Ready(&'static str),
}

/// Sends every object of kind `K` in `ns` that carries the operator's label.
fn watch_children<K>(client: &Client, ns: &str, kind: &'static str, tx: mpsc::UnboundedSender<Seen>)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
    K::DynamicType: Default,
{
    // Metadata only: the bench needs names, and the Secrets' certificates would cost the API
    // server serialization it does not have to do for the operator.
    let api: Api<PartialObjectMeta<K>> = Api::namespaced(client.clone(), ns);
    let stream = watcher::watcher(api, watcher::Config::default().labels(MANAGED));
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let msg = match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    Seen::Object(kind, o.metadata.name.unwrap_or_default())
                }
                Ok(watcher::Event::InitDone) => Seen::Ready(kind),
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("watch {kind}: {e}");
                    continue;
                }
            };
            if tx.send(msg).is_err() {
                break;
            }
        }
    });
}

/// Sends gateways that have a status with conditions (written by the operator).
fn watch_status(client: &Client, ns: &str, tx: mpsc::UnboundedSender<Seen>) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &gateway_resource());
    let stream = watcher::watcher(api, watcher::Config::default());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let msg = match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    let has = o.data.pointer("/status/conditions").is_some();
                    if !has {
                        continue;
                    }
                    Seen::Status(o.metadata.name.unwrap_or_default())
                }
                Ok(watcher::Event::InitDone) => Seen::Ready("EdgeGateway"),
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("watch EdgeGateway: {e}");
                    continue;
                }
            };
            if tx.send(msg).is_err() {
                break;
            }
        }
    });
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// `operator-scale`.
pub fn scale(a: ScaleArgs) -> anyhow::Result<()> {
    runtime()?.block_on(scale_run(a))
}

async fn scale_run(a: ScaleArgs) -> anyhow::Result<()> {
    let client = client(&a.kubeconfig).await?;
    let ns = a.namespace.as_str();
    prepare_namespace(&client, ns).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    watch_children::<Secret>(&client, ns, "Secret", tx.clone());
    watch_children::<ConfigMap>(&client, ns, "ConfigMap", tx.clone());
    watch_children::<Service>(&client, ns, "Service", tx.clone());
    watch_children::<StatefulSet>(&client, ns, "StatefulSet", tx.clone());
    watch_status(&client, ns, tx);
    let mut ready = HashSet::new();
    while ready.len() < 5 {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(Seen::Ready(k))) => {
                ready.insert(k);
            }
            Ok(Some(_)) => {}
            _ => bail!("watches not started within 60 s"),
        }
    }

    // What must exist: every child of every gateway, and the namespace CA.
    let mut missing: HashSet<(&'static str, String)> = HashSet::new();
    for name in CA_SECRETS {
        missing.insert(("Secret", name.to_string()));
    }
    for i in 0..a.gateways {
        for (kind, suffix) in CHILDREN {
            missing.insert((kind, format!("{}{suffix}", gw_name(i))));
        }
    }
    let expected = missing.len();
    let mut status_missing: HashSet<String> = (0..a.gateways).map(gw_name).collect();

    let pid = a.operator_pid;
    let cpu0 = cpu_secs(pid);
    let t0 = Instant::now();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &gateway_resource());
    let created: Arc<std::sync::Mutex<HashMap<String, Duration>>> = Default::default();
    let create_all = {
        let created = created.clone();
        let api = api.clone();
        async move {
            let results: Vec<anyhow::Result<()>> = stream::iter(0..a.gateways)
                .map(|i| {
                    let api = api.clone();
                    let created = created.clone();
                    async move {
                        let name = gw_name(i);
                        let obj: DynamicObject = serde_json::from_value(gateway(&name))?;
                        api.create(&PostParams::default(), &obj)
                            .await
                            .with_context(|| format!("creating EdgeGateway {name}"))?;
                        if let Ok(mut m) = created.lock() {
                            m.insert(name, t0.elapsed());
                        }
                        Ok(())
                    }
                })
                .buffer_unordered(a.create_concurrency.max(1))
                .collect()
                .await;
            results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
            anyhow::Ok(t0.elapsed())
        }
    };
    let mut create_all = std::pin::pin!(create_all);
    let mut created_in: Option<Duration> = None;
    let mut first_seen: HashMap<(&'static str, String), Duration> = HashMap::new();
    let mut status_at: Option<Duration> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.timeout);
    let mut all_at = None;
    while all_at.is_none() || status_at.is_none() {
        tokio::select! {
            r = &mut create_all, if created_in.is_none() => created_in = Some(r?),
            m = rx.recv() => match m {
                Some(Seen::Object(kind, name)) => {
                    let key = (kind, name);
                    if missing.remove(&key) {
                        first_seen.insert(key, t0.elapsed());
                        if missing.is_empty() {
                            all_at = Some(t0.elapsed());
                        }
                    }
                }
                Some(Seen::Status(name)) => {
                    if status_missing.remove(&name) && status_missing.is_empty() {
                        status_at = Some(t0.elapsed());
                    }
                }
                Some(Seen::Ready(_)) => {}
                None => bail!("watches ended"),
            },
            _ = tokio::time::sleep_until(deadline) => {
                let example: Vec<_> = missing.iter().take(5).collect();
                bail!(
                    "after {} s: {} of {expected} objects missing (e.g. {example:?}), {} gateways without status",
                    a.timeout, missing.len(), status_missing.len()
                );
            }
        }
    }
    let all_at = all_at.context("not all objects seen")?;
    let cpu_done = cpu_secs(pid) - cpu0;
    let rss_done = status_kib(pid, "VmRSS");
    let created_in = match created_in {
        Some(d) => d,
        None => create_all.await?,
    };
    // Idle cost after the work: requeues, resyncs, reconciles triggered by its own writes.
    let cpu_before_settle = cpu_secs(pid);
    tokio::time::sleep(Duration::from_secs(a.settle)).await;
    let cpu_settle = cpu_secs(pid) - cpu_before_settle;

    // Per gateway: from its creation to its last child seen.
    let created = created.lock().map(|m| m.clone()).unwrap_or_default();
    let mut per_gw: Vec<u64> = (0..a.gateways)
        .filter_map(|i| {
            let name = gw_name(i);
            let start = created.get(&name)?;
            let last = CHILDREN
                .iter()
                .filter_map(|(k, s)| first_seen.get(&(*k, format!("{name}{s}"))))
                .max()?;
            Some(last.saturating_sub(*start).as_millis() as u64)
        })
        .collect();
    per_gw.sort_unstable();
    let certs = 2 * a.gateways; // server + client per gateway (the CA is not counted)
    let all_s = all_at.as_secs_f64();
    println!(
        "{}",
        json!({
            "gateways": a.gateways,
            "objects": expected,
            "certs_issued": certs,
            "created_s": secs(created_in),
            "all_objects_s": secs(all_at),
            "all_status_s": status_at.map(secs),
            "certs_per_s": (certs as f64 / all_s * 10.0).round() / 10.0,
            "gateway_to_children_p50_ms": percentile(&per_gw, 50.0),
            "gateway_to_children_p99_ms": percentile(&per_gw, 99.0),
            "gateway_to_children_max_ms": per_gw.last().copied().unwrap_or(0),
            "operator_cpu_s": (cpu_done * 100.0).round() / 100.0,
            "operator_cpu_settle_s": (cpu_settle * 100.0).round() / 100.0,
            "settle_s": a.settle,
            "operator_rss_kib_done": rss_done,
            "operator_rss_kib_end": status_kib(pid, "VmRSS"),
            "operator_hwm_kib": status_kib(pid, "VmHWM"),
        })
    );
    Ok(())
}

/// Keeps what a writer sends (no server-set metadata, no status); Service cluster IPs are
/// dropped unless headless, since the API server allocates them.
fn sanitize(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            m.retain(|k, _| matches!(k.as_str(), "name" | "labels" | "annotations"));
        }
        if let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut) {
            if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
        }
    }
    v
}

/// One captured gateway: the gateway itself and its children, as JSON text with the template's
/// name, ready for name substitution.
struct Template {
    name: String,
    gateway: String,
    children: Vec<(&'static str, String, String)>, // kind, child name suffix, JSON
}

async fn capture(client: &Client, ns: &str, name: &str) -> anyhow::Result<Template> {
    let get = |kind: &'static str, obj: String| {
        let client = client.clone();
        async move {
            let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &resource(kind)?);
            let o = api
                .get(&obj)
                .await
                .with_context(|| format!("reading {kind} {ns}/{obj}"))?;
            let mut v = serde_json::to_value(&o)?;
            if let Some(m) = v.as_object_mut() {
                m.insert("apiVersion".into(), json!(resource(kind)?.api_version));
                m.insert("kind".into(), json!(kind));
            }
            anyhow::Ok(serde_json::to_string(&sanitize(v))?)
        }
    };
    let gateway = get("EdgeGateway", name.to_string()).await?;
    let mut children = Vec::new();
    for (kind, suffix) in CHILDREN {
        children.push((
            kind,
            suffix.to_string(),
            get(kind, format!("{name}{suffix}")).await?,
        ));
    }
    Ok(Template {
        name: name.to_string(),
        gateway,
        children,
    })
}

/// Server-side apply, retrying while the API server sheds load (429) so the floor is not
/// flattered by failed writes.
async fn apply(
    api: &Api<DynamicObject>,
    name: &str,
    v: &Value,
    retries: &AtomicU64,
) -> anyhow::Result<String> {
    loop {
        match api
            .patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(v))
            .await
        {
            Ok(o) => return Ok(o.metadata.uid.unwrap_or_default()),
            Err(kube::Error::Api(e)) if e.code == 429 => {
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("applying {name}")),
        }
    }
}

/// `operator-floor`.
pub fn floor(a: FloorArgs) -> anyhow::Result<()> {
    runtime()?.block_on(floor_run(a))
}

async fn floor_run(a: FloorArgs) -> anyhow::Result<()> {
    if a.namespace.len() != a.from_namespace.len() {
        bail!("--namespace and --from-namespace must have the same length (same object sizes)");
    }
    let client = client(&a.kubeconfig).await?;
    let from = a.from_namespace.as_str();
    let ns = a.namespace.as_str();
    let mut templates = Vec::new();
    for i in 0..a.templates.clamp(1, a.gateways.max(1)) {
        templates.push(capture(&client, from, &gw_name(i)).await?);
    }
    let secrets: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), from, &resource("Secret")?);
    let mut cas = Vec::new();
    for name in CA_SECRETS {
        let ca = serde_json::to_value(
            secrets
                .get(name)
                .await
                .with_context(|| format!("reading {from}/{name}"))?,
        )?;
        let mut ca = sanitize(ca);
        if let Some(m) = ca.as_object_mut() {
            m.insert("apiVersion".into(), json!("v1"));
            m.insert("kind".into(), json!("Secret"));
        }
        cas.push((name, ca));
    }
    prepare_namespace(&client, ns).await?;

    let apis: BTreeMap<&str, Api<DynamicObject>> = [
        "EdgeGateway",
        "Secret",
        "ConfigMap",
        "Service",
        "StatefulSet",
    ]
    .into_iter()
    .map(|k| Ok((k, Api::namespaced_with(client.clone(), ns, &resource(k)?))))
    .collect::<anyhow::Result<_>>()?;
    let apis = &apis;
    let retries = AtomicU64::new(0);
    let retries = &retries;
    let bytes = AtomicU64::new(0);
    let bytes = &bytes;
    let templates = &templates;
    let from_quoted = format!("\"{from}\"");
    let ns_quoted = format!("\"{ns}\"");
    let (from_quoted, ns_quoted) = (&from_quoted, &ns_quoted);

    let t0 = Instant::now();
    for (name, ca) in &cas {
        apply(&apis["Secret"], name, ca, retries).await?;
    }
    let results: Vec<anyhow::Result<u64>> = stream::iter(0..a.gateways)
        .map(|i| async move {
            let start = Instant::now();
            let t = &templates[i % templates.len()];
            let name = gw_name(i);
            // Names are fixed width and base64 has no '-', so this touches names only.
            let rename = |s: &str| -> anyhow::Result<Value> {
                let s = s.replace(&t.name, &name).replace(from_quoted, ns_quoted);
                bytes.fetch_add(s.len() as u64, Ordering::Relaxed);
                Ok(serde_json::from_str(&s)?)
            };
            let uid = apply(&apis["EdgeGateway"], &name, &rename(&t.gateway)?, retries).await?;
            let owner = json!([{
                "apiVersion": "edgeway.io/v1alpha1", "kind": "EdgeGateway", "name": name,
                "uid": uid, "controller": true, "blockOwnerDeletion": true,
            }]);
            for (kind, suffix, text) in &t.children {
                let mut v = rename(text)?;
                if let Some(m) = v.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                    m.insert("ownerReferences".into(), owner.clone());
                }
                apply(&apis[kind], &format!("{name}{suffix}"), &v, retries).await?;
            }
            Ok(start.elapsed().as_millis() as u64)
        })
        .buffer_unordered(a.concurrency.max(1))
        .collect()
        .await;
    let total = t0.elapsed();
    let mut per_gw = results.into_iter().collect::<anyhow::Result<Vec<u64>>>()?;
    per_gw.sort_unstable();
    let objects = 1 + a.gateways * CHILDREN.len();
    println!(
        "{}",
        json!({
            "gateways": a.gateways,
            "objects": objects,
            "gateway_objects": a.gateways,
            "concurrency": a.concurrency,
            "templates": templates.len(),
            "floor_s": secs(total),
            "objects_per_s": ((objects + a.gateways) as f64 / total.as_secs_f64()).round(),
            "bytes_written": bytes.load(Ordering::Relaxed),
            "retries_429": retries.load(Ordering::Relaxed),
            "gateway_chain_p50_ms": percentile(&per_gw, 50.0),
            "gateway_chain_p99_ms": percentile(&per_gw, 99.0),
        })
    );
    Ok(())
}
