//! Checks of a spec that the CRD schema cannot express (cross-field rules, the rendered config,
//! Lua syntax, compiled only). Each failure is a [`Problem`] for the `ConfigValid` condition.

use std::collections::BTreeMap;
use std::path::PathBuf;

use edgeway_sidecar::config::{AuthMethodName, SidecarConfig};
use edgeway_sidecar::lua::check_template;
use kube::ResourceExt;

use crate::crd::{EdgeGateway, EdgeGatewaySpec, PlatformProtocol, PlatformSpec};
use crate::resources::config::{render, ADMIN_PORT};
use crate::status::Problem;

/// Longest gateway name: the StatefulSet's revision label `<name>-<10 chars>` must fit 63.
pub const MAX_NAME_LEN: usize = 52;
/// Most pods a simulation may ask for.
pub const MAX_PODS: i32 = 1000;

/// Checks the spec alone and renders the sidecar config (validated by the sidecar's rules).
pub fn spec(gw: &EdgeGateway) -> Result<SidecarConfig, Problem> {
    let invalid = |m: String| Problem::new("InvalidSpec", m);
    let name = gw.name_any();
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(format!(
            "metadata.name: at most {MAX_NAME_LEN} characters (StatefulSet revision labels)"
        )));
    }
    let s = &gw.spec;
    let v = &s.platform.server_verification;
    let chosen = [v.ca.is_some(), v.pinned.is_some(), v.insecure.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if chosen != 1 {
        return Err(invalid(
            "spec.platform.serverVerification: set exactly one of ca, pinned, insecure".into(),
        ));
    }
    if v.insecure == Some(false) {
        return Err(invalid(
            "spec.platform.serverVerification.insecure: only `true` is meaningful; use ca or pinned"
                .into(),
        ));
    }
    platform(&s.platform).map_err(invalid)?;
    if let Some(b) = s.certificates.renew_before_hours {
        if b >= s.certificates.duration_hours {
            return Err(invalid(
                "spec.certificates.renewBeforeHours: must be less than durationHours".into(),
            ));
        }
    }
    if s.server.auth_methods.contains(&AuthMethodName::OAuth) && s.server.oauth.is_none() {
        return Err(invalid(
            "spec.server.oauth: required when authMethods has oauth".into(),
        ));
    }
    if let Some(up) = &s.upstream {
        if up.port == s.server.port || up.port == ADMIN_PORT {
            return Err(invalid(format!(
                "spec.upstream.port: {} is taken by the sidecar (server {}, admin {ADMIN_PORT})",
                up.port, s.server.port
            )));
        }
    }
    if let Some(sim) = &s.simulation {
        if s.pod.replicas.is_some() {
            return Err(invalid(
                "spec.pod.replicas: must be absent with spec.simulation (one pod per devicesPerPod devices)"
                    .into(),
            ));
        }
        let pods = crate::resources::config::pod_count(s);
        if pods > MAX_PODS {
            return Err(invalid(format!(
                "spec.simulation: {pods} pods (count / devicesPerPod); at most {MAX_PODS}, raise devicesPerPod"
            )));
        }
        if let Some(t) = &sim.template {
            if !s.lua.templates.iter().any(|tp| &tp.name == t) {
                return Err(invalid(format!(
                    "spec.simulation.template: no template named {t:?} in spec.lua.templates"
                )));
            }
        }
    }
    let q = &s.platform.offline_queue;
    if let (Some(max), Some(p)) = (q.max_bytes, &q.persistence) {
        let size = crate::resources::config::quantity_bytes(&p.size).unwrap_or(0);
        if max.saturating_mul(3) > size {
            return Err(invalid(format!(
                "spec.platform.offlineQueue.maxBytes: {max} needs up to 3 × that on the volume \
                 (the log, its dead lines, a compaction's copy), more than persistence.size {}",
                p.size
            )));
        }
    }
    for (i, t) in s.lua.things.iter().enumerate() {
        if !s.lua.templates.iter().any(|tp| tp.name == t.template) {
            return Err(invalid(format!(
                "spec.lua.things[{i}].template: no template named {:?} in spec.lua.templates",
                t.template
            )));
        }
    }
    render(s, &name).map_err(|e| Problem::new("InvalidConfig", format!("sidecar config: {e}")))
}

/// The fields each platform protocol needs, and those it has no use for.
fn platform(p: &PlatformSpec) -> Result<(), String> {
    match p.protocol {
        PlatformProtocol::AlwaysOn => {
            if !p.url.starts_with("wss://") {
                return Err("spec.platform.url: AlwaysOn needs wss://host:port/Thingworx/WS (mqtts:// is for protocol: mqtt)".into());
            }
            if p.app_key.is_none() {
                return Err("spec.platform.appKey: required with protocol alwaysOn".into());
            }
            if p.mqtt.is_some() {
                return Err("spec.platform.mqtt: only with protocol: mqtt".into());
            }
        }
        PlatformProtocol::Mqtt => {
            let unused = |field: &str, instead: &str| {
                Err(format!(
                    "spec.platform.{field}: AlwaysOn only, not used with protocol: mqtt{instead}"
                ))
            };
            if p.app_key.is_some() {
                return unused(
                    "appKey",
                    " (the broker login is mqtt.username and mqtt.passwordSecret)",
                );
            }
            if !p.failover_urls.is_empty() {
                return unused("failoverUrls", "");
            }
            if p.proxy.is_some() {
                return unused("proxy", "");
            }
            let m = p.mqtt.as_ref();
            if m.is_some_and(|m| m.password_secret.is_some() && m.username.is_none()) {
                return Err(
                    "spec.platform.mqtt.passwordSecret: needs spec.platform.mqtt.username".into(),
                );
            }
        }
    }
    Ok(())
}

/// Checks the images a gateway names against the operator's allow-list (`--allowed-image`,
/// prefixes; empty: any image).
pub fn images(gw: &EdgeGateway, allowed: &[String]) -> Result<(), Problem> {
    if allowed.is_empty() {
        return Ok(());
    }
    let named = [
        ("spec.pod.image", gw.spec.pod.image.as_deref()),
        (
            "spec.upstream.image",
            gw.spec.upstream.as_ref().map(|u| u.image.as_str()),
        ),
    ];
    for (field, image) in named {
        if let Some(image) = image {
            if !allowed
                .iter()
                .any(|prefix| image.starts_with(prefix.as_str()))
            {
                return Err(Problem::new(
                    "ImageNotAllowed",
                    format!(
                        "{field}: {image:?} is not under an allowed prefix ({}); ask the \
                         cluster's operator admin (chart value operator.allowedImages)",
                        allowed.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Checks each Lua template the way the sidecar's loader refuses a script before running it
/// (`<close>` variables, bytecode) and compiles it, without running any of it: the operator
/// never executes tenant code (it holds Secret access for every tenant). What a template's
/// top-level code does shows when the sidecar loads it (the pod fails to start and says why).
/// Errors name the file as mounted in the pod, and the line.
pub fn lua(spec: &EdgeGatewaySpec, sources: &BTreeMap<String, String>) -> Result<(), Problem> {
    for t in &spec.lua.templates {
        let Some(text) = sources.get(&t.name) else {
            continue;
        };
        let path = PathBuf::from(crate::resources::config::LUA_DIR).join(format!("{}.lua", t.name));
        check_template(&path, text.as_bytes(), t.dialect)
            .map_err(|m| Problem::new("LuaError", m))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
