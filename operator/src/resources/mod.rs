//! Pure builders of a gateway's children: names, labels, Secrets, ConfigMap and Services.
//!
//! The sidecar config is rendered in [`config`], the StatefulSet in [`workload`], the
//! PodDisruptionBudget in [`disruption`]. Nothing here talks to Kubernetes, so every object can
//! be checked in unit tests.

pub mod config;
pub mod disruption;
pub mod workload;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::crd::EdgeGateway;

/// The one field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "edgeway-operator";
/// Name of the per-namespace CA Secret (servers and device trust).
pub const CA_SECRET: &str = "edgeway-ca";
/// Name of the per-namespace CA Secret that signs only tunnel client certificates.
pub const TUNNEL_CA_SECRET: &str = "edgeway-tunnel-ca";

/// The two roots of a namespace, kept apart so that one cannot stand in for the other: the
/// gateway CA signs server certificates and is what devices' client certificates chain to; the
/// tunnel CA signs only the gateways' tunnel client certificates, which the platform trusts. With
/// one root, a gateway's tunnel certificate was accepted as a device by every other gateway of
/// the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceCa {
    /// `edgeway-ca`: server certificates, device trust.
    Gateway,
    /// `edgeway-tunnel-ca`: tunnel client certificates.
    Tunnel,
}

impl NamespaceCa {
    /// The Secret holding it.
    pub fn secret_name(self) -> &'static str {
        match self {
            NamespaceCa::Gateway => CA_SECRET,
            NamespaceCa::Tunnel => TUNNEL_CA_SECRET,
        }
    }

    /// Its name in `status.certificates`, metrics and the Secret's component label.
    pub fn label(self) -> &'static str {
        match self {
            NamespaceCa::Gateway => "ca",
            NamespaceCa::Tunnel => "tunnel-ca",
        }
    }

    /// Subject common name of a CA made for namespace `ns`.
    pub fn common_name(self, ns: &str) -> String {
        match self {
            NamespaceCa::Gateway => format!("Edgeway CA {ns}"),
            NamespaceCa::Tunnel => format!("Edgeway tunnel CA {ns}"),
        }
    }
}
/// Pod template annotation holding the hash of the rendered config and Lua sources.
pub const CONFIG_HASH_ANNOTATION: &str = "edgeway.io/config-hash";
/// Label value of `app.kubernetes.io/managed-by`, also the selector of watched children.
pub const MANAGED_BY: &str = "edgeway-operator";
/// Key of the rendered sidecar config in the ConfigMap (shared by every pod).
pub const CONFIG_KEY: &str = "sidecar.yaml";

/// Names of a gateway's children, all derived from the gateway's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Gateway name.
    pub gateway: String,
    /// Gateway namespace.
    pub namespace: String,
    /// Cluster DNS domain, e.g. `cluster.local`.
    pub cluster_domain: String,
}

impl Names {
    /// Names of `gw`'s children in a cluster with DNS domain `cluster_domain`.
    pub fn new(gw: &EdgeGateway, cluster_domain: &str) -> Self {
        Self {
            gateway: gw.name_any(),
            namespace: gw.namespace().unwrap_or_default(),
            cluster_domain: cluster_domain.to_owned(),
        }
    }
    /// The StatefulSet (and its pods' name prefix).
    pub fn statefulset(&self) -> String {
        self.gateway.clone()
    }
    /// The ClusterIP Service devices connect to.
    pub fn service(&self) -> String {
        self.gateway.clone()
    }
    /// The headless Service governing the StatefulSet.
    pub fn headless(&self) -> String {
        format!("{}-headless", self.gateway)
    }
    /// The ConfigMap with the rendered sidecar config.
    pub fn config_map(&self) -> String {
        format!("{}-config", self.gateway)
    }
    /// The issued server certificate's Secret.
    pub fn server_tls(&self) -> String {
        format!("{}-server-tls", self.gateway)
    }
    /// The issued tunnel client certificate's Secret.
    pub fn client_tls(&self) -> String {
        format!("{}-client-tls", self.gateway)
    }
    /// The generated basic-auth credentials' Secret.
    pub fn basic_auth(&self) -> String {
        format!("{}-basic-auth", self.gateway)
    }
    /// In-cluster endpoint `host:port` of the Service.
    pub fn endpoint(&self, port: u16) -> String {
        format!("{}.{}.svc:{port}", self.service(), self.namespace)
    }
    /// DNS names of the server certificate: the Service in every short form, and every pod of
    /// the headless Service (a wildcard, so scaling does not re-issue).
    pub fn server_dns_names(&self) -> Vec<String> {
        let (svc, ns, dom) = (self.service(), &self.namespace, &self.cluster_domain);
        let hl = self.headless();
        vec![
            svc.clone(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.{dom}"),
            format!("*.{hl}.{ns}.svc"),
            format!("*.{hl}.{ns}.svc.{dom}"),
        ]
    }
    /// Common name of the tunnel client certificate: `<gateway>.<namespace>`.
    pub fn client_common_name(&self) -> String {
        format!("{}.{}", self.gateway, self.namespace)
    }
}

/// Labels on every child; the first two also select the pods.
pub fn labels(names: &Names) -> BTreeMap<String, String> {
    let mut l = selector_labels(names);
    l.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    l.insert("app.kubernetes.io/component".into(), "gateway".into());
    l
}

/// Labels selecting the gateway's pods (immutable once the StatefulSet exists).
pub fn selector_labels(names: &Names) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "edgeway-gateway".into()),
        ("app.kubernetes.io/instance".into(), names.gateway.clone()),
    ])
}

/// The controller owner reference pointing at the gateway.
pub fn owner_ref(gw: &EdgeGateway) -> Option<OwnerReference> {
    gw.controller_owner_ref(&())
}

/// Metadata of a child: name, namespace, labels and the controller owner reference.
pub fn child_meta(gw: &EdgeGateway, names: &Names, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace.clone()),
        labels: Some(labels(names)),
        owner_references: owner_ref(gw).map(|o| vec![o]),
        ..Default::default()
    }
}

/// A `kubernetes.io/tls` Secret shaped like cert-manager's: `tls.crt`, `tls.key`, `ca.crt`.
pub fn tls_secret(
    gw: &EdgeGateway,
    names: &Names,
    name: String,
    cert_pem: &str,
    key_pem: &str,
    ca_bundle: &str,
) -> Secret {
    Secret {
        metadata: child_meta(gw, names, name),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".into(), ByteString(cert_pem.as_bytes().to_vec())),
            ("tls.key".into(), ByteString(key_pem.as_bytes().to_vec())),
            ("ca.crt".into(), ByteString(ca_bundle.as_bytes().to_vec())),
        ])),
        ..Default::default()
    }
}

/// A namespace CA Secret: `tls.crt`/`tls.key` of the current (signing) CA, `ca.crt` the trust
/// bundle, and during a rotation's overlap `next.crt`/`next.key`, the successor already in
/// `ca.crt` but not yet signing.
///
/// It has no owner: it is a trust anchor of the namespace, shared by every gateway there and kept
/// when gateways come and go (so re-created gateways are still trusted by devices and platform).
pub fn ca_secret(
    which: NamespaceCa,
    namespace: &str,
    cert_pem: &str,
    key_pem: &str,
    bundle: &str,
    next: Option<(&str, &str)>,
) -> Secret {
    let mut data = BTreeMap::from([
        ("tls.crt".into(), ByteString(cert_pem.as_bytes().to_vec())),
        ("tls.key".into(), ByteString(key_pem.as_bytes().to_vec())),
        ("ca.crt".into(), ByteString(bundle.as_bytes().to_vec())),
    ]);
    if let Some((cert, key)) = next {
        data.insert("next.crt".into(), ByteString(cert.as_bytes().to_vec()));
        data.insert("next.key".into(), ByteString(key.as_bytes().to_vec()));
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(which.secret_name().into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/managed-by".into(), MANAGED_BY.into()),
                ("app.kubernetes.io/component".into(), which.label().into()),
            ])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// Key of the generated users file (the only key mounted into pods).
pub const BASIC_USERS_KEY: &str = "users";
/// User name of the generated basic-auth credentials.
pub const BASIC_USER: &str = "edgeway";

/// The generated basic-auth Secret: `username` and `password` for people, `users` (argon2) for
/// the sidecar. Only `users` is mounted.
pub fn basic_auth_secret(
    gw: &EdgeGateway,
    names: &Names,
    password: &str,
    users_line: &str,
) -> Secret {
    Secret {
        metadata: child_meta(gw, names, names.basic_auth()),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (
                "username".into(),
                ByteString(BASIC_USER.as_bytes().to_vec()),
            ),
            ("password".into(), ByteString(password.as_bytes().to_vec())),
            (
                BASIC_USERS_KEY.into(),
                ByteString(users_line.as_bytes().to_vec()),
            ),
        ])),
        ..Default::default()
    }
}

/// A random password (32 URL-safe characters, 192 bits) and its `user:argon2-hash` line.
pub fn generate_basic_credentials() -> Result<(String, String), argon2::password_hash::Error> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    use base64::Engine;
    let bytes: [u8; 24] = rand::random();
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes)?;
    // The password is 192 random bits: nobody can guess it, so a memory-hard hash buys nothing
    // over a light one. Argon2's default (19 MiB, 2 passes) cost 43 % of the operator's CPU at
    // 100 gateways (bench/results/operator-scale.md) and the same again in the sidecar on every
    // basic-auth request; 1 MiB and one pass keep both cheap.
    let params = argon2::Params::new(1024, 1, 1, None)?;
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let hash = hasher.hash_password(password.as_bytes(), &salt)?;
    Ok((password, format!("{BASIC_USER}:{hash}\n")))
}

/// The ConfigMap holding the rendered sidecar config(s).
pub fn config_map(gw: &EdgeGateway, names: &Names, data: BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(gw, names, names.config_map()),
        data: Some(data),
        ..Default::default()
    }
}

/// Hash of what a pod must restart for: the config files and the Lua sources (not certificates,
/// which the sidecar hot-reloads).
pub fn config_hash(
    config: &BTreeMap<String, String>,
    lua_sources: &BTreeMap<String, String>,
) -> String {
    let mut h = Sha256::new();
    for (section, map) in [("config", config), ("lua", lua_sources)] {
        for (k, v) in map {
            for part in [section, k.as_str(), v.as_str()] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part.as_bytes());
            }
        }
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The ClusterIP Service devices use, port `https`.
pub fn service(gw: &EdgeGateway, names: &Names) -> Service {
    Service {
        metadata: child_meta(gw, names, names.service()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(names)),
            ports: Some(vec![https_port(gw)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The headless Service giving every pod a stable DNS name (`<pod>.<gw>-headless.<ns>.svc`).
pub fn headless_service(gw: &EdgeGateway, names: &Names) -> Service {
    Service {
        metadata: child_meta(gw, names, names.headless()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector_labels(names)),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![https_port(gw)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn https_port(gw: &EdgeGateway) -> ServicePort {
    ServicePort {
        name: Some("https".into()),
        port: i32::from(gw.spec.server.port),
        target_port: Some(IntOrString::String("https".into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests;
