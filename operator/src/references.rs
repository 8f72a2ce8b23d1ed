//! Checks that everything a gateway references exists: Secrets, ConfigMaps and their keys.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use crate::children::Children;

use crate::crd::{EdgeGateway, FileSource};
use crate::error::Error;
use crate::status::Problem;

/// Checks that every referenced Secret/ConfigMap key exists; returns the Lua sources by template.
pub async fn check(
    client: &Client,
    known: &Children,
    ns: &str,
    gw: &EdgeGateway,
) -> Result<Result<BTreeMap<String, String>, Problem>, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let s = &gw.spec;
    let mut secret_keys: Vec<(&str, &str, &str)> = Vec::new();
    if let Some((field, r)) = s.platform.credential() {
        secret_keys.push((field, &r.name, &r.key));
    }
    if let Some(r) = s
        .platform
        .proxy
        .as_ref()
        .and_then(|p| p.credentials_secret.as_ref())
    {
        secret_keys.push(("spec.platform.proxy.credentialsSecret", &r.name, &r.key));
    }
    if let Some(r) = &s.server.tls_key_passphrase_secret {
        secret_keys.push(("spec.server.tlsKeyPassphraseSecret", &r.name, &r.key));
    }
    if let Some(r) = &s.platform.client_certificate.key_passphrase_secret {
        secret_keys.push((
            "spec.platform.clientCertificate.keyPassphraseSecret",
            &r.name,
            &r.key,
        ));
    }
    let mut files: Vec<(&str, &FileSource)> = Vec::new();
    if let Some(ca) = &s.platform.server_verification.ca {
        files.push(("spec.platform.serverVerification.ca", ca));
    }
    if let Some(p) = &s.platform.server_verification.pinned {
        files.push(("spec.platform.serverVerification.pinned", p));
    }
    if let Some(a) = &s.platform.server_verification.anchor {
        files.push(("spec.platform.serverVerification.anchor", a));
    }
    if let Some(ca) = &s.server.client_ca {
        files.push(("spec.server.clientCa", ca));
    }
    let pins: Vec<String> = (0..s.server.pinned_client_certificates.len())
        .map(|i| format!("spec.server.pinnedClientCertificates[{i}]"))
        .collect();
    for (field, pin) in pins.iter().zip(&s.server.pinned_client_certificates) {
        files.push((field, pin));
    }
    if let Some(r) = s
        .server
        .basic_auth
        .as_ref()
        .and_then(|b| b.users_secret.as_ref())
    {
        secret_keys.push(("spec.server.basicAuth.usersSecret", &r.name, &r.key));
    }
    if let Some(o) = &s.server.oauth {
        secret_keys.push((
            "spec.server.oauth.consumersSecret",
            &o.consumers_secret.name,
            &o.consumers_secret.key,
        ));
    }
    for (field, src) in files {
        match (&src.secret_name, &src.config_map_name) {
            (Some(n), _) => secret_keys.push((field, n, &src.key)),
            (None, Some(n)) => {
                if let Err(p) = config_map_key(known, &maps, ns, field, n, &src.key).await? {
                    return Ok(Err(p));
                }
            }
            (None, None) => {}
        }
    }
    for (field, name, key) in secret_keys {
        let found = known.get(&secrets, ns, name).await?;
        let msg = match found {
            None => format!("{field}: Secret {ns}/{name} not found"),
            Some(sec) if sec.data.as_ref().is_some_and(|d| d.contains_key(key)) => continue,
            Some(_) => format!("{field}: Secret {ns}/{name} has no key {key:?}"),
        };
        return Ok(Err(Problem::new("ReferenceNotFound", msg)));
    }
    let mut lua = BTreeMap::new();
    for (i, t) in s.lua.templates.iter().enumerate() {
        let field = format!("spec.lua.templates[{i}]");
        match config_map_key(known, &maps, ns, &field, &t.config_map, &t.key).await? {
            Ok(text) => {
                lua.insert(t.name.clone(), text);
            }
            Err(p) => return Ok(Err(p)),
        }
    }
    Ok(Ok(lua))
}

async fn config_map_key(
    known: &Children,
    maps: &Api<ConfigMap>,
    ns: &str,
    field: &str,
    name: &str,
    key: &str,
) -> Result<Result<String, Problem>, Error> {
    let cm = known.get(maps, ns, name).await?;
    Ok(match cm {
        None => Err(Problem::new(
            "ReferenceNotFound",
            format!("{field}: ConfigMap {ns}/{name} not found"),
        )),
        Some(cm) => match cm.data.as_ref().and_then(|d| d.get(key)) {
            Some(text) => Ok(text.clone()),
            None => Err(Problem::new(
                "ReferenceNotFound",
                format!("{field}: ConfigMap {ns}/{name} has no key {key:?}"),
            )),
        },
    })
}

/// Names of the ConfigMaps `gw` reads (Lua scripts, CA bundles), so their changes wake it.
pub fn config_maps(gw: &EdgeGateway) -> Vec<String> {
    let s = &gw.spec;
    let mut out: Vec<String> = s
        .lua
        .templates
        .iter()
        .map(|t| t.config_map.clone())
        .collect();
    out.extend(files(gw).filter_map(|f| f.config_map_name.clone()));
    out
}

/// Names of the user Secrets `gw` reads (app key, CA bundles, users, consumers, TLS Secrets).
pub fn secrets(gw: &EdgeGateway) -> Vec<String> {
    let s = &gw.spec;
    let mut out: Vec<String> = s
        .platform
        .credential()
        .map(|(_, r)| r.name.clone())
        .into_iter()
        .collect();
    out.extend(
        s.platform
            .proxy
            .as_ref()
            .and_then(|p| p.credentials_secret.as_ref())
            .map(|r| r.name.clone()),
    );
    out.extend(files(gw).filter_map(|f| f.secret_name.clone()));
    out.extend(
        s.server
            .basic_auth
            .as_ref()
            .and_then(|b| b.users_secret.as_ref())
            .map(|r| r.name.clone()),
    );
    out.extend(
        s.server
            .oauth
            .as_ref()
            .map(|o| o.consumers_secret.name.clone()),
    );
    out.extend(s.server.tls_secret_name.clone());
    out.extend(s.platform.client_certificate.secret_name.clone());
    out.extend(
        [
            &s.server.tls_key_passphrase_secret,
            &s.platform.client_certificate.key_passphrase_secret,
        ]
        .into_iter()
        .flatten()
        .map(|r| r.name.clone()),
    );
    out
}

fn files(gw: &EdgeGateway) -> impl Iterator<Item = &FileSource> {
    let s = &gw.spec;
    let v = &s.platform.server_verification;
    [
        v.ca.as_ref(),
        v.pinned.as_ref(),
        v.anchor.as_ref(),
        s.server.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .chain(&s.server.pinned_client_certificates)
}
