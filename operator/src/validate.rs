//! Checks of a spec that the CRD schema cannot express (cross-field rules, the rendered config,
//! Lua syntax). Each failure is a [`Problem`] for the `ConfigValid` condition.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use edgeway_sidecar::config::{AuthMethodName, SidecarConfig};
use edgeway_sidecar::lua::{TemplateSource, ThingSpec, Things};
use kube::ResourceExt;

use crate::crd::EdgeGateway;
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
    for (i, t) in s.lua.things.iter().enumerate() {
        if !s.lua.templates.iter().any(|tp| tp.name == t.template) {
            return Err(invalid(format!(
                "spec.lua.things[{i}].template: no template named {:?} in spec.lua.templates",
                t.template
            )));
        }
    }
    render(s).map_err(|e| Problem::new("InvalidConfig", format!("sidecar config: {e}")))
}

/// Loads the Lua templates and things with the sidecar's own loader, from a temporary directory.
///
/// `sources` maps template name to script text. Runs the loader on a blocking thread.
pub async fn lua(gw: &EdgeGateway, sources: &BTreeMap<String, String>) -> Result<(), Problem> {
    if sources.is_empty() {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!(
        "edgeway-lua-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let io = |e: std::io::Error| Problem::new("LuaCheckFailed", format!("temp dir: {e}"));
    std::fs::create_dir_all(&dir).map_err(io)?;
    let mut templates = Vec::new();
    for (name, text) in sources {
        let path: PathBuf = dir.join(format!("{name}.lua"));
        if let Err(e) = std::fs::write(&path, text) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(io(e));
        }
        templates.push(TemplateSource {
            name: name.clone(),
            path,
        });
    }
    let things = &gw.spec.lua.things;
    let mut specs: Vec<ThingSpec> = things
        .iter()
        .map(|t| ThingSpec {
            name: t.name.clone(),
            template: t.template.clone(),
            scan_rate: Duration::from_millis(t.scan_rate_ms),
            properties: t.properties.clone(),
        })
        .collect();
    // The loader compiles a template only for the things using it: give every other template
    // (e.g. one only a simulation uses) a throw-away thing so its script is checked too.
    for name in sources.keys() {
        if !things.iter().any(|t| &t.template == name) {
            specs.push(ThingSpec {
                name: format!("edgeway-check-{name}"),
                template: name.clone(),
                scan_rate: Duration::from_secs(1),
                properties: Default::default(),
            });
        }
    }
    let result = tokio::task::spawn_blocking(move || {
        Things::load(&templates, &specs, Default::default()).map(|_| ())
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(Ok(())) => Ok(()),
        // The loader names the file and line; the temp dir is replaced by the mount path.
        Ok(Err(e)) => Err(Problem::new(
            "LuaError",
            e.to_string().replace(
                &dir.display().to_string(),
                crate::resources::config::LUA_DIR,
            ),
        )),
        Err(e) => Err(Problem::new(
            "LuaCheckFailed",
            format!("loader crashed: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests;
