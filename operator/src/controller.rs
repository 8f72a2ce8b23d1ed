//! The reconciler: `EdgeGateway` -> CA, certificates, credentials, ConfigMap, Services,
//! StatefulSet and status. Every write is a server-side apply by [`FIELD_MANAGER`], except the
//! shared CA Secret (create, then replace with its resourceVersion, so concurrent reconciles in
//! one namespace never make two CAs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};

use crate::certs::{self, HOUR};
use crate::context::{now, publish, Context, Made};
use crate::crd::{CertificateStatus, EdgeGateway, EdgeGatewayStatus};
use crate::error::{kube_err, Error};
use crate::resources::disruption::{self, Budget};
use crate::resources::{self, config, workload, Names, NamespaceCa, FIELD_MANAGER, MANAGED_BY};
use crate::status::{self, Observed, Problem};
use crate::validate;
use crate::{references, secrets, triggers};

/// Longest wait between reconciles of a healthy gateway.
const RESYNC: i64 = HOUR;
/// Wait before re-checking a gateway whose config or certificates are not usable.
const RETRY: i64 = 30;
/// Seconds between looks at the pods' tunnels while any pod is ready.
const CONNECTION_RESYNC: i64 = 60;
/// Reconciles running at once (per watched namespace scope).
const RECONCILE_CONCURRENCY: u16 = 16;

/// Reconciles one gateway; idempotent (a second run writes nothing new).
pub async fn reconcile(gw: Arc<EdgeGateway>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let ns = gw.namespace().ok_or(Error::NoNamespace)?;
    let names = Names::new(&gw, &ctx.settings.cluster_domain);
    let now = now();
    let mut next = now + RESYNC;

    // 1. What the schema cannot check: cross-field rules, references, Lua syntax.
    let mut problem = None;
    let mut lua_sources = BTreeMap::new();
    let rendered = match validate::spec(&gw)
        .and_then(|c| validate::images(&gw, &ctx.settings.allowed_images).map(|()| c))
    {
        Ok(c) => Some(c),
        Err(p) => {
            problem = Some(p);
            None
        }
    };
    if problem.is_none() {
        match references::check(&ctx.client, &ctx.children, &ns, &gw).await? {
            Ok(sources) => lua_sources = sources,
            Err(p) => problem = Some(p),
        }
    }
    if problem.is_none() {
        problem = checked_lua(&ctx, &gw, &lua_sources).await;
    }

    // 2. Children in three rounds of concurrent calls (each call waits on the API server, not
    //    on the others): the CAs, Services and ConfigMap; then the leaf certificates and
    //    credentials the CAs sign; then the StatefulSet whose pods mount all of them. A config
    //    that is not valid leaves the last good ConfigMap and StatefulSet; certificates and
    //    Services are independent of it, so pods keep serving while it is fixed.
    let valid = match (&problem, rendered) {
        (None, Some(rendered)) => {
            let files = config::config_files(&gw.spec, &names, &rendered)?;
            let hash = resources::config_hash(&files, &lua_sources);
            Some((resources::config_map(&gw, &names, files), hash))
        }
        _ => None,
    };
    let svc_api: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let cm_api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let (headless, service) = (
        resources::headless_service(&gw, &names),
        resources::service(&gw, &names),
    );
    let (gateway_ca, tunnel_ca, (), (), ()) = futures::try_join!(
        secrets::ensure_ca(&ctx, &gw, &ns, NamespaceCa::Gateway, now),
        secrets::ensure_ca(&ctx, &gw, &ns, NamespaceCa::Tunnel, now),
        ctx.children.apply(&svc_api, &headless),
        ctx.children.apply(&svc_api, &service),
        async {
            match &valid {
                Some((cm, _)) => ctx.children.apply(&cm_api, cm).await,
                None => Ok(()),
            }
        },
    )?;
    next = next.min(gateway_ca.rotate_at).min(tunnel_ca.rotate_at);
    let made = Made::default();
    let (mut certificates, ()) = futures::try_join!(
        secrets::ensure_certificates(
            &ctx,
            &gw,
            &names,
            (&gateway_ca, &tunnel_ca),
            now,
            &mut next,
            &made
        ),
        secrets::ensure_basic_credentials(&ctx, &gw, &names, &made),
    )?;
    made.publish(&ctx, &gw).await;
    if let Ok(list) = certificates.as_mut() {
        for (i, (which, issuing)) in [
            (NamespaceCa::Gateway, &gateway_ca),
            (NamespaceCa::Tunnel, &tunnel_ca),
        ]
        .into_iter()
        .enumerate()
        {
            list.insert(
                i,
                CertificateStatus {
                    name: which.label().into(),
                    secret_name: which.secret_name().into(),
                    not_after: certs::rfc3339(issuing.ca.not_after),
                    renewal_time: Some(certs::rfc3339(issuing.rotate_at)),
                },
            );
        }
    }
    if let Some((_, hash)) = &valid {
        let image = gw
            .spec
            .pod
            .image
            .clone()
            .unwrap_or_else(|| ctx.settings.sidecar_image.clone());
        let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
        let sts = workload::statefulset(&gw, &names, &image, hash);
        futures::try_join!(
            ctx.children.apply(&sts_api, &sts),
            disruption_budget(&ctx, &gw, &names, &ns),
        )?;
    }

    // 4. Status, written only when it changed.
    let ready_replicas = match ctx.children.ready_replicas(&ns, &names.statefulset()) {
        Some(ready) => ready,
        None => Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&names.statefulset())
            .await
            .map_err(kube_err("get", "StatefulSet", &names.statefulset()))?
            .and_then(|s| s.status?.ready_replicas)
            .unwrap_or(0),
    };
    // Only ready pods count, so with none ready there is nothing to list: listing pods on every
    // reconcile made the API server read every pod of the namespace from etcd per gateway
    // (O(gateways²); 1,000 gateways drove kube-apiserver 1.20 out of memory). The StatefulSet's
    // readyReplicas changing wakes the gateway, so it is looked at again when pods get ready.
    let (devices_running, connected) = if problem.is_none() && ready_replicas > 0 {
        running(&ctx.client, &gw, &names).await?
    } else {
        (0, None)
    };
    let observed = Observed {
        generation: gw.metadata.generation,
        config: problem.clone(),
        certificates,
        replicas: workload::replicas(&gw),
        ready_replicas,
        devices_desired: devices_desired(&gw),
        devices_running,
        connected,
        endpoint: names.endpoint(gw.spec.server.port),
    };
    let previous = ctx.recent_status(&gw);
    let new_status = status::build(
        previous.as_ref(),
        &observed,
        &Time(k8s_openapi::jiff::Timestamp::now()),
    );
    if previous.as_ref() != Some(&new_status) {
        report_config_change(&ctx, &gw, previous.as_ref(), &problem).await;
        let api: Api<EdgeGateway> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({
            "apiVersion": "edgeway.io/v1alpha1",
            "kind": "EdgeGateway",
            "status": new_status,
        });
        api.patch_status(
            &gw.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(kube_err("apply status of", "EdgeGateway", &gw.name_any()))?;
        ctx.wrote_status(&gw, new_status);
    }
    let wait = if problem.is_some() || observed.certificates.is_err() {
        RETRY
    } else if observed.ready_replicas > 0 {
        // Tunnels come and go without any Kubernetes event: look again soon.
        (next - now).clamp(1, CONNECTION_RESYNC)
    } else {
        (next - now).clamp(1, RESYNC)
    };
    Ok(Action::requeue(Duration::from_secs(wait.unsigned_abs())))
}

/// The Lua check, run again only when the scripts or the things changed (compiling a large
/// script costs milliseconds, too much for every watch event of 1,000 gateways).
async fn checked_lua(
    ctx: &Context,
    gw: &EdgeGateway,
    sources: &BTreeMap<String, String>,
) -> Option<Problem> {
    let key = format!("{}/{}", gw.namespace().unwrap_or_default(), gw.name_any());
    let things = serde_json::to_string(&gw.spec.lua.things).unwrap_or_default();
    let templates = serde_json::to_string(&gw.spec.lua.templates).unwrap_or_default();
    let fingerprint = resources::config_hash(
        &BTreeMap::from([("things".into(), things), ("templates".into(), templates)]),
        sources,
    );
    let cached = ctx.lua_checks.lock().ok().and_then(|m| {
        m.get(&key)
            .filter(|(f, _)| *f == fingerprint)
            .map(|(_, p)| p.clone())
    });
    if let Some(result) = cached {
        return result;
    }
    let result = validate::lua(&gw.spec, sources).err();
    if let Ok(mut m) = ctx.lua_checks.lock() {
        m.insert(key, (fingerprint, result.clone()));
    }
    result
}

/// Simulated devices plus Lua things.
fn devices_desired(gw: &EdgeGateway) -> i32 {
    let sim = gw.spec.simulation.as_ref().map_or(0, |s| s.count);
    let things = u32::try_from(gw.spec.lua.things.len()).unwrap_or(u32::MAX);
    i32::try_from(sim.saturating_add(things)).unwrap_or(i32::MAX)
}

/// Devices of ready pods (each ready pod's shard, plus the Lua things once any pod is ready),
/// and how many of the ready pods that answered report their tunnel up.
async fn running(
    client: &Client,
    gw: &EdgeGateway,
    names: &Names,
) -> Result<(i32, Option<status::Tunnels>), Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &names.namespace);
    let selector = resources::selector_labels(names)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    // From the API server's watch cache (resourceVersion 0), not a quorum read of etcd: a
    // moment's staleness is fine for a status that is refreshed every minute anyway.
    let list = pods
        .list(&ListParams::default().labels(&selector).at("0"))
        .await
        .map_err(kube_err("list", "Pod", &selector))?;
    let prefix = format!("{}-", names.statefulset());
    let ready_pods: Vec<&Pod> = list
        .items
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect();
    let ready: Vec<u32> = ready_pods
        .iter()
        .filter_map(|p| p.name_any().strip_prefix(&prefix)?.parse().ok())
        .collect();
    let probes = ready_pods.iter().map(|p| {
        let ip = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok());
        async move {
            match ip {
                Some(ip) => {
                    let addr = std::net::SocketAddr::new(ip, config::ADMIN_PORT);
                    crate::probe::tunnel_up(addr, PROBE_TIMEOUT).await
                }
                None => None,
            }
        }
    });
    let answers: Vec<crate::probe::Probe> = futures::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .collect();
    let tunnels = (!answers.is_empty()).then(|| status::Tunnels {
        up: answers.iter().filter(|p| p.up).count(),
        answered: answers.len(),
        ready: ready_pods.len(),
        proxy_failing: answers.iter().filter(|p| !p.up && p.proxy_failing).count(),
        queue_write_failing: answers.iter().filter(|p| p.queue_write_failing).count(),
        credentials_refused: answers
            .iter()
            .filter(|p| !p.up && p.credentials_refused)
            .count(),
    });
    let sim: u32 = ready
        .iter()
        .filter_map(|o| config::shard(&gw.spec, *o))
        .map(|r| r.end - r.start)
        .sum();
    let things = if ready.is_empty() {
        0
    } else {
        gw.spec.lua.things.len()
    };
    let total = u64::from(sim) + things as u64;
    Ok((i32::try_from(total).unwrap_or(i32::MAX), tunnels))
}

/// How long one pod's metrics may take to answer the tunnel probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Publishes an event when `ConfigValid` changes to false (or its message changes).
async fn report_config_change(
    ctx: &Context,
    gw: &EdgeGateway,
    previous: Option<&EdgeGatewayStatus>,
    problem: &Option<Problem>,
) {
    let Some(p) = problem else { return };
    let prev = status::condition(previous, status::CONFIG_VALID);
    if prev.is_some_and(|c| c.status == "False" && c.message == p.message) {
        return;
    }
    publish(ctx, gw, EventType::Warning, &p.reason, p.message.clone()).await;
}

/// Requeues a failed reconcile after a short pause and counts the error.
pub fn error_policy(gw: Arc<EdgeGateway>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(error.metric_reason());
    tracing::warn!(gateway = %gw.name_any(), namespace = ?gw.namespace(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

/// The PodDisruptionBudget API the cluster serves: `policy/v1`, else `policy/v1beta1`
/// (Kubernetes 1.20), else none (logged: gateways then get no budgets).
pub async fn disruption_api(client: &Client) -> Option<kube::api::ApiResource> {
    for version in ["v1", "v1beta1"] {
        let served = client
            .list_api_group_resources(&format!("policy/{version}"))
            .await
            .is_ok_and(|l| l.resources.iter().any(|r| r.name == "poddisruptionbudgets"));
        if served {
            return Some(kube::api::ApiResource {
                group: "policy".into(),
                version: version.into(),
                api_version: format!("policy/{version}"),
                kind: "PodDisruptionBudget".into(),
                plural: "poddisruptionbudgets".into(),
            });
        }
    }
    tracing::warn!("the cluster serves no PodDisruptionBudget API: gateways get no budgets");
    None
}

/// Applies or leaves the gateway's PodDisruptionBudget ([`disruption::decide`]).
async fn disruption_budget(
    ctx: &Context,
    gw: &EdgeGateway,
    names: &Names,
    ns: &str,
) -> Result<(), Error> {
    let Some(ar) = &ctx.settings.disruption_api else {
        return Ok(());
    };
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, ar);
    let name = &names.gateway;
    match disruption::decide(gw) {
        Budget::Apply(max) => {
            let obj = disruption::object(gw, names, ar, &max);
            api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .map_err(kube_err("apply", "PodDisruptionBudget", name))?;
        }
        Budget::Leave => {}
    }
    Ok(())
}

/// Runs the controller for the given namespaces (all when empty) until `shutdown` resolves.
pub async fn run(
    client: Client,
    ctx: Arc<Context>,
    namespaces: Vec<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    let known = &ctx.children;
    let runs = scopes.into_iter().map(|ns| {
        let (store, writer) = reflector::store();
        // A bounded number of reconciles at once: with 1,000 gateways all of them ran together
        // (about 17 API calls each), which only made each slower and the operator bigger.
        let referrers = Arc::new(triggers::Referrers::default());
        let controller = Controller::for_stream(
            triggers::gateways(api::<EdgeGateway>(&client, &ns), writer, referrers.clone()),
            store,
        )
        .with_config(
            kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY),
        );
        // A ConfigMap or Secret wakes the gateway that owns it and those that reference it (a
        // fixed reference, an edited Lua script, a cert-manager Secret appearing): one watch of
        // each kind, metadata only, which also keeps what `Children` knows of them.
        let by_config_map = {
            let referrers = referrers.clone();
            move |cm: PartialObjectMeta<ConfigMap>| {
                referrers.owner_and_referrers(triggers::Referenced::ConfigMap, &cm)
            }
        };
        let by_secret = move |s: PartialObjectMeta<Secret>| {
            referrers.owner_and_referrers(triggers::Referenced::Secret, &s)
        };
        let everything = watcher::Config::default;
        // Owned StatefulSets and Services wake their gateway; their watches also keep what
        // `Children` knows (metadata only, except the StatefulSets' ready pods).
        let scope = || ns.clone();
        controller
            .owns_stream(triggers::statefulsets(known.track::<StatefulSet, _>(
                scope(),
                watcher(api::<StatefulSet>(&client, &ns), owned.clone()),
            )))
            .owns_stream(
                known
                    .track::<Service, _>(
                        scope(),
                        watcher(
                            api::<PartialObjectMeta<Service>>(&client, &ns),
                            owned.clone(),
                        ),
                    )
                    .touched_objects(),
            )
            .watches_stream(
                known
                    .track::<ConfigMap, _>(
                        scope(),
                        watcher(
                            api::<PartialObjectMeta<ConfigMap>>(&client, &ns),
                            everything(),
                        ),
                    )
                    .touched_objects(),
                by_config_map,
            )
            .watches_stream(
                known
                    .track::<Secret, _>(
                        scope(),
                        watcher(api::<PartialObjectMeta<Secret>>(&client, &ns), everything()),
                    )
                    .touched_objects(),
                by_secret,
            )
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile, error_policy, ctx.clone())
            .for_each(log_result)
    });
    futures::future::join_all(runs).await;
}

/// An Api in one namespace, or in all.
fn api<K>(c: &Client, ns: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(c.clone(), ns),
        None => Api::all(c.clone()),
    }
}

type RunResult = Result<
    (ObjectRef<EdgeGateway>, Action),
    kube::runtime::controller::Error<Error, watcher::Error>,
>;

async fn log_result(res: RunResult) {
    match res {
        Ok((obj, _)) => {
            tracing::debug!(gateway = %obj.name, namespace = ?obj.namespace, "reconciled")
        }
        Err(e) => tracing::debug!(error = %e, "reconcile error"),
    }
}
