//! The gateway's StatefulSet: pod security, volumes for every file the config names, probes.
//!
//! Shard contract (simulation): pods are `<gateway>-<ordinal>`. The ConfigMap holds one file per
//! pod, `<gateway>-<ordinal>.yaml`, identical but for `simulation.shard`
//! (`[ordinal*devicesPerPod, min((ordinal+1)*devicesPerPod, count))`). The sidecar is started
//! with `--config /etc/edgeway/config/$(POD_NAME).yaml`; the kubelet expands `$(POD_NAME)` from
//! the env var of that name (from `metadata.name`), so the sidecar needs no notion of ordinals.
//! Without a simulation every pod runs the shared [`super::CONFIG_KEY`].
//! Certificates are NOT hashed into the pod template: the sidecar hot-reloads mounted Secrets.

use std::collections::BTreeMap;

use edgeway_sidecar::config::AuthMethodName;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecretProjection,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount, VolumeProjection,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{
    CredentialMount, ADMIN_PORT, BASIC_DIR, CLIENT_CA_DIR, CLIENT_CA_FILE,
    CLIENT_KEY_PASSPHRASE_DIR, CLIENT_TLS_DIR, CONFIG_DIR, LUA_DIR, OAUTH_DIR, PINNED_CLIENTS_DIR,
    PLATFORM_DIR, PROXY_DIR, QUEUE_DIR, SERVER_KEY_PASSPHRASE_DIR, SERVER_TLS_DIR,
};
use super::{
    child_meta, labels, selector_labels, Names, BASIC_USERS_KEY, CONFIG_HASH_ANNOTATION, CONFIG_KEY,
};
use crate::crd::{EdgeGateway, FileSource, ServerVerification};

/// UID and GID the containers run as (distroless "nonroot").
pub const RUN_AS: i64 = 65532;
const SECRET_MODE: i32 = 0o440;

/// Replicas of the StatefulSet: one per shard when simulating, else `pod.replicas` (default 1).
pub fn replicas(gw: &EdgeGateway) -> i32 {
    super::config::pod_count(&gw.spec)
}

/// Builds the StatefulSet running the sidecar (and the optional app) with `image`.
pub fn statefulset(gw: &EdgeGateway, names: &Names, image: &str, config_hash: &str) -> StatefulSet {
    let spec = &gw.spec;
    let (volumes, mounts) = volumes(gw, names);
    let pull = spec.pod.image_pull_policy.map(|p| p.as_str().to_owned());
    let mut containers = vec![Container {
        name: "sidecar".into(),
        image: Some(image.into()),
        image_pull_policy: pull.clone(),
        args: Some(vec!["--config".into(), config_arg(gw)]),
        env: Some(vec![EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(vec![
            port("https", i32::from(spec.server.port)),
            port("admin", i32::from(ADMIN_PORT)),
        ]),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: spec.pod.resources.as_ref().map(limits_and_requests),
        security_context: Some(container_security()),
        volume_mounts: Some(mounts),
        ..Default::default()
    }];
    if let Some(up) = &spec.upstream {
        containers.push(Container {
            name: "app".into(),
            image: Some(up.image.clone()),
            image_pull_policy: pull,
            env: (!up.env.is_empty()).then(|| up.env.clone()),
            ports: Some(vec![port("app", i32::from(up.port))]),
            resources: up.resources.as_ref().map(limits_and_requests),
            security_context: Some(container_security()),
            volume_mounts: Some(vec![mount("tmp", "/tmp", false)]),
            ..Default::default()
        });
    }
    let claims = spec.platform.offline_queue.persistence.as_ref().map(|p| {
        vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("queue".into()),
                labels: Some(labels(names)),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: p.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".into(),
                        Quantity(p.size.clone()),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]
    });
    StatefulSet {
        metadata: child_meta(gw, names, names.statefulset()),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas(gw)),
            service_name: Some(names.headless()),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(names)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(names)),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.into(),
                        config_hash.into(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers,
                    volumes: Some(volumes),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(pod_security()),
                    node_selector: (!spec.pod.node_selector.is_empty())
                        .then(|| spec.pod.node_selector.clone()),
                    tolerations: (!spec.pod.tolerations.is_empty())
                        .then(|| spec.pod.tolerations.clone()),
                    affinity: spec.pod.affinity.clone(),
                    image_pull_secrets: (!spec.pod.image_pull_secrets.is_empty())
                        .then(|| spec.pod.image_pull_secrets.clone()),
                    ..Default::default()
                }),
            },
            volume_claim_templates: claims,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The `--config` argument: the shared file, or the pod's own `$(POD_NAME).yaml` (expanded by the
/// kubelet from the `POD_NAME` env var) with [`super::config::per_pod_files`].
pub fn config_arg(gw: &EdgeGateway) -> String {
    match super::config::per_pod_files(&gw.spec) {
        true => format!("{CONFIG_DIR}/$(POD_NAME).yaml"),
        false => format!("{CONFIG_DIR}/{CONFIG_KEY}"),
    }
}

/// Only `limits` and `requests`: `claims` is unknown to Kubernetes before 1.26.
fn limits_and_requests(r: &ResourceRequirements) -> ResourceRequirements {
    ResourceRequirements {
        limits: r.limits.clone(),
        requests: r.requests.clone(),
        ..Default::default()
    }
}

fn port(name: &str, n: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: n,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    }
}

/// Pod-level security: non-root 65532, RuntimeDefault seccomp, files group-readable by 65532.
pub fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        fs_group: Some(RUN_AS),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

/// Container-level security: read-only root, no privilege escalation, no capabilities.
pub fn container_security() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn mount(name: &str, dir: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: dir.into(),
        read_only: Some(read_only),
        ..Default::default()
    }
}

fn secret_volume(name: &str, secret: &str, items: Option<Vec<(String, String)>>) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(SECRET_MODE),
            items: items.map(key_to_paths),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn key_to_paths(items: Vec<(String, String)>) -> Vec<KeyToPath> {
    items
        .into_iter()
        .map(|(key, path)| KeyToPath {
            key,
            path,
            ..Default::default()
        })
        .collect()
}

fn file_volume(name: &str, src: &FileSource, file: &str) -> Volume {
    let items = Some(vec![(src.key.clone(), file.to_owned())]);
    match (&src.secret_name, &src.config_map_name) {
        (Some(s), _) => secret_volume(name, s, items),
        (None, cm) => Volume {
            name: name.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.clone().unwrap_or_default(),
                items: items.map(key_to_paths),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// The pinned device certificates as one projected volume: `<i>.crt` from each Secret or
/// ConfigMap key, in order (no `subPath`, so a changed Secret reaches the pod).
fn pinned_clients_volume(pins: &[FileSource]) -> Volume {
    let sources = pins
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let items = Some(key_to_paths(vec![(p.key.clone(), format!("{i}.crt"))]));
            match (&p.secret_name, &p.config_map_name) {
                (Some(secret), _) => VolumeProjection {
                    secret: Some(SecretProjection {
                        name: secret.clone(),
                        items,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                (None, cm) => VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: cm.clone().unwrap_or_default(),
                        items,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            }
        })
        .collect();
    Volume {
        name: "pinned-clients".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            default_mode: Some(SECRET_MODE),
        }),
        ..Default::default()
    }
}

/// Every volume and the sidecar's mounts. No `subPath`: updates of mounted Secrets must reach
/// the running sidecar.
fn volumes(gw: &EdgeGateway, names: &Names) -> (Vec<Volume>, Vec<VolumeMount>) {
    let spec = &gw.spec;
    let mut v = Vec::new();
    let mut m = Vec::new();
    let mut add = |vol: Volume, dir: &str, ro: bool| {
        m.push(mount(&vol.name, dir, ro));
        v.push(vol);
    };
    add(
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.config_map(),
                ..Default::default()
            }),
            ..Default::default()
        },
        CONFIG_DIR,
        true,
    );
    let server_secret = spec
        .server
        .tls_secret_name
        .clone()
        .unwrap_or_else(|| names.server_tls());
    add(
        secret_volume("server-tls", &server_secret, None),
        SERVER_TLS_DIR,
        true,
    );
    if let Some(ca) = &spec.server.client_ca {
        add(
            file_volume("client-ca", ca, CLIENT_CA_FILE),
            CLIENT_CA_DIR,
            true,
        );
    }
    if !spec.server.pinned_client_certificates.is_empty() {
        add(
            pinned_clients_volume(&spec.server.pinned_client_certificates),
            PINNED_CLIENTS_DIR,
            true,
        );
    }
    let client_secret = spec
        .platform
        .client_certificate
        .secret_name
        .clone()
        .unwrap_or_else(|| names.client_tls());
    add(
        secret_volume("client-tls", &client_secret, None),
        CLIENT_TLS_DIR,
        true,
    );
    match &spec.platform.server_verification {
        ServerVerification { ca: Some(ca), .. } => {
            add(file_volume("platform", ca, "ca.crt"), PLATFORM_DIR, true)
        }
        ServerVerification {
            pinned: Some(p), ..
        } => add(file_volume("platform", p, "pinned.crt"), PLATFORM_DIR, true),
        ServerVerification {
            anchor: Some(a), ..
        } => add(file_volume("platform", a, "anchor.crt"), PLATFORM_DIR, true),
        _ => {}
    }
    for (volume, r, dir) in [
        (
            "server-passphrase",
            &spec.server.tls_key_passphrase_secret,
            SERVER_KEY_PASSPHRASE_DIR,
        ),
        (
            "client-passphrase",
            &spec.platform.client_certificate.key_passphrase_secret,
            CLIENT_KEY_PASSPHRASE_DIR,
        ),
    ] {
        if let Some(r) = r {
            let items = Some(vec![(r.key.clone(), "passphrase".into())]);
            add(secret_volume(volume, &r.name, items), dir, true);
        }
    }
    if let Some(r) = spec
        .platform
        .proxy
        .as_ref()
        .and_then(|p| p.credentials_secret.as_ref())
    {
        add(
            secret_volume(
                "proxy",
                &r.name,
                Some(vec![(r.key.clone(), "credentials".into())]),
            ),
            PROXY_DIR,
            true,
        );
    }
    if let Some((_, r)) = spec.platform.credential() {
        let m = CredentialMount::of(spec.platform.protocol);
        add(
            secret_volume(
                m.volume,
                &r.name,
                Some(vec![(r.key.clone(), m.file.into())]),
            ),
            m.dir,
            true,
        );
    }
    let methods = &spec.server.auth_methods;
    if methods.contains(&AuthMethodName::Basic) {
        let (secret, key) = match spec
            .server
            .basic_auth
            .as_ref()
            .and_then(|b| b.users_secret.as_ref())
        {
            Some(r) => (r.name.clone(), r.key.clone()),
            None => (names.basic_auth(), BASIC_USERS_KEY.to_owned()),
        };
        add(
            secret_volume("basic-users", &secret, Some(vec![(key, "users".into())])),
            BASIC_DIR,
            true,
        );
    }
    if let (true, Some(o)) = (methods.contains(&AuthMethodName::OAuth), &spec.server.oauth) {
        let r = &o.consumers_secret;
        add(
            secret_volume(
                "oauth",
                &r.name,
                Some(vec![(r.key.clone(), "consumers.yaml".into())]),
            ),
            OAUTH_DIR,
            true,
        );
    }
    if !spec.lua.templates.is_empty() {
        let sources = spec
            .lua
            .templates
            .iter()
            .map(|t| VolumeProjection {
                config_map: Some(ConfigMapProjection {
                    name: t.config_map.clone(),
                    items: Some(key_to_paths(vec![(
                        t.key.clone(),
                        format!("{}.lua", t.name),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        add(
            Volume {
                name: "lua".into(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(sources),
                    ..Default::default()
                }),
                ..Default::default()
            },
            LUA_DIR,
            true,
        );
    }
    let empty = |name: &str| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    };
    add(empty("tmp"), "/tmp", false);
    if spec.platform.offline_queue.persistence.is_some() {
        // The claim comes from the StatefulSet's volumeClaimTemplates ("queue").
        m.push(mount("queue", QUEUE_DIR, false));
    }
    (v, m)
}
