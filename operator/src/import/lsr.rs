//! The LSR's `config.lua` (read as data in the sidecar's sandbox) and the templates its things
//! name: things into `spec.lua.things`, templates into a ConfigMap checked by compiling them.

use super::report::Fate::{self, Mapped, NotNeeded, Unsupported};
use super::{Draft, ImportError};
use serde_json::{json, Value};
use std::path::Path;

const FILE: &str = "config.lua";

/// The LSR's default scan rate (ms) when a thing gives none.
const DEFAULT_SCAN_RATE: u64 = 60_000;

/// Maps `config.lua` into `d`; templates come from `templates` (default: `templates/` beside
/// `config.lua`); files in `scripts` (custom script resources) are reported.
pub fn map(
    d: &mut Draft,
    path: &Path,
    templates: Option<&Path>,
    scripts_dir: Option<&Path>,
) -> Result<(), ImportError> {
    let source =
        std::fs::read(path).map_err(|e| ImportError::file(path, format!("cannot read: {e}")))?;
    let text = String::from_utf8_lossy(&source).into_owned();
    let scripts = edgeway_sidecar::lua::read_lsr_config(path, &source).map_err(|message| {
        // The sandbox's message starts with `path:line:` when a line is known.
        let shown = format!("{}:", path.display());
        let rest = message.strip_prefix(&shown).unwrap_or(&message);
        let (line, msg) = match rest.split_once(':') {
            Some((l, m)) if l.parse::<usize>().is_ok() => (l.parse().ok(), m.trim().to_owned()),
            _ => (None, rest.trim().to_owned()),
        };
        ImportError {
            file: path.to_owned(),
            line,
            message: msg,
        }
    })?;
    let line_of = |key: &str| super::jsonc::line_of_lua(&text, key);
    let templates_dir = templates
        .map(Path::to_owned)
        .or_else(|| path.parent().map(|p| p.join("templates")))
        .unwrap_or_else(|| "templates".into());
    let mut keys: Vec<&String> = scripts.keys().collect();
    keys.sort();
    let mut things = Vec::new();
    let mut used_templates: Vec<String> = Vec::new();
    for key in keys {
        let value = &scripts[key];
        let k = key.as_str();
        let at = format!("scripts.{k}");
        let fate = match (k, value) {
            (_, Value::Object(entry)) => {
                let template = match entry.get("template") {
                    Some(Value::String(t)) => Some(t.clone()),
                    Some(other) => {
                        return Err(ImportError::at(
                            path,
                            line_of(k),
                            format!("{at}.template: expected a string, found {other}"),
                        ));
                    }
                    None => None,
                };
                let Some(template) = template else {
                    for sub in entry.keys() {
                        d.report.add(FILE, format!("{at}.{sub}"), Unsupported(
                            "a custom script resource (no template) does not run in the sidecar: serve it from an upstream app (`spec.upstream`) or rewrite it as a template".into()));
                    }
                    d.report.actions.push(format!("`{at}` is a custom script resource: see the report for what to do instead."));
                    continue;
                };
                let rate = |name: &str| -> Result<Option<u64>, ImportError> {
                    match entry.get(name) {
                        None => Ok(None),
                        Some(v) => v.as_u64().filter(|r| *r > 0).map(Some).ok_or_else(|| {
                            ImportError::at(path, line_of(k), format!("{at}.{name}: expected milliseconds (a positive integer), found {v}"))
                        }),
                    }
                };
                let scan = rate("scanRate")?;
                let task = rate("taskRate")?;
                let scan_ms = scan.or(task).unwrap_or(DEFAULT_SCAN_RATE);
                for (sub, _) in entry {
                    let fate = match sub.as_str() {
                        "template" => Mapped(format!("`spec.lua.things[{}].template` and `spec.lua.templates` (ConfigMap `{}-templates`)", things.len(), d.name)),
                        "file" => NotNeeded("the LSR's thing script that loads the template; the sidecar loads templates itself".into()),
                        "scanRate" => Mapped(format!("`spec.lua.things[{}].scanRateMs`", things.len())),
                        "taskRate" if scan.is_none() || scan == task => Mapped(format!("`spec.lua.things[{}].scanRateMs` (one rate runs scans and tasks)", things.len())),
                        "taskRate" => Unsupported(format!("tasks run at the scan rate ({scan_ms} ms), not at a rate of their own; run slower work every n-th task call")),
                        "scanRateResolution" | "keepAliveRate" | "requestTimeout" => NotNeeded("timing of the LSR's own loop and its connection to the EMS; the sidecar has neither".into()),
                        other => Unsupported(format!("per-thing settings (`p_data.{other}`) other than the rates are not carried over; put the value in the template")),
                    };
                    d.report.add(FILE, format!("{at}.{sub}"), fate);
                }
                things.push(json!({"name": k, "template": template, "scanRateMs": scan_ms}));
                if !used_templates.contains(&template) {
                    used_templates.push(template);
                }
                continue;
            }
            (k, _) if k.starts_with("log_") => {
                NotNeeded("the sidecar logs structured lines to stdout (`kubectl logs`)".into())
            }
            ("fips_enabled", Value::Bool(false)) => NotNeeded("FIPS mode is off".into()),
            ("fips_enabled", _) => {
                Unsupported("the sidecar's TLS is not FIPS 140 validated".into())
            }
            (k, _) if k.starts_with("rap_") => NotNeeded(
                "the connection from the LSR to the EMS: the sidecar is both, nothing to connect"
                    .into(),
            ),
            (k, _) if k.starts_with("script_resource_") => script_resource(k),
            _ => Fate::unknown(FILE),
        };
        d.report.add(FILE, at, fate);
    }
    if let Some(dir) = scripts_dir {
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| ImportError::file(dir, format!("cannot read --scripts: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        files.sort();
        for f in files {
            d.report.add("scripts directory", f, Unsupported(
                "custom script resources do not run in the sidecar: serve them from an upstream app (`spec.upstream`) or rewrite them as templates".into()));
        }
    }
    let mut refs = Vec::new();
    for t in &used_templates {
        let file = templates_dir.join(format!("{t}.lua"));
        let source = std::fs::read(&file).map_err(|e| {
            let thing = things.iter().find(|x| x["template"] == json!(t)).and_then(|x| x["name"].as_str()).unwrap_or_default();
            ImportError::at(path, line_of(thing), format!("scripts.{thing}.template: template {t:?} not found as {} ({e}); pass --templates DIR", file.display()))
        })?;
        edgeway_sidecar::lua::check_template(&file, &source, edgeway_sidecar::lua::Dialect::Lsr)
            .map_err(|m| ImportError::file(&file, m))?;
        let key = format!("{t}.lua");
        d.config_maps
            .entry(format!("{}-templates", d.name))
            .or_default()
            .insert(key.clone(), String::from_utf8_lossy(&source).into_owned());
        refs.push(json!({"name": t, "configMap": format!("{}-templates", d.name), "key": key}));
    }
    if !refs.is_empty() {
        d.set("lua.templates", json!(refs));
        d.set("lua.things", json!(things));
    }
    Ok(())
}

fn script_resource(key: &str) -> Fate {
    match key {
        "script_resource_port" | "script_resource_host" => NotNeeded("things are served on the gateway's own HTTPS server (`spec.server.port`), same REST paths".into()),
        "script_resource_ssl" | "script_resource_certificate_chain" | "script_resource_private_key" | "script_resource_passphrase" | "script_resource_use_default_certificate" =>
            NotNeeded("the gateway's server certificate (issued, or from `http_server`) serves the Lua things too".into()),
        "script_resource_authenticate" | "script_resource_userid" | "script_resource_password" =>
            NotNeeded("the gateway's server authenticates every request (`spec.server.authMethods`); the LSR's own login is gone".into()),
        _ => Fate::unknown(FILE),
    }
}
