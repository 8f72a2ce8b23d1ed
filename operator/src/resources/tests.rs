use super::config::{config_files, render};
use super::workload::statefulset;
use super::*;
use crate::crd::EdgeGatewaySpec;
use edgeway_runtime::tls::ClientAuthMode;
use edgeway_sidecar::config::{AuthMethodName, SidecarConfig};

/// A gateway as the apiserver would hand it over (uid set, defaults applied by serde).
pub(crate) fn gateway(extra: serde_json::Value) -> EdgeGateway {
    let mut spec = serde_json::json!({
        "platform": {
            "url": "wss://platform.example",
            "appKey": {"name": "app-key", "key": "key"},
            "serverVerification": {"ca": {"configMapName": "platform-ca"}}
        }
    });
    merge(&mut spec, extra);
    let spec: EdgeGatewaySpec = serde_json::from_value(spec).expect("spec");
    let mut gw = EdgeGateway::new("gw", spec);
    gw.metadata.namespace = Some("ns".into());
    gw.metadata.uid = Some("1234".into());
    gw
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn names() -> Names {
    Names::new(&gateway(serde_json::json!({})), "cluster.local")
}

#[test]
fn rendered_config_is_accepted_by_the_sidecar_parser() {
    let gw = gateway(serde_json::json!({
        "server": {"authMethods": ["mtls", "basic", "oauth"],
                   "oauth": {"consumersSecret": {"name": "o", "key": "c.yaml"}}},
        "lua": {"templates": [{"name": "pump", "configMap": "scripts", "key": "pump.lua"}],
                "things": [{"name": "P1", "template": "pump", "properties": {"rpm": 5}}]},
        "upstream": {"image": "app:1", "port": 8080, "pathPrefix": "/app/"}
    }));
    let config = render(&gw.spec, "gw").expect("render");
    let files = config_files(&gw.spec, &names(), &config).unwrap();
    let text = &files[CONFIG_KEY];
    let parsed = SidecarConfig::parse(text, CONFIG_KEY).expect("sidecar accepts it");
    assert_eq!(parsed, config);
    let tls = parsed.server.tls.unwrap();
    assert_eq!(tls.cert.to_str(), Some("/etc/edgeway/tls/server/tls.crt"));
    assert_eq!(
        tls.client_ca.unwrap().to_str(),
        Some("/etc/edgeway/tls/server/ca.crt")
    );
    assert_eq!(tls.client_auth, ClientAuthMode::Required);
    assert_eq!(
        parsed.auth.methods,
        [
            AuthMethodName::Mtls,
            AuthMethodName::Basic,
            AuthMethodName::OAuth
        ]
    );
    assert_eq!(parsed.lua.things[0].properties["rpm"], 5);
    assert_eq!(
        parsed.lua.templates[0].file.to_str(),
        Some("/etc/edgeway/lua/pump.lua")
    );
    let upstream = parsed.upstream.unwrap();
    assert_eq!(upstream.port, 8080);
    assert!(
        !upstream.forward_credentials,
        "credentials stay at the sidecar by default"
    );
    let forwarding = gateway(serde_json::json!({
        "upstream": {"image": "app:1", "port": 8080, "forwardCredentials": true}
    }));
    assert!(
        render(&forwarding.spec, "gw")
            .unwrap()
            .upstream
            .unwrap()
            .forward_credentials
    );
    let failover = gateway(serde_json::json!({
        "platform": {"failoverUrls": ["wss://b.example/Thingworx/WS"]}
    }));
    assert_eq!(
        render(&failover.spec, "gw")
            .unwrap()
            .tunnel
            .unwrap()
            .failover_urls,
        ["wss://b.example/Thingworx/WS"]
    );
    // Keep-alive: the ThingWorx SDK's 55 s / 10 s unless the spec says otherwise.
    let timing = parsed.tunnel.as_ref().unwrap().timing.clone();
    assert_eq!(
        (timing.keep_alive_ms, timing.keep_alive_timeout_ms),
        (55_000, 10_000)
    );
    let mut spec = gw.spec.clone();
    spec.platform.keep_alive.interval_seconds = 20;
    spec.platform.keep_alive.timeout_seconds = 5;
    let timing = render(&spec, "gw").unwrap().tunnel.unwrap().timing;
    assert_eq!(
        (timing.keep_alive_ms, timing.keep_alive_timeout_ms),
        (20_000, 5_000)
    );
    assert!(
        !parsed.admin.listen.ip().is_loopback(),
        "probes reach the admin port"
    );
}

#[test]
fn config_the_sidecar_would_refuse_is_refused_at_render() {
    let gw = gateway(serde_json::json!({"server": {"clientAuth": "off"}}));
    let e = render(&gw.spec, "gw").unwrap_err();
    assert!(e.field.starts_with("auth.methods"), "{e}");
}

#[test]
fn config_hash_changes_with_config_and_lua_but_not_with_certificates() {
    let a = gateway(serde_json::json!({}));
    let b = gateway(serde_json::json!({"server": {"identityHeader": "X-Other"}}));
    let fa = config_files(&a.spec, &names(), &render(&a.spec, "gw").unwrap()).unwrap();
    let fb = config_files(&b.spec, &names(), &render(&b.spec, "gw").unwrap()).unwrap();
    let lua = BTreeMap::from([("pump".to_string(), "return {}".to_string())]);
    let h = config_hash(&fa, &lua);
    assert_eq!(h, config_hash(&fa, &lua), "stable");
    assert_ne!(h, config_hash(&fb, &lua));
    assert_ne!(h, config_hash(&fa, &BTreeMap::new()));
    // Certificates are not an input of the pod template: the same hash gives the same template,
    // whatever the Secrets hold.
    let n = names();
    let s1 = statefulset(&a, &n, "img", &h);
    let s2 = statefulset(&a, &n, "img", &h);
    assert_eq!(s1.spec.unwrap().template, s2.spec.unwrap().template);
    let ann = statefulset(&a, &n, "img", &h)
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert_eq!(ann[CONFIG_HASH_ANNOTATION], h);
    assert_eq!(
        ann.len(),
        1,
        "nothing certificate-derived in the pod template"
    );
}

#[test]
fn statefulset_pods_are_locked_down() {
    let gw = gateway(serde_json::json!({"upstream": {"image": "app:1", "port": 8080}}));
    let sts = statefulset(&gw, &names(), "img", "h");
    let pod = sts.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    let psc = pod.security_context.unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    assert_eq!(pod.containers.len(), 2);
    for c in &pod.containers {
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_string()])
        );
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    }
    let side = &pod.containers[0];
    let probe = side
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(probe.path.as_deref(), Some("/readyz"));
    let live = side
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(live.path.as_deref(), Some("/healthz"));
    let mounts = side.volume_mounts.as_ref().unwrap();
    assert!(
        mounts.iter().all(|m| m.sub_path.is_none()),
        "subPath would stop Secret updates"
    );
}

#[test]
fn every_child_is_controlled_by_the_gateway() {
    let gw = gateway(serde_json::json!({}));
    let n = names();
    let metas = [
        statefulset(&gw, &n, "img", "h").metadata,
        service(&gw, &n).metadata,
        headless_service(&gw, &n).metadata,
        config_map(&gw, &n, BTreeMap::new()).metadata,
        tls_secret(&gw, &n, n.server_tls(), "c", "k", "b").metadata,
        basic_auth_secret(&gw, &n, "p", "u").metadata,
    ];
    for m in metas {
        let refs = m.owner_references.expect("owner references");
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].controller, Some(true));
        assert_eq!(refs[0].kind, "EdgeGateway");
        assert_eq!(refs[0].uid, "1234");
        assert_eq!(
            m.labels.unwrap()["app.kubernetes.io/managed-by"],
            MANAGED_BY
        );
    }
}

#[test]
fn persisted_queue_gets_a_claim_template() {
    let gw = gateway(
        serde_json::json!({"platform": {"offlineQueue": {"persistence": {"size": "2Gi", "storageClassName": "fast"}}}}),
    );
    let spec = statefulset(&gw, &names(), "img", "h").spec.unwrap();
    let claims = spec.volume_claim_templates.unwrap();
    assert_eq!(claims[0].metadata.name.as_deref(), Some("queue"));
    let pvc = claims[0].spec.as_ref().unwrap();
    assert_eq!(pvc.storage_class_name.as_deref(), Some("fast"));
    let volumes = spec.template.spec.unwrap().volumes.unwrap();
    assert!(
        volumes.iter().all(|v| v.name != "queue"),
        "the claim provides it"
    );
}

#[test]
fn the_queue_byte_bound_defaults_to_a_quarter_of_its_volume() {
    use edgeway_sidecar::tunnel::config::FsyncPolicy;
    let queue = |q: serde_json::Value| {
        let gw = gateway(serde_json::json!({"platform": {"offlineQueue": q}}));
        render(&gw.spec, "gw").unwrap().tunnel.unwrap().queue
    };
    let q = queue(serde_json::json!({"persistence": {"size": "1Gi"}}));
    assert_eq!(q.max_bytes, Some(256 << 20));
    assert_eq!(
        (q.fsync, q.fsync_interval_ms),
        (FsyncPolicy::Interval, 1000)
    );
    let q = queue(serde_json::json!({"maxBytes": 65536, "fsync": "always",
                                     "persistence": {"size": "1Mi"}}));
    assert_eq!((q.max_bytes, q.fsync), (Some(65536), FsyncPolicy::Always));
    // In memory, only the count bounds it unless asked.
    assert_eq!(queue(serde_json::json!({})).max_bytes, None);
    for (text, bytes) in [
        ("512Mi", 512 << 20),
        ("1.5G", 1_500_000_000),
        ("1000", 1000),
        ("2Ki", 2048),
    ] {
        assert_eq!(super::config::quantity_bytes(text), Some(bytes), "{text}");
    }
    assert_eq!(super::config::quantity_bytes("1Zi"), None);
}

#[test]
fn a_byte_bound_the_volume_cannot_hold_is_refused_naming_the_field() {
    let gw = gateway(serde_json::json!({"platform": {"offlineQueue": {
        "maxBytes": 1 << 20, "persistence": {"size": "2Mi"}
    }}}));
    let p = crate::validate::spec(&gw).unwrap_err();
    assert!(
        p.message.contains("spec.platform.offlineQueue.maxBytes") && p.message.contains("2Mi"),
        "{}",
        p.message
    );
    let gw = gateway(serde_json::json!({"platform": {"offlineQueue": {
        "maxBytes": 1 << 20, "persistence": {"size": "3Mi"}
    }}}));
    crate::validate::spec(&gw).unwrap();
}

#[test]
fn disruption_budgets_from_two_pods_up_or_as_asked() {
    use super::disruption::{decide, object, Budget};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let budget = |pod: serde_json::Value| decide(&gateway(serde_json::json!({ "pod": pod })));
    assert_eq!(budget(serde_json::json!({})), Budget::Leave, "one pod");
    assert_eq!(
        budget(serde_json::json!({"replicas": 3})),
        Budget::Apply(IntOrString::Int(1))
    );
    assert_eq!(
        budget(serde_json::json!({"replicas": 3, "disruptionBudget": {"maxUnavailable": 2}})),
        Budget::Apply(IntOrString::Int(2))
    );
    assert_eq!(
        budget(serde_json::json!({"disruptionBudget": {"enabled": true}})),
        Budget::Apply(IntOrString::Int(1))
    );
    // Off: every disruption allowed, not deleted (the operator has no delete right).
    assert_eq!(
        budget(serde_json::json!({"replicas": 3, "disruptionBudget": {"enabled": false}})),
        Budget::Apply(IntOrString::String("100%".into()))
    );
    let sim = decide(&simulated());
    assert!(
        matches!(sim, Budget::Apply(_)),
        "a simulation over several pods: {sim:?}"
    );

    let gw = gateway(serde_json::json!({"pod": {"replicas": 3}}));
    let ar = kube::api::ApiResource {
        group: "policy".into(),
        version: "v1beta1".into(),
        api_version: "policy/v1beta1".into(),
        kind: "PodDisruptionBudget".into(),
        plural: "poddisruptionbudgets".into(),
    };
    let o = serde_json::to_value(object(&gw, &names(), &ar, &IntOrString::Int(1))).unwrap();
    assert_eq!(o["apiVersion"], "policy/v1beta1");
    assert_eq!(o["kind"], "PodDisruptionBudget");
    assert_eq!(o["spec"]["maxUnavailable"], 1);
    // It selects exactly the StatefulSet's pods, and goes with the gateway.
    let sts = statefulset(&gw, &names(), "img", "h");
    let pods = serde_json::to_value(sts.spec.unwrap().selector.match_labels).unwrap();
    assert_eq!(o["spec"]["selector"]["matchLabels"], pods);
    assert_eq!(o["metadata"]["ownerReferences"][0]["kind"], "EdgeGateway");
}

#[test]
fn a_proxy_is_rendered_and_its_credentials_mounted() {
    let gw = gateway(serde_json::json!({"platform": {"proxy": {
        "address": "squid.corp:3128",
        "credentialsSecret": {"name": "proxy-login", "key": "login"}
    }}}));
    let proxy = render(&gw.spec, "gw")
        .unwrap()
        .tunnel
        .unwrap()
        .proxy
        .unwrap();
    assert_eq!(proxy.address, "squid.corp:3128");
    assert_eq!(
        proxy.credentials_file.unwrap().to_str(),
        Some("/etc/edgeway/proxy/credentials")
    );
    let pod = statefulset(&gw, &names(), "img", "h")
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "proxy")
        .expect("proxy volume");
    let secret = volume.secret.unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("proxy-login"));
    assert_eq!(secret.items.unwrap()[0].path, "credentials");
    let mounts = pod.containers[0].volume_mounts.clone().unwrap();
    assert!(mounts
        .iter()
        .any(|m| m.name == "proxy" && m.mount_path == "/etc/edgeway/proxy"));
    assert!(crate::references::secrets(&gw).contains(&"proxy-login".to_string()));
    // Without a proxy, nothing of it.
    assert!(render(&gateway(serde_json::json!({})).spec, "gw")
        .unwrap()
        .tunnel
        .unwrap()
        .proxy
        .is_none());
}

#[test]
fn user_keystores_and_passphrases_are_rendered_and_mounted() {
    let gw = gateway(serde_json::json!({
        "server": {"tlsSecretName": "ems-https", "tlsSecretFormat": "pkcs12",
                   "tlsKeyPassphraseSecret": {"name": "ems-pass", "key": "http"}},
        "platform": {"clientCertificate": {"secretName": "ems-client",
                   "keyPassphraseSecret": {"name": "ems-pass", "key": "client"}}}
    }));
    let config = render(&gw.spec, "gw").unwrap();
    let tls = config.server.tls.unwrap();
    assert_eq!(
        tls.cert.to_str(),
        Some("/etc/edgeway/tls/server/keystore.p12")
    );
    assert_eq!(tls.key, tls.cert, "one bundle holds both");
    assert_eq!(
        tls.key_passphrase_file.unwrap().to_str(),
        Some("/etc/edgeway/tls/server-passphrase/passphrase")
    );
    let client = config.tunnel.unwrap().client_cert.unwrap();
    assert_eq!(
        client.key.to_str(),
        Some("/etc/edgeway/tls/client/tls.key"),
        "PEM, encrypted"
    );
    assert_eq!(
        client.key_passphrase_file.unwrap().to_str(),
        Some("/etc/edgeway/tls/client-passphrase/passphrase")
    );
    let pod = statefulset(&gw, &names(), "img", "h")
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    let volumes = pod.volumes.unwrap();
    for (volume, key) in [
        ("server-passphrase", "http"),
        ("client-passphrase", "client"),
    ] {
        let v = volumes.iter().find(|v| v.name == volume).expect(volume);
        let secret = v.secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("ems-pass"));
        let items = secret.items.as_ref().unwrap();
        assert_eq!(
            (items[0].key.as_str(), items[0].path.as_str()),
            (key, "passphrase")
        );
    }
    assert!(crate::references::secrets(&gw).contains(&"ems-pass".to_string()));

    // Issued certificates are PEM and unencrypted: a format or passphrase without a Secret
    // of one's own is an error naming the field.
    let e = render(
        &gateway(serde_json::json!({"server": {"tlsSecretFormat": "pkcs12"}})).spec,
        "gw",
    )
    .unwrap_err();
    assert_eq!(e.field, "spec.server.tlsSecretFormat");
    let e = render(
        &gateway(serde_json::json!({"platform": {"clientCertificate":
            {"keyPassphraseSecret": {"name": "p", "key": "k"}}}}))
        .spec,
        "gw",
    )
    .unwrap_err();
    assert_eq!(
        e.field,
        "spec.platform.clientCertificate.keyPassphraseSecret"
    );
}

#[test]
fn server_names_cover_the_service_and_every_pod() {
    let n = names();
    let dns = n.server_dns_names();
    for want in [
        "gw",
        "gw.ns",
        "gw.ns.svc",
        "gw.ns.svc.cluster.local",
        "*.gw-headless.ns.svc",
    ] {
        assert!(dns.iter().any(|d| d == want), "{want}");
    }
    assert_eq!(n.endpoint(8443), "gw.ns.svc:8443");
}

#[test]
fn generated_credentials_verify_and_are_random() {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let (p1, line) = generate_basic_credentials().unwrap();
    let (p2, _) = generate_basic_credentials().unwrap();
    assert_ne!(p1, p2);
    assert!(p1.len() >= 32);
    let hash = line.trim_end().strip_prefix("edgeway:").unwrap();
    assert!(!line.contains(&p1), "only the hash is in the users file");
    let parsed = PasswordHash::new(hash).unwrap();
    assert!(argon2::Argon2::default()
        .verify_password(p1.as_bytes(), &parsed)
        .is_ok());
}

#[test]
fn tunnel_points_at_the_mounted_platform_files() {
    let gw = gateway(serde_json::json!({"platform": {
        "gatewayName": "edge-1",
        "offlineQueue": {"size": 500, "overflow": "dropNewest", "persistence": {"size": "1Gi"}}
    }}));
    let t = render(&gw.spec, "gw").unwrap().tunnel.expect("tunnel");
    assert_eq!(t.url, "wss://platform.example");
    assert_eq!(
        t.app_key_file.to_str(),
        Some("/etc/edgeway/app-key/app-key")
    );
    assert_eq!(
        t.server.ca.as_ref().and_then(|p| p.to_str()),
        Some("/etc/edgeway/platform/ca.crt")
    );
    assert!(t.server.pinned.is_none() && !t.server.insecure_skip_verify);
    let cc = t.client_cert.expect("client cert");
    assert_eq!(cc.cert.to_str(), Some("/etc/edgeway/tls/client/tls.crt"));
    assert_eq!(t.gateway.unwrap().name, "edge-1");
    assert_eq!(t.queue.capacity, 500);
    assert_eq!(
        t.queue.dir.as_ref().and_then(|p| p.to_str()),
        Some("/var/lib/edgeway/queue")
    );
    let pinned = gateway(
        serde_json::json!({"platform": {"serverVerification": {"ca": null, "pinned": {"secretName": "pin", "key": "p.pem"}}}}),
    );
    let t = render(&pinned.spec, "gw").unwrap().tunnel.unwrap();
    assert_eq!(
        t.server.pinned.as_ref().and_then(|p| p.to_str()),
        Some("/etc/edgeway/platform/pinned.crt")
    );
    assert!(t.queue.dir.is_none(), "in memory unless persisted");
}

fn simulated() -> EdgeGateway {
    gateway(serde_json::json!({"simulation": {
        "count": 2500, "devicesPerPod": 1000, "namePrefix": "sensor-", "seed": 7,
        "properties": [{"name": "t", "baseType": "NUMBER",
                        "generator": {"kind": "sine", "min": 0, "max": 10, "periodMs": 60000}}]
    }}))
}

#[test]
fn simulation_is_sharded_by_pod_ordinal() {
    let gw = simulated();
    let n = names();
    let config = render(&gw.spec, "gw").unwrap();
    let files = config_files(&gw.spec, &n, &config).unwrap();
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["gw-0.yaml", "gw-1.yaml", "gw-2.yaml"]
    );
    let mut next = 0;
    for (i, key) in ["gw-0.yaml", "gw-1.yaml", "gw-2.yaml"].iter().enumerate() {
        let parsed = SidecarConfig::parse(&files[*key], key).expect("sidecar accepts it");
        let sim = parsed.simulation.unwrap();
        let shard = sim.shard.unwrap();
        assert_eq!(
            shard.start, next,
            "pod {i} continues where the previous ended"
        );
        next = shard.end;
        assert_eq!(
            (sim.count, sim.seed, sim.name_prefix.as_str()),
            (2500, 7, "sensor-")
        );
    }
    assert_eq!(next, 2500, "every device runs exactly once");
    let sts = statefulset(&gw, &n, "img", "h").spec.unwrap();
    assert_eq!(sts.replicas, Some(3));
    let c = &sts.template.spec.unwrap().containers[0];
    assert_eq!(
        c.args.as_ref().unwrap()[1],
        "/etc/edgeway/config/$(POD_NAME).yaml"
    );
    let env = &c.env.as_ref().unwrap()[0];
    assert_eq!(env.name, "POD_NAME");
    let field = env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
    assert_eq!(field.field_path, "metadata.name");
}

#[test]
fn simulation_errors_name_the_spec_field() {
    let gw = gateway(serde_json::json!({"simulation": {"count": 10,
        "properties": [{"name": "t", "baseType": "NUMBER", "generator": {"kind": "uniform", "min": 5, "max": 1}}]}}));
    let e = render(&gw.spec, "gw").unwrap_err();
    assert_eq!(
        e.field, "spec.simulation.properties[0].generator.max",
        "{e}"
    );
    let gw = gateway(serde_json::json!({"simulation": {"count": 10,
        "properties": [{"name": "t", "baseType": "NUMBER", "generator": {"kind": "sine", "amplitude": 3}}]}}));
    let e = render(&gw.spec, "gw").unwrap_err();
    assert!(e.field.starts_with("spec.simulation.properties[0]"), "{e}");
    let gw = gateway(serde_json::json!({"simulation": {"count": 10,
        "properties": [{"name": "t", "baseType": "NUMBER", "generator": {"kind": "sine", "min": 0, "max": 1, "periodMs": 1000}}],
        "events": [{"name": "Hot", "property": "x", "above": 1}]}}));
    let e = render(&gw.spec, "gw").unwrap_err();
    assert_eq!(e.field, "spec.simulation.events[0].property", "{e}");
}

#[test]
fn simulation_events_reach_every_pod() {
    let mut gw = simulated();
    gw.spec.simulation.as_mut().unwrap().events = vec![serde_json::from_value(
        serde_json::json!({"name": "Hot", "property": "t", "above": 9}),
    )
    .unwrap()];
    let config = render(&gw.spec, "gw").unwrap();
    let files = config_files(&gw.spec, &names(), &config).unwrap();
    for (key, text) in &files {
        let sim = SidecarConfig::parse(text, key).unwrap().simulation.unwrap();
        assert_eq!(sim.events.len(), 1, "{key}");
        assert_eq!(
            (sim.events[0].name.as_str(), sim.events[0].above),
            ("Hot", Some(9.0))
        );
    }
}

#[test]
fn references_list_every_configmap_and_secret_a_gateway_reads() {
    let gw = gateway(serde_json::json!({
        "server": {"authMethods": ["basic", "oauth", "mtls"], "tlsSecretName": "cm-tls",
                   "clientCa": {"secretName": "devices-ca"},
                   "basicAuth": {"usersSecret": {"name": "users", "key": "u"}},
                   "oauth": {"consumersSecret": {"name": "consumers", "key": "c"}}},
        "lua": {"templates": [{"name": "pump", "configMap": "scripts", "key": "pump.lua"}]}
    }));
    let mut cms = crate::references::config_maps(&gw);
    cms.sort();
    assert_eq!(cms, ["platform-ca", "scripts"]);
    let mut secrets = crate::references::secrets(&gw);
    secrets.sort();
    assert_eq!(
        secrets,
        ["app-key", "cm-tls", "consumers", "devices-ca", "users"]
    );
}

#[test]
fn pinned_device_certificates_are_mounted_and_trusted_beside_the_ca_or_alone() {
    let pins = serde_json::json!([
        {"secretName": "devices", "key": "meter-1.crt"},
        {"configMapName": "saved-peers", "key": "controller.pem"}
    ]);
    let gw = gateway(serde_json::json!({"server": {
        "pinnedClientCertificates": pins, "pinMode": "spki"}}));
    let tls = render(&gw.spec, "gw").unwrap().server.tls.unwrap();
    assert_eq!(
        tls.pinned_peers,
        [
            std::path::PathBuf::from("/etc/edgeway/tls/pinned-clients/0.crt"),
            std::path::PathBuf::from("/etc/edgeway/tls/pinned-clients/1.crt"),
        ]
    );
    assert_eq!(tls.pin_mode, edgeway_runtime::tls::PinMode::Spki);
    assert!(tls.client_ca.is_some(), "beside the CA by default");
    let pod = statefulset(&gw, &names(), "img", "h")
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    let v = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "pinned-clients")
        .expect("volume");
    let sources = v.projected.unwrap().sources.unwrap();
    let secret = sources[0].secret.as_ref().unwrap();
    assert_eq!(secret.name, "devices");
    let item = &secret.items.as_ref().unwrap()[0];
    assert_eq!(
        (item.key.as_str(), item.path.as_str()),
        ("meter-1.crt", "0.crt")
    );
    let cm = sources[1].config_map.as_ref().unwrap();
    assert_eq!(cm.name, "saved-peers");
    let mounts = &pod.containers[0].volume_mounts.as_ref().unwrap();
    assert!(mounts
        .iter()
        .any(|m| m.name == "pinned-clients" && m.mount_path == "/etc/edgeway/tls/pinned-clients"));
    assert!(crate::references::secrets(&gw).contains(&"devices".to_string()));

    // Pins alone: no CA trusted.
    let alone = gateway(serde_json::json!({"server": {
        "pinnedClientCertificates": [{"secretName": "devices", "key": "a.crt"}],
        "clientTrust": "pinned"}}));
    let tls = render(&alone.spec, "gw").unwrap().server.tls.unwrap();
    assert!(tls.client_ca.is_none());
    assert_eq!(tls.pinned_peers.len(), 1);

    // Contradictions name the field.
    let e = render(
        &gateway(serde_json::json!({"server": {"clientTrust": "pinned"}})).spec,
        "gw",
    )
    .unwrap_err();
    assert_eq!(e.field, "spec.server.pinnedClientCertificates");
    let e = render(
        &gateway(serde_json::json!({"server": {"clientTrust": "ca",
            "pinnedClientCertificates": [{"secretName": "d", "key": "a.crt"}]}}))
        .spec,
        "gw",
    )
    .unwrap_err();
    assert_eq!(e.field, "spec.server.clientTrust");
}

#[test]
fn an_anchor_for_the_platform_is_mounted_and_rendered() {
    let gw = gateway(serde_json::json!({"platform": {"serverVerification": {
        "ca": null, "anchor": {"configMapName": "aps-platform", "key": "platform.crt"}}}}));
    let t = render(&gw.spec, "gw").unwrap().tunnel.unwrap();
    assert_eq!(
        t.server.anchor.as_deref(),
        Some(std::path::Path::new("/etc/edgeway/platform/anchor.crt"))
    );
    assert!(t.server.ca.is_none() && t.server.pinned.is_none());
    let pod = statefulset(&gw, &names(), "img", "h")
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    let v = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "platform")
        .expect("volume");
    let cm = v.config_map.unwrap();
    assert_eq!(cm.name, "aps-platform");
    let item = &cm.items.unwrap()[0];
    assert_eq!(
        (item.key.as_str(), item.path.as_str()),
        ("platform.crt", "anchor.crt")
    );
}

#[test]
fn authorization_rules_and_the_method_header_reach_the_sidecar_config() {
    let gw = gateway(serde_json::json!({"server": {
        "authMethodHeader": "X-Auth-Kind",
        "authorization": [{"name": "ops", "principals": ["mtls:controller-*"],
                           "actions": ["read", "invoke"], "things": ["Pump*"]}]}}));
    let config = render(&gw.spec, "gw").unwrap();
    assert_eq!(config.auth.method_header, "X-Auth-Kind");
    let rule = &config.auth.authorization[0];
    assert_eq!(rule.name, "ops");
    assert_eq!(rule.things, ["Pump*"]);
    let bad = gateway(serde_json::json!({"server": {
        "authorization": [{"name": "x", "principals": ["admin"], "actions": ["read"]}]}}));
    let e = render(&bad.spec, "gw").unwrap_err();
    assert_eq!(e.field, "auth.authorization[0].principals[0]");
}

/// `protocol: mqtt`: the sidecar gets an `mqtt` section (no tunnel) whose files are the mounted
/// password, platform CA and client certificate, and each pod its own client id.
#[test]
fn mqtt_renders_a_broker_connection_with_a_client_id_per_pod() {
    let gw = gateway(serde_json::json!({
        "platform": {"protocol": "mqtt", "url": "mqtts://broker.example:8883", "appKey": null,
                     "mqtt": {"username": "plant", "passwordSecret": {"name": "mq", "key": "pw"},
                              "topics": {"prefix": "plant1"}, "keepAliveSeconds": 20,
                              "version": "5"}},
        "pod": {"replicas": 2}
    }));
    let config = render(&gw.spec, "gw").unwrap();
    assert!(config.tunnel.is_none());
    let m = config.mqtt.clone().unwrap();
    assert_eq!(m.url, "mqtts://broker.example:8883");
    assert_eq!(m.gateway, "gw");
    assert_eq!(m.username.as_deref(), Some("plant"));
    assert_eq!(
        m.password_file.unwrap().to_str(),
        Some("/etc/edgeway/mqtt-password/password")
    );
    assert_eq!(
        m.server.ca.unwrap().to_str(),
        Some("/etc/edgeway/platform/ca.crt")
    );
    assert_eq!(
        m.client_cert.unwrap().cert.to_str(),
        Some("/etc/edgeway/tls/client/tls.crt")
    );
    assert_eq!(m.topics.prefix, "plant1");
    assert_eq!(m.keep_alive_secs, 20);
    assert!(m.persistent_session);
    assert_eq!(m.version, edgeway_sidecar::mqtt::config::MqttVersion::V5);

    // One file per pod, the same but for the client id: a broker keeps one connection per id.
    let files = config_files(&gw.spec, &names(), &config).unwrap();
    let ids: Vec<String> = files
        .iter()
        .map(|(key, text)| {
            let parsed = SidecarConfig::parse(text, key).expect("sidecar accepts it");
            format!("{key}={}", parsed.mqtt.unwrap().client_id)
        })
        .collect();
    assert_eq!(ids, ["gw-0.yaml=gw-0", "gw-1.yaml=gw-1"]);
    let sts = statefulset(&gw, &names(), "img", "h");
    let pod = sts.spec.unwrap().template.spec.unwrap();
    let sidecar = &pod.containers[0];
    assert!(
        sidecar
            .args
            .as_ref()
            .unwrap()
            .iter()
            .any(|a| a == "/etc/edgeway/config/$(POD_NAME).yaml"),
        "{:?}",
        sidecar.args
    );
    let volumes: Vec<String> = pod.volumes.unwrap().into_iter().map(|v| v.name).collect();
    assert!(
        volumes.contains(&"mqtt-password".to_string()),
        "{volumes:?}"
    );
    assert!(!volumes.contains(&"app-key".to_string()), "{volumes:?}");
}
