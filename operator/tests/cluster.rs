//! Cluster tests: the operator against a real kube-apiserver + etcd + kube-controller-manager
//! (Kubernetes 1.20 from `e2e/cluster/apiserver.sh`). Each test uses its own namespace.
//! They FAIL when `EDGEWAY_TEST_KUBECONFIG` is unset: run `scripts/test.sh`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use edgeway_operator::certs::{self, Ca, Usage};
use edgeway_operator::controller::reconcile;
use edgeway_operator::crd::{EdgeGateway, KeyAlgorithm};
use edgeway_operator::resources::{NamespaceCa, CONFIG_KEY};
use edgeway_operator::status::{condition, CERTIFICATES_READY, CONFIG_VALID, READY};
use edgeway_sidecar::config::SidecarConfig;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

const T: Duration = Duration::from_secs(60);

fn text(s: &Secret, key: &str) -> String {
    let b = s
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .unwrap_or_else(|| panic!("key {key}"));
    String::from_utf8(b.0.clone()).expect("utf-8")
}

async fn get<K>(api: &Api<K>, name: &str) -> K
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get(name)
        .await
        .unwrap_or_else(|e| panic!("get {name}: {e}"))
}

async fn create_gateway(client: &Client, ns: &str, gw: &EdgeGateway) {
    let api: Api<EdgeGateway> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), gw)
        .await
        .expect("create gateway");
}

async fn wait_ready(client: &Client, ns: &str, name: &str) -> EdgeGateway {
    let api: Api<EdgeGateway> = Api::namespaced(client.clone(), ns);
    wait_for("Ready=True", T, || {
        let api = api.clone();
        async move {
            let gw = api.get(name).await.ok();
            condition(gw.as_ref().and_then(|g| g.status.as_ref()), READY)
                .is_some_and(|c| c.status == "True")
        }
    })
    .await;
    get(&api, name).await
}

async fn wait_statefulset(client: &Client, ns: &str, name: &str) -> StatefulSet {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    wait_for("StatefulSet", T, || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok().flatten().is_some() }
    })
    .await;
    get(&api, name).await
}

#[tokio::test]
async fn crd_installs_and_the_schema_refuses_invalid_manifests() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "schema").await;
    let api: Api<EdgeGateway> = Api::namespaced(client.clone(), &ns);
    // Raw JSON so invalid values reach the apiserver as kubectl would send them.
    let bad = |name: &str, spec_patch: serde_json::Value| {
        let mut doc = serde_json::to_value(gateway(name, serde_json::json!({}))).unwrap();
        merge(&mut doc, serde_json::json!({"spec": spec_patch}));
        doc
    };
    let dynapi: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<EdgeGateway>(&()),
    );
    let cases = [
        (
            "no-url",
            serde_json::json!({"platform": {"url": null}}),
            "spec.platform.url",
        ),
        (
            "bad-url",
            serde_json::json!({"platform": {"url": "http://plain"}}),
            "spec.platform.url",
        ),
        (
            "bad-mode",
            serde_json::json!({"server": {"clientAuth": "maybe"}}),
            "spec.server.clientAuth",
        ),
        (
            "low-port",
            serde_json::json!({"server": {"port": 80}}),
            "spec.server.port",
        ),
        (
            "bad-method",
            serde_json::json!({"server": {"authMethods": ["kerberos"]}}),
            "spec.server.authMethods",
        ),
        (
            "two-verifications",
            serde_json::json!({"platform": {"serverVerification": {"insecure": true}}}),
            "spec.platform.serverVerification",
        ),
        (
            "insecure-false",
            serde_json::json!({"platform": {"serverVerification": {"ca": null, "insecure": false}}}),
            "spec.platform.serverVerification.insecure",
        ),
        (
            "bad-scan",
            serde_json::json!({"lua": {"things": [{"name": "P1", "template": "pump", "scanRateMs": 0}]}}),
            "scanRateMs",
        ),
    ];
    for (name, patch, field) in cases {
        let obj: kube::api::DynamicObject = serde_json::from_value(bad(name, patch)).unwrap();
        let err = dynapi
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(&format!("{name} must be refused"));
        let msg = err.to_string();
        assert!(msg.contains(field), "{name}: {msg}");
        assert!(
            msg.contains("Invalid") || msg.contains("invalid"),
            "{name}: {msg}"
        );
    }
    // A valid manifest is accepted and defaults are filled in by the apiserver.
    let ok = api
        .create(
            &PostParams::default(),
            &gateway("ok", serde_json::json!({})),
        )
        .await
        .expect("valid gateway");
    assert_eq!(ok.spec.server.port, 8443);
    assert_eq!(ok.spec.certificates.duration_hours, 2160);

    // CEL rules (x-kubernetes-validations) need Kubernetes 1.25+. 1.20 refuses a CRD carrying
    // them, so the committed CRD has none and the operator checks those rules itself.
    let version = client.apiserver_version().await.expect("version");
    let minor = edgeway_operator::parse_version(&version.major, &version.minor)
        .expect("version")
        .1;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let cel_crd = edgeway_operator::crd_value(true);
    let pp = PatchParams::apply("edgeway-tests").force();
    if minor < 25 {
        let dry = PatchParams {
            dry_run: true,
            ..pp
        };
        let msg = crds
            .patch("edgegateways.edgeway.io", &dry, &Patch::Apply(&cel_crd))
            .await
            .expect_err("1.20 refuses CEL rules")
            .to_string();
        assert!(
            msg.contains("x-kubernetes-validations: field not declared in schema"),
            "{msg}"
        );
        let cel_case = gateway(
            "cel",
            serde_json::json!({"spec": {"certificates": {"durationHours": 10, "renewBeforeHours": 20}}}),
        );
        api.create(&PostParams::default(), &cel_case)
            .await
            .expect("without CEL the apiserver accepts it; the operator reports it");
    } else {
        crds.patch("edgegateways.edgeway.io", &pp, &Patch::Apply(&cel_crd))
            .await
            .expect("CEL CRD");
        let cel_case = gateway(
            "cel",
            serde_json::json!({"spec": {"certificates": {"durationHours": 10, "renewBeforeHours": 20}}}),
        );
        let msg = api
            .create(&PostParams::default(), &cel_case)
            .await
            .expect_err("CEL rule enforced")
            .to_string();
        assert!(
            msg.contains("renewBeforeHours must be less than durationHours"),
            "{msg}"
        );
        install_crd(&client).await;
    }
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn gateway_yields_certificates_config_statefulset_services_and_becomes_ready() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "children").await;
    prerequisites(&client, &ns).await;
    let ctl = run_controller(&client, &ns);
    create_gateway(
        &client,
        &ns,
        &gateway("gw", serde_json::json!({"spec": {"pod": {"replicas": 2}}})),
    )
    .await;
    let sts = wait_statefulset(&client, &ns, "gw").await;

    // What the first reconcile made is one Event naming each item.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    let made: Vec<String> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("gw"))
        .filter(|e| e.reason.as_deref() == Some("Provisioned"))
        .filter_map(|e| e.message)
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    for item in [
        "issued server certificate in Secret gw-server-tls",
        "issued client certificate in Secret gw-client-tls",
        "generated basic-auth credentials in Secret",
    ] {
        assert!(made[0].contains(item), "{item} in {}", made[0]);
    }
    // Certificates: the server cert chains to the namespace CA and names the Service.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let ca_secret = get(&secrets, "edgeway-ca").await;
    let ca = Ca::load(&text(&ca_secret, "tls.crt"), &text(&ca_secret, "tls.key")).expect("CA");
    let server = get(&secrets, "gw-server-tls").await;
    assert_eq!(server.type_.as_deref(), Some("kubernetes.io/tls"));
    let cert = text(&server, "tls.crt");
    assert!(ca.signed(&cert), "server certificate chains to edgeway-ca");
    assert_eq!(
        certs::pem_certs(&cert).unwrap().len(),
        1,
        "tls.crt has no root"
    );
    assert_eq!(text(&server, "ca.crt"), text(&ca_secret, "ca.crt"));
    assert!(certs::key_matches(&cert, &text(&server, "tls.key")));
    let info = certs::inspect(&cert).unwrap();
    for name in [
        "gw",
        &format!("gw.{ns}"),
        &format!("gw.{ns}.svc"),
        &format!("gw.{ns}.svc.cluster.local"),
        &format!("*.gw-headless.{ns}.svc"),
    ] {
        assert!(
            info.dns_names.iter().any(|d| d == name),
            "{name} in {:?}",
            info.dns_names
        );
    }
    assert!(info.server_auth);
    // The tunnel certificate comes from the namespace's other root: devices trust edgeway-ca,
    // so a gateway's tunnel certificate must not chain to it.
    let client_tls = get(&secrets, "gw-client-tls").await;
    let client_cert = text(&client_tls, "tls.crt");
    let tunnel_secret = get(&secrets, "edgeway-tunnel-ca").await;
    let tunnel_ca = Ca::load(
        &text(&tunnel_secret, "tls.crt"),
        &text(&tunnel_secret, "tls.key"),
    )
    .expect("tunnel CA");
    assert!(
        tunnel_ca.signed(&client_cert),
        "client certificate chains to edgeway-tunnel-ca"
    );
    assert!(
        !ca.signed(&client_cert),
        "client certificate does not chain to edgeway-ca"
    );
    assert!(
        !tunnel_ca.signed(&cert),
        "server certificate does not chain to edgeway-tunnel-ca"
    );
    assert_eq!(text(&client_tls, "ca.crt"), text(&tunnel_secret, "ca.crt"));
    assert_ne!(text(&tunnel_secret, "ca.crt"), text(&ca_secret, "ca.crt"));
    assert!(
        certs::inspect(&client_cert).unwrap().client_auth,
        "tunnel cert has clientAuth"
    );

    // Generated basic credentials: the pod gets only the argon2 users file.
    let basic = get(&secrets, "gw-basic-auth").await;
    let users = text(&basic, "users");
    assert!(users.starts_with("edgeway:$argon2"), "{users}");
    assert!(!users.contains(&text(&basic, "password")));

    // Config: the sidecar's own parser accepts the rendered file.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = get(&maps, "gw-config").await;
    let rendered = &cm.data.as_ref().unwrap()[CONFIG_KEY];
    let parsed = SidecarConfig::parse(rendered, CONFIG_KEY).expect("sidecar parses the ConfigMap");
    assert_eq!(parsed.lua.things.len(), 2);
    assert!(parsed.auth.basic.is_some());

    // StatefulSet: security settings, probes, mounts, hash annotation; Services.
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.service_name.as_deref(), Some("gw-headless"));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(
        (psc.run_as_non_root, psc.run_as_user),
        (Some(true), Some(65532))
    );
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    assert!(c.readiness_probe.is_some() && c.liveness_probe.is_some());
    let ann = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap();
    assert!(ann.contains_key("edgeway.io/config-hash"));
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
    let svc = get(&svcs, "gw").await;
    assert_eq!(
        svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
        8443
    );
    let headless = get(&svcs, "gw-headless").await;
    assert_eq!(
        headless.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("None")
    );

    // Not ready before the pods are; Ready once they are.
    let gws: Api<EdgeGateway> = Api::namespaced(client.clone(), &ns);
    wait_for("status written", T, || {
        let gws = gws.clone();
        async move { gws.get("gw").await.ok().and_then(|g| g.status).is_some() }
    })
    .await;
    let gw = get(&gws, "gw").await;
    let status = gw.status.as_ref().unwrap();
    assert_eq!(condition(Some(status), READY).unwrap().status, "False");
    assert_eq!(
        condition(Some(status), CONFIG_VALID).unwrap().status,
        "True"
    );
    make_pods_ready(&client, &ns, "gw", 2).await;
    let gw = wait_ready(&client, &ns, "gw").await;
    let status = gw.status.unwrap();
    assert_eq!((status.replicas, status.ready_replicas), (2, 2));
    assert_eq!((status.devices_desired, status.devices_running), (2, 2));
    assert_eq!(
        status.endpoint.as_deref(),
        Some(format!("gw.{ns}.svc:8443").as_str())
    );
    assert_eq!(status.observed_generation, gw.metadata.generation);
    let server_status = status
        .certificates
        .iter()
        .find(|c| c.name == "server")
        .expect("server cert status");
    // The metrics carry what the status says, for the certificate alerts.
    let renewal: k8s_openapi::jiff::Timestamp = server_status
        .renewal_time
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let text = ctl.ctx.metrics.encode();
    let sample = format!(
        "edgeway_operator_certificate_renewal_timestamp_seconds{{namespace=\"{ns}\",gateway=\"gw\",certificate=\"server\"}} {}",
        renewal.as_second()
    );
    assert!(text.contains(&sample), "{sample} not in\n{text}");
    for type_ in ["Ready", "CertificatesReady", "ConfigValid", "Connected"] {
        assert!(condition(Some(&status), type_).is_some(), "{type_}");
    }
    ctl.stop().await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn reconciling_again_changes_nothing() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "idem").await;
    prerequisites(&client, &ns).await;
    let gws: Api<EdgeGateway> = Api::namespaced(client.clone(), &ns);
    create_gateway(&client, &ns, &gateway("gw", serde_json::json!({}))).await;
    let ctx = context(&client);
    // Reconcile directly (no controller) so nothing else writes in between.
    reconcile(Arc::new(get(&gws, "gw").await), ctx.clone())
        .await
        .expect("first reconcile");
    reconcile(Arc::new(get(&gws, "gw").await), ctx.clone())
        .await
        .expect("second reconcile");
    let before = versions(&client, &ns).await;
    reconcile(Arc::new(get(&gws, "gw").await), ctx.clone())
        .await
        .expect("third reconcile");
    let after = versions(&client, &ns).await;
    assert_eq!(before, after, "a converged reconcile must not write");
    assert!(before.len() >= 9, "{before:?}");
    delete_namespace(&client, &ns).await;
}

/// resourceVersion of the gateway and of everything the operator wrote.
async fn versions(client: &Client, ns: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let lp = Default::default();
    let gws: Api<EdgeGateway> = Api::namespaced(client.clone(), ns);
    for o in gws.list(&lp).await.unwrap() {
        out.insert(
            format!("EdgeGateway/{}", o.name_any()),
            o.resource_version().unwrap(),
        );
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    for o in secrets.list(&lp).await.unwrap() {
        out.insert(
            format!("Secret/{}", o.name_any()),
            o.resource_version().unwrap(),
        );
    }
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for o in maps.list(&lp).await.unwrap() {
        out.insert(
            format!("ConfigMap/{}", o.name_any()),
            o.resource_version().unwrap(),
        );
    }
    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    for o in svcs.list(&lp).await.unwrap() {
        out.insert(
            format!("Service/{}", o.name_any()),
            o.resource_version().unwrap(),
        );
    }
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    for o in sts.list(&lp).await.unwrap() {
        // The StatefulSet controller writes status; compare the spec generation instead.
        out.insert(
            format!("StatefulSet/{}", o.name_any()),
            format!("gen {:?}", o.metadata.generation),
        );
    }
    out
}

#[tokio::test]
async fn expiring_certificate_is_renewed_with_a_new_key_without_touching_pods() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "renew").await;
    prerequisites(&client, &ns).await;
    let ctl = run_controller(&client, &ns);
    create_gateway(&client, &ns, &gateway("gw", serde_json::json!({}))).await;
    let sts_before = wait_statefulset(&client, &ns, "gw").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let ca_secret = get(&secrets, "edgeway-ca").await;
    let ca = Ca::load(&text(&ca_secret, "tls.crt"), &text(&ca_secret, "tls.key")).unwrap();
    wait_for("server Secret", T, || {
        let s = secrets.clone();
        async move { s.get_opt("gw-server-tls").await.ok().flatten().is_some() }
    })
    .await;
    let names = certs::inspect(&text(&get(&secrets, "gw-server-tls").await, "tls.crt"))
        .unwrap()
        .dns_names;
    // Put in a certificate from the same CA that is past 2/3 of its life (expires in 2 minutes).
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let old = ca
        .issue(
            "gw",
            &names,
            Usage::Server,
            KeyAlgorithm::EcdsaP256,
            now,
            120,
        )
        .unwrap();
    let patch = serde_json::json!({"data": {
        "tls.crt": ByteString(old.cert_pem.clone().into_bytes()),
        "tls.key": ByteString(old.key_pem.clone().into_bytes()),
    }});
    secrets
        .patch(
            "gw-server-tls",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("inject expiring cert");
    // The Secret change wakes the controller (it owns the Secret); it renews at once.
    wait_for("renewed certificate", T, || {
        let s = secrets.clone();
        let old_cert = old.cert_pem.clone();
        async move {
            let s = s.get("gw-server-tls").await.unwrap();
            text(&s, "tls.crt") != old_cert
        }
    })
    .await;
    let renewed = get(&secrets, "gw-server-tls").await;
    let (cert, key) = (text(&renewed, "tls.crt"), text(&renewed, "tls.key"));
    assert_ne!(key, old.key_pem, "a new key on renewal");
    assert!(ca.signed(&cert) && certs::key_matches(&cert, &key));
    let info = certs::inspect(&cert).unwrap();
    assert!(info.not_after > now + 24 * 3600, "full lifetime again");
    // Pods are not restarted: the pod template (and generation) did not change.
    let sts_after = wait_statefulset(&client, &ns, "gw").await;
    assert_eq!(
        sts_before.metadata.generation,
        sts_after.metadata.generation
    );
    assert_eq!(
        sts_before.spec.as_ref().unwrap().template,
        sts_after.spec.as_ref().unwrap().template
    );
    ctl.stop().await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn children_are_owned_and_garbage_collected_with_the_gateway() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "gc").await;
    prerequisites(&client, &ns).await;
    let gws: Api<EdgeGateway> = Api::namespaced(client.clone(), &ns);
    create_gateway(&client, &ns, &gateway("gw", serde_json::json!({}))).await;
    let gw = get(&gws, "gw").await;
    reconcile(Arc::new(gw.clone()), context(&client))
        .await
        .expect("reconcile");
    let uid = gw.uid().unwrap();
    let children = [
        ("StatefulSet", "gw"),
        ("Service", "gw"),
        ("Service", "gw-headless"),
        ("ConfigMap", "gw-config"),
        ("Secret", "gw-server-tls"),
        ("Secret", "gw-client-tls"),
        ("Secret", "gw-basic-auth"),
    ];
    for (kind, name) in children {
        let meta = child_meta(&client, &ns, kind, name)
            .await
            .unwrap_or_else(|| panic!("{kind}/{name} exists"));
        let refs = meta.owner_references.unwrap_or_default();
        assert!(
            refs.iter()
                .any(|r| r.uid == uid && r.controller == Some(true) && r.kind == "EdgeGateway"),
            "{kind}/{name} is controlled by the gateway: {refs:?}"
        );
    }
    gws.delete("gw", &DeleteParams::background())
        .await
        .expect("delete");
    wait_for(
        "garbage collection by kube-controller-manager",
        Duration::from_secs(90),
        || {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                for (kind, name) in children {
                    if child_meta(&client, &ns, kind, name).await.is_some() {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;
    // The namespace CAs are shared trust anchors and stay.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    assert!(secrets.get_opt("edgeway-ca").await.unwrap().is_some());
    assert!(secrets
        .get_opt("edgeway-tunnel-ca")
        .await
        .unwrap()
        .is_some());
    delete_namespace(&client, &ns).await;
}

/// Reconciles started so far by a running controller.
fn reconciles(ctl: &Running) -> u64 {
    ctl.ctx.metrics.reconciles.get()
}

/// Waits until the controller has started no reconcile for 3 s; returns the count.
async fn settled(ctl: &Running) -> u64 {
    let mut last = reconciles(ctl);
    let mut quiet_since = tokio::time::Instant::now();
    let deadline = quiet_since + T;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = reconciles(ctl);
        if now != last {
            (last, quiet_since) = (now, tokio::time::Instant::now());
        } else if quiet_since.elapsed() >= Duration::from_secs(3) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reconciles never settled"
        );
    }
}

#[tokio::test]
async fn status_churn_wakes_nothing_but_ready_pods_and_a_deleted_statefulset_do() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "wake").await;
    prerequisites(&client, &ns).await;
    let ctl = run_controller(&client, &ns);
    create_gateway(&client, &ns, &gateway("gw", serde_json::json!({}))).await;
    let sts = wait_statefulset(&client, &ns, "gw").await;
    let before = settled(&ctl).await;

    // A status-only StatefulSet write (as kube-controller-manager makes) and a metadata-only
    // gateway edit change nothing a reconcile reads: neither may start one.
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let churn = serde_json::json!({"status": {"currentRevision": "churn", "collisionCount": 7}});
    sts_api
        .patch_status("gw", &PatchParams::default(), &Patch::Merge(&churn))
        .await
        .expect("patch StatefulSet status");
    let gws: Api<EdgeGateway> = Api::namespaced(client.clone(), &ns);
    let note = serde_json::json!({"metadata": {"annotations": {"example.com/note": "hi"}}});
    gws.patch("gw", &PatchParams::default(), &Patch::Merge(&note))
        .await
        .expect("annotate gateway");
    let after_churn = settled(&ctl).await;
    assert_eq!(after_churn, before, "status churn started reconciles");

    // A pod getting ready does.
    let ready = serde_json::json!({"status": {"readyReplicas": 1}});
    sts_api
        .patch_status("gw", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .expect("patch readyReplicas");
    wait_for("a reconcile after readyReplicas changed", T, || async {
        reconciles(&ctl) > after_churn
    })
    .await;

    // A deleted StatefulSet is made again at once, not at the next resync.
    sts_api
        .delete("gw", &DeleteParams::background())
        .await
        .expect("delete StatefulSet");
    let old_uid = sts.uid();
    wait_for("the StatefulSet recreated", Duration::from_secs(15), || {
        let sts_api = sts_api.clone();
        let old_uid = old_uid.clone();
        async move {
            let now = sts_api.get_opt("gw").await.ok().flatten();
            now.is_some_and(|s| s.uid() != old_uid)
        }
    })
    .await;
    ctl.stop().await;
    delete_namespace(&client, &ns).await;
}

/// API calls the running controller saved (`call`: apply or get).
fn saved(ctl: &Running, call: &'static str) -> u64 {
    ctl.ctx
        .metrics
        .api_calls_saved
        .get_or_create(&edgeway_operator::metrics::SavedLabels { call })
        .get()
}

#[tokio::test]
async fn a_settled_gateway_reconciles_from_memory_and_edits_by_others_are_undone() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "memory").await;
    prerequisites(&client, &ns).await;
    let ctl = run_controller(&client, &ns);
    create_gateway(&client, &ns, &gateway("gw", serde_json::json!({}))).await;
    wait_statefulset(&client, &ns, "gw").await;
    let quiet = settled(&ctl).await;
    let (applies, gets) = (saved(&ctl, "apply"), saved(&ctl, "get"));

    // Wake the gateway with a change the watches have caught up with (a ready pod): its
    // Services, ConfigMap and three Secrets are known unchanged, so none is applied or read.
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let ready = serde_json::json!({"status": {"readyReplicas": 1}});
    sts_api
        .patch_status("gw", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .expect("patch readyReplicas");
    let woken = settled(&ctl).await;
    assert!(woken > quiet, "the ready pod started no reconcile");
    assert!(
        saved(&ctl, "apply") >= applies + 6,
        "applies saved {applies} -> {}",
        saved(&ctl, "apply")
    );
    assert!(
        saved(&ctl, "get") >= gets + 5,
        "reads saved {gets} -> {}",
        saved(&ctl, "get")
    );

    // Someone else edits the ConfigMap and deletes a Service: both are put back, because the
    // watch shows versions the operator did not write.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = maps
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|c| c.name_any().starts_with("gw"))
        .expect("the gateway's ConfigMap");
    let name = cm.name_any();
    let key = cm
        .data
        .as_ref()
        .and_then(|d| d.keys().next().cloned())
        .expect("a file");
    let original = cm.data.as_ref().unwrap()[&key].clone();
    let edit = serde_json::json!({"data": {key.clone(): "edited by hand"}});
    maps.patch(&name, &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect("edit ConfigMap");
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
    let svc = svcs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .expect("a Service");
    svcs.delete(&svc.name_any(), &DeleteParams::background())
        .await
        .expect("delete Service");
    wait_for("the ConfigMap restored", T, || {
        let (maps, name, key, original) =
            (maps.clone(), name.clone(), key.clone(), original.clone());
        async move {
            let cm = maps.get_opt(&name).await.ok().flatten();
            cm.and_then(|c| c.data)
                .is_some_and(|d| d.get(&key) == Some(&original))
        }
    })
    .await;
    wait_for("the Service recreated", T, || {
        let (svcs, old) = (svcs.clone(), svc.clone());
        async move {
            let now = svcs.get_opt(&old.name_any()).await.ok().flatten();
            now.is_some_and(|s| s.uid() != old.uid())
        }
    })
    .await;
    ctl.stop().await;
    delete_namespace(&client, &ns).await;
}

async fn child_meta(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
) -> Option<kube::api::ObjectMeta> {
    match kind {
        "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await
            .unwrap()
            .map(|o| o.metadata),
        "Service" => Api::<Service>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await
            .unwrap()
            .map(|o| o.metadata),
        "ConfigMap" => Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await
            .unwrap()
            .map(|o| o.metadata),
        _ => Api::<Secret>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await
            .unwrap()
            .map(|o| o.metadata),
    }
}

#[tokio::test]
async fn problems_the_schema_cannot_see_are_reported_in_config_valid() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "invalid").await;
    prerequisites(&client, &ns).await;
    let gws: Api<EdgeGateway> = Api::namespaced(client.clone(), &ns);
    let ctx = context(&client);
    let missing = gateway(
        "gw",
        serde_json::json!({"spec": {"lua": {"templates": [{"name": "pump", "configMap": "nope", "key": "pump.lua"}]}}}),
    );
    create_gateway(&client, &ns, &missing).await;
    reconcile(Arc::new(get(&gws, "gw").await), ctx.clone())
        .await
        .expect("reconcile");
    let gw = get(&gws, "gw").await;
    let c = condition(gw.status.as_ref(), CONFIG_VALID)
        .expect("ConfigValid")
        .clone();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "ReferenceNotFound")
    );
    assert!(
        c.message
            .contains(&format!("ConfigMap {ns}/nope not found")),
        "{}",
        c.message
    );
    assert_eq!(
        condition(gw.status.as_ref(), READY).unwrap().reason,
        "ConfigInvalid"
    );
    // No StatefulSet is made from an invalid config.
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    assert!(sts.get_opt("gw").await.unwrap().is_none());

    // What only CEL would catch on newer servers (1.20 drops CEL) is caught by the operator.
    let p = serde_json::json!({"spec": {"lua": {"templates": [{"name": "pump", "configMap": "scripts", "key": "pump.lua"}],
        "things": [{"name": "P1", "template": "valve"}]}}});
    gws.patch("gw", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .expect("patch");
    reconcile(Arc::new(get(&gws, "gw").await), ctx.clone())
        .await
        .expect("reconcile");
    let gw = get(&gws, "gw").await;
    let c = condition(gw.status.as_ref(), CONFIG_VALID).unwrap();
    assert_eq!(c.reason, "InvalidSpec");
    assert!(
        c.message.contains("spec.lua.things[0].template"),
        "{}",
        c.message
    );

    // Fixed: valid again and the StatefulSet appears.
    let p = serde_json::json!({"spec": {"lua": {"things": [{"name": "P1", "template": "pump"}]}}});
    gws.patch("gw", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .expect("patch");
    reconcile(Arc::new(get(&gws, "gw").await), ctx.clone())
        .await
        .expect("reconcile");
    let gw = get(&gws, "gw").await;
    assert_eq!(
        condition(gw.status.as_ref(), CONFIG_VALID).unwrap().status,
        "True"
    );
    assert!(sts.get_opt("gw").await.unwrap().is_some());

    // A Lua syntax error is found by the sidecar's own loader, with the file and line in the pod.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let p = serde_json::json!({"data": {"pump.lua": "properties.rpm = { baseType = 'NUMBER' }\nif then\n"}});
    maps.patch("scripts", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .expect("patch");
    reconcile(Arc::new(get(&gws, "gw").await), ctx.clone())
        .await
        .expect("reconcile");
    let gw = get(&gws, "gw").await;
    let c = condition(gw.status.as_ref(), CONFIG_VALID).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "LuaError")
    );
    assert!(
        c.message.contains("/etc/edgeway/lua/pump.lua:2"),
        "{}",
        c.message
    );
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn an_existing_cert_manager_style_secret_is_used_as_is() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "certmgr").await;
    prerequisites(&client, &ns).await;
    // A Secret shaped like cert-manager's: tls.crt, tls.key, ca.crt.
    let issuer = Ca::generate(
        "cert-manager CA",
        k8s_openapi::jiff::Timestamp::now().as_second(),
        30 * 24 * 3600,
    )
    .unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let leaf = issuer
        .issue(
            "gw",
            &["gw".into()],
            Usage::Server,
            KeyAlgorithm::EcdsaP256,
            now,
            24 * 3600,
        )
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut s = Secret::default();
    s.metadata.name = Some("from-cert-manager".into());
    s.type_ = Some("kubernetes.io/tls".into());
    s.data = Some(BTreeMap::from([
        (
            "tls.crt".to_string(),
            ByteString(leaf.cert_pem.clone().into_bytes()),
        ),
        (
            "tls.key".to_string(),
            ByteString(leaf.key_pem.clone().into_bytes()),
        ),
        (
            "ca.crt".to_string(),
            ByteString(issuer.cert_pem.clone().into_bytes()),
        ),
    ]));
    let created = secrets.create(&PostParams::default(), &s).await.unwrap();
    let gws: Api<EdgeGateway> = Api::namespaced(client.clone(), &ns);
    create_gateway(
        &client,
        &ns,
        &gateway(
            "gw",
            serde_json::json!({"spec": {"server": {"tlsSecretName": "from-cert-manager"}}}),
        ),
    )
    .await;
    reconcile(Arc::new(get(&gws, "gw").await), context(&client))
        .await
        .expect("reconcile");
    assert!(
        secrets.get_opt("gw-server-tls").await.unwrap().is_none(),
        "no issued server cert"
    );
    let after = get(&secrets, "from-cert-manager").await;
    assert_eq!(
        after.resource_version(),
        created.resource_version(),
        "left untouched"
    );
    let sts = get(&Api::<StatefulSet>::namespaced(client.clone(), &ns), "gw").await;
    let volumes = sts.spec.unwrap().template.spec.unwrap().volumes.unwrap();
    let server = volumes.iter().find(|v| v.name == "server-tls").unwrap();
    assert_eq!(
        server.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("from-cert-manager")
    );
    let gw = get(&gws, "gw").await;
    let st = gw.status.unwrap();
    let cert = st.certificates.iter().find(|c| c.name == "server").unwrap();
    assert_eq!(
        (cert.secret_name.as_str(), cert.renewal_time.as_deref()),
        ("from-cert-manager", None)
    );
    delete_namespace(&client, &ns).await;
}

/// A Secret holding only `keystore.p12` (as an EMS `key_file` or cert-manager's
/// `keystores.pkcs12` gives it), its passphrase in another Secret: the operator reads the
/// bundle's leaf for the status, and a wrong passphrase is a condition naming the Secret.
#[tokio::test]
async fn a_pkcs12_keystore_secret_is_read_with_its_passphrase() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "p12").await;
    prerequisites(&client, &ns).await;
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let issuer = Ca::generate("EMS CA", now, 30 * 24 * 3600).unwrap();
    let leaf = issuer
        .issue(
            "gw",
            &["gw".into()],
            Usage::Server,
            KeyAlgorithm::EcdsaP256,
            now,
            24 * 3600,
        )
        .unwrap();
    let dir = std::env::temp_dir().join(format!("edgeway-cluster-p12-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("k.pem"), &leaf.key_pem).unwrap();
    std::fs::write(dir.join("c.pem"), &leaf.cert_pem).unwrap();
    let ok = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:ems-pass", "-inkey"])
        .arg(dir.join("k.pem"))
        .arg("-in")
        .arg(dir.join("c.pem"))
        .arg("-out")
        .arg(dir.join("b.p12"))
        .status()
        .expect("openssl is installed")
        .success();
    assert!(ok);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut bundle = Secret::default();
    bundle.metadata.name = Some("ems-https".into());
    bundle.data = Some(BTreeMap::from([(
        "keystore.p12".to_string(),
        ByteString(std::fs::read(dir.join("b.p12")).unwrap()),
    )]));
    secrets
        .create(&PostParams::default(), &bundle)
        .await
        .unwrap();
    let pass = |p: &str| {
        let mut s = Secret::default();
        s.metadata.name = Some("ems-pass".into());
        s.string_data = Some(BTreeMap::from([("http".to_string(), p.to_string())]));
        s
    };
    secrets
        .create(&PostParams::default(), &pass("ems-pass"))
        .await
        .unwrap();
    let gws: Api<EdgeGateway> = Api::namespaced(client.clone(), &ns);
    create_gateway(
        &client,
        &ns,
        &gateway(
            "gw",
            serde_json::json!({"spec": {"server": {"tlsSecretName": "ems-https",
                "tlsSecretFormat": "pkcs12",
                "tlsKeyPassphraseSecret": {"name": "ems-pass", "key": "http"}}}}),
        ),
    )
    .await;
    reconcile(Arc::new(get(&gws, "gw").await), context(&client))
        .await
        .expect("reconcile");
    let st = get(&gws, "gw").await.status.unwrap();
    let cert = st
        .certificates
        .iter()
        .find(|c| c.name == "server")
        .unwrap_or_else(|| panic!("{st:?}"));
    let expected = certs::rfc3339(certs::inspect(&leaf.cert_pem).unwrap().not_after);
    assert_eq!(
        (cert.secret_name.as_str(), cert.not_after.as_str()),
        ("ems-https", expected.as_str())
    );

    secrets
        .replace("ems-pass", &PostParams::default(), &pass("not-it"))
        .await
        .unwrap();
    let _ = reconcile(Arc::new(get(&gws, "gw").await), context(&client)).await;
    let st = get(&gws, "gw").await.status.unwrap();
    let ready = condition(Some(&st), CERTIFICATES_READY).expect("CertificatesReady condition");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSecret")
    );
    assert!(
        ready.message.contains("ems-https") && ready.message.contains("keystore.p12"),
        "{ready:?}"
    );
    assert!(!ready.message.contains("not-it"), "{ready:?}");
    let _ = std::fs::remove_dir_all(&dir);
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn only_one_operator_replica_leads() {
    use edgeway_operator::leader::{acquire, LeaderConfig};
    let client = client().await;
    let ns = namespace(&client, "lease").await;
    let config = |id: &str| LeaderConfig {
        namespace: ns.clone(),
        lease_name: "edgeway-operator".into(),
        identity: id.into(),
        duration_secs: 5,
        grace_secs: 2,
    };
    let first = acquire(client.clone(), &config("a"))
        .await
        .expect("a leads");
    let second = tokio::time::timeout(
        Duration::from_secs(8),
        acquire(client.clone(), &config("b")),
    )
    .await;
    assert!(
        second.is_err(),
        "b must not lead while a holds and renews the lease"
    );
    first.release().await;
    let second = tokio::time::timeout(
        Duration::from_secs(20),
        acquire(client.clone(), &config("b")),
    )
    .await
    .expect("b leads after a released")
    .expect("lease");
    second.release().await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_simulation_gets_one_pod_and_one_config_file_per_shard() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "sim").await;
    prerequisites(&client, &ns).await;
    let gws: Api<EdgeGateway> = Api::namespaced(client.clone(), &ns);
    let sim = serde_json::json!({"spec": {"simulation": {
        "count": 2500, "devicesPerPod": 1000, "namePrefix": "sensor-", "template": "pump",
        "properties": [{"name": "t", "baseType": "NUMBER",
                        "generator": {"kind": "sine", "min": 0, "max": 10, "periodMs": 60000}}]
    }}});
    create_gateway(&client, &ns, &gateway("gw", sim)).await;
    reconcile(Arc::new(get(&gws, "gw").await), context(&client))
        .await
        .expect("reconcile");
    let sts = get(&Api::<StatefulSet>::namespaced(client.clone(), &ns), "gw").await;
    let spec = sts.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    let args = spec.template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(args, ["--config", "/etc/edgeway/config/$(POD_NAME).yaml"]);
    let cm = get(
        &Api::<ConfigMap>::namespaced(client.clone(), &ns),
        "gw-config",
    )
    .await;
    let data = cm.data.unwrap();
    let mut shards = Vec::new();
    for i in 0..3 {
        let key = format!("gw-{i}.yaml");
        let parsed = SidecarConfig::parse(&data[&key], &key).expect("sidecar parses its file");
        let shard = parsed.simulation.unwrap().shard.unwrap();
        shards.push((shard.start, shard.end));
    }
    assert_eq!(shards, [(0, 1000), (1000, 2000), (2000, 2500)]);
    // Two of three pods ready: their shards (1000 + 500) plus the 2 Lua things run.
    make_pods_ready_only(&client, &ns, &["gw-0", "gw-2"]).await;
    wait_for("devicesRunning 1502", T, || {
        let gws = gws.clone();
        let client = client.clone();
        async move {
            // No controller here: reconcile as the StatefulSet status change would trigger.
            let gw = Arc::new(gws.get("gw").await.unwrap());
            reconcile(gw, context(&client)).await.expect("reconcile");
            let st = gws.get("gw").await.unwrap().status.unwrap();
            st.devices_running == 1502 && st.devices_desired == 2502
        }
    })
    .await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn referenced_config_maps_wake_the_gateway_and_script_edits_roll_out() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "refs").await;
    prerequisites(&client, &ns).await;
    let ctl = run_controller(&client, &ns);
    let gws: Api<EdgeGateway> = Api::namespaced(client.clone(), &ns);
    let late = serde_json::json!({"spec": {"lua": {"templates": [{"name": "pump", "configMap": "late", "key": "pump.lua"}]}}});
    create_gateway(&client, &ns, &gateway("gw", late)).await;
    let config_valid = |want: &'static str| {
        let gws = gws.clone();
        move || {
            let gws = gws.clone();
            async move {
                let gw = gws.get("gw").await.ok();
                condition(gw.as_ref().and_then(|g| g.status.as_ref()), CONFIG_VALID)
                    .is_some_and(|c| c.status == want)
            }
        }
    };
    wait_for(
        "ConfigValid=False (missing ConfigMap)",
        T,
        config_valid("False"),
    )
    .await;
    // Creating the ConfigMap wakes the gateway through the watch, well before the 30 s retry.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("late".into());
    cm.data = Some(BTreeMap::from([(
        "pump.lua".to_string(),
        "properties.rpm = { baseType = \"NUMBER\", value = 0 }\n".to_string(),
    )]));
    maps.create(&PostParams::default(), &cm).await.unwrap();
    wait_for(
        "ConfigValid=True soon after the ConfigMap appears",
        Duration::from_secs(15),
        config_valid("True"),
    )
    .await;
    let hash = |sts: &StatefulSet| {
        sts.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()["edgeway.io/config-hash"]
            .clone()
    };
    let before = hash(&wait_statefulset(&client, &ns, "gw").await);
    // Editing the script changes the pod template hash, so the pods roll.
    let p = serde_json::json!({"data": {"pump.lua": "properties.rpm = { baseType = \"NUMBER\", value = 2 }\n"}});
    maps.patch("late", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    wait_for("new config hash", Duration::from_secs(15), || {
        let sts_api = sts_api.clone();
        let before = before.clone();
        async move { hash(&sts_api.get("gw").await.unwrap()) != before }
    })
    .await;
    ctl.stop().await;
    delete_namespace(&client, &ns).await;
}

/// Issue 20 item 6: a CA rotated with time to spare publishes its successor first (ca.crt and
/// next.crt) and keeps signing server certificates itself, so devices that trust only the old
/// CA keep verifying the gateway; once the overlap is over the successor signs and the server
/// certificate is re-issued by it.
#[tokio::test]
async fn a_ca_rotation_publishes_the_successor_before_it_signs() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "caoverlap").await;
    prerequisites(&client, &ns).await;
    let gws: Api<EdgeGateway> = Api::namespaced(client.clone(), &ns);
    create_gateway(&client, &ns, &gateway("gw", serde_json::json!({}))).await;
    // Two of its three years gone: due for rotation, a year left.
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let year = 365 * 24 * 3600;
    let old = Ca::generate("Edgeway CA old", now - 2 * year - 60, 3 * year).unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = edgeway_operator::resources::ca_secret(
        NamespaceCa::Gateway,
        &ns,
        &old.cert_pem,
        &old.key_pem,
        &old.cert_pem,
        None,
    );
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("old CA");
    reconcile(Arc::new(get(&gws, "gw").await), context(&client))
        .await
        .expect("reconcile");
    let ca_secret = get(&secrets, "edgeway-ca").await;
    assert_eq!(
        text(&ca_secret, "tls.crt"),
        old.cert_pem,
        "the old CA still signs"
    );
    let next = Ca::load(&text(&ca_secret, "next.crt"), &text(&ca_secret, "next.key")).unwrap();
    let bundle = certs::pem_certs(&text(&ca_secret, "ca.crt")).unwrap();
    assert_eq!(bundle.len(), 2, "old and successor published");
    assert_eq!(bundle[1], certs::pem_certs(&next.cert_pem).unwrap()[0]);
    let server = get(&secrets, "gw-server-tls").await;
    assert!(
        old.signed(&text(&server, "tls.crt")),
        "old-CA-only devices still verify"
    );
    // The overlap is over (a context with none): the successor takes over.
    let settings = edgeway_operator::context::Settings {
        sidecar_image: "edgeway/edgeway-sidecar:test".into(),
        ca_overlap: 0,
        ..Default::default()
    };
    let done = edgeway_operator::context::context(
        client.clone(),
        Arc::new(edgeway_operator::metrics::Metrics::new()),
        settings,
        Some("tests".into()),
    );
    reconcile(Arc::new(get(&gws, "gw").await), done)
        .await
        .expect("reconcile");
    let ca_secret = get(&secrets, "edgeway-ca").await;
    assert_eq!(
        text(&ca_secret, "tls.crt"),
        next.cert_pem,
        "the successor signs"
    );
    assert!(ca_secret.data.as_ref().unwrap().get("next.crt").is_none());
    let server = get(&secrets, "gw-server-tls").await;
    assert!(
        next.signed(&text(&server, "tls.crt")),
        "re-issued by the new CA"
    );
    assert!(!old.signed(&text(&server, "tls.crt")));
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn an_expiring_ca_is_rotated_with_an_overlap_bundle_and_leaves_are_reissued() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "carot").await;
    prerequisites(&client, &ns).await;
    let gws: Api<EdgeGateway> = Api::namespaced(client.clone(), &ns);
    create_gateway(&client, &ns, &gateway("gw", serde_json::json!({}))).await;
    let ctx = context(&client);
    // A CA past 2/3 of its (short) life, as if it had been there for years.
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let old = Ca::generate("Edgeway CA old", now, 120).unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = edgeway_operator::resources::ca_secret(
        NamespaceCa::Gateway,
        &ns,
        &old.cert_pem,
        &old.key_pem,
        &old.cert_pem,
        None,
    );
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("old CA");
    reconcile(Arc::new(get(&gws, "gw").await), ctx.clone())
        .await
        .expect("reconcile");
    let ca_secret = get(&secrets, "edgeway-ca").await;
    let new = Ca::load(&text(&ca_secret, "tls.crt"), &text(&ca_secret, "tls.key")).unwrap();
    assert_ne!(new.cert_pem, old.cert_pem, "rotated");
    assert!(new.not_after > now + 365 * 24 * 3600);
    let bundle = text(&ca_secret, "ca.crt");
    let in_bundle = certs::pem_certs(&bundle).unwrap();
    assert_eq!(in_bundle.len(), 2, "new and old CA during the overlap");
    assert_eq!(in_bundle[1], certs::pem_certs(&old.cert_pem).unwrap()[0]);
    let server = get(&secrets, "gw-server-tls").await;
    assert!(
        new.signed(&text(&server, "tls.crt")),
        "server certificate issued by the new CA"
    );
    assert_eq!(
        text(&server, "ca.crt"),
        bundle,
        "server Secret carries the overlap bundle"
    );
    // The tunnel CA is a separate root: rotating the gateway CA leaves it alone.
    let client_tls = get(&secrets, "gw-client-tls").await;
    assert!(!new.signed(&text(&client_tls, "tls.crt")));
    assert!(!old.signed(&text(&client_tls, "tls.crt")));
    // Stable afterwards: a further reconcile keeps the new CA and bundle.
    let rv = ca_secret.resource_version();
    reconcile(Arc::new(get(&gws, "gw").await), ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(get(&secrets, "edgeway-ca").await.resource_version(), rv);
    delete_namespace(&client, &ns).await;
}

/// Issue 21: what `import ems` writes for the complete fixture is accepted by the API server
/// as `kubectl apply --dry-run=server` would send it (CRD schema, Secret and ConfigMap shapes).
#[tokio::test]
async fn imported_manifests_pass_a_server_side_dry_run() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "import").await;
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import/complete");
    let inputs = edgeway_operator::import::Inputs {
        config_json: fixture.join("config.json"),
        config_lua: Some(fixture.join("config.lua")),
        namespace: Some(ns.clone()),
        ..Default::default()
    };
    let draft = edgeway_operator::import::import(&inputs).expect("imports");
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let files = draft.files().expect("renders");
    let mut kinds = Vec::new();
    for (name, text) in files.iter().filter(|(n, _)| n.ends_with(".yaml")) {
        for doc in text.split("\n---\n") {
            let value: serde_json::Value =
                serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            let kind = value["kind"].as_str().unwrap_or_default().to_owned();
            match kind.as_str() {
                "EdgeGateway" => {
                    let gw: EdgeGateway = serde_json::from_value(value).unwrap();
                    Api::<EdgeGateway>::namespaced(client.clone(), &ns)
                        .create(&dry, &gw)
                        .await
                        .map(drop)
                }
                "ConfigMap" => {
                    let cm: ConfigMap = serde_json::from_value(value).unwrap();
                    Api::<ConfigMap>::namespaced(client.clone(), &ns)
                        .create(&dry, &cm)
                        .await
                        .map(drop)
                }
                "Secret" => {
                    let s: Secret = serde_json::from_value(value).unwrap();
                    Api::<Secret>::namespaced(client.clone(), &ns)
                        .create(&dry, &s)
                        .await
                        .map(drop)
                }
                other => panic!("{name}: unexpected kind {other}"),
            }
            .unwrap_or_else(|e| panic!("{name} {kind}: the API server refused it: {e}"));
            kinds.push(kind);
        }
    }
    assert_eq!(kinds.iter().filter(|k| *k == "EdgeGateway").count(), 1);
    assert!(
        kinds.iter().filter(|k| *k == "ConfigMap").count() >= 2,
        "{kinds:?}"
    );
    assert!(
        kinds.iter().filter(|k| *k == "Secret").count() >= 3,
        "{kinds:?}"
    );
    delete_namespace(&client, &ns).await;
}
