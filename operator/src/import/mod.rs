//! `edgeway-operator import ems`: an Edge MicroServer `config.json` (and the Lua Script
//! Resource's `config.lua`, templates and scripts) into an EdgeGateway, the ConfigMaps and
//! Secrets it references, and `import-report.md` accounting for every input key.
//!
//! Layout: [`jsonc`] reads EMS JSON with comments; [`ems`] maps `config.json`; [`lsr`] maps
//! `config.lua` and the templates; [`report`] renders the report; this file holds the draft
//! they fill and writes the output directory (all files or none).

pub mod ems;
pub mod jsonc;
pub mod lsr;
pub mod report;

use report::Report;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What to import and how.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The EMS `config.json`.
    pub config_json: PathBuf,
    /// The LSR `config.lua`.
    pub config_lua: Option<PathBuf>,
    /// The LSR templates directory (`<template>.lua` files); `templates/` beside `config.lua`
    /// when absent.
    pub templates: Option<PathBuf>,
    /// The LSR scripts directory (custom script resources); reported, not run.
    pub scripts: Option<PathBuf>,
    /// Gateway name; from `auto_bind`'s gateway entry, else `ems-gateway`.
    pub name: Option<String>,
    /// Namespace written into the manifests; none (kubectl's current) when absent.
    pub namespace: Option<String>,
    /// Carry insecure settings (`certificates.validate: false`) over as such.
    pub allow_insecure: bool,
}

/// Bad input: the file, the line when known, and what is wrong (naming the key).
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ImportError {
    /// The input file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl ImportError {
    /// An error at a line of a file.
    pub fn at(file: &Path, line: usize, message: impl Into<String>) -> ImportError {
        ImportError {
            file: file.to_owned(),
            line: Some(line),
            message: message.into(),
        }
    }

    /// An error about a whole file.
    pub fn file(file: &Path, message: impl Into<String>) -> ImportError {
        ImportError {
            file: file.to_owned(),
            line: None,
            message: message.into(),
        }
    }
}

/// What the inputs become, before it is written.
#[derive(Debug, Default)]
pub struct Draft {
    /// Gateway name.
    pub name: String,
    /// Namespace for the manifests.
    pub namespace: Option<String>,
    /// `spec` of the EdgeGateway, filled field by field.
    pub spec: Map<String, Value>,
    /// Secrets with their plaintext values (`stringData`).
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// ConfigMaps.
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Values that could not be carried (encrypted, or files not found): `kubectl` commands
    /// the user runs with the plaintext.
    pub commands: Vec<String>,
    /// The report.
    pub report: Report,
    /// Whether insecure settings may be carried over.
    pub allow_insecure: bool,
}

impl Draft {
    /// Sets `spec.<path>` (dot-separated camelCase fields), creating objects on the way.
    pub fn set(&mut self, path: &str, value: Value) {
        let mut parts = path.split('.').peekable();
        let mut at = &mut self.spec;
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                at.insert(part.to_owned(), value);
                return;
            }
            let next = at
                .entry(part.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !next.is_object() {
                *next = Value::Object(Map::new());
            }
            at = next.as_object_mut().expect("made an object above");
        }
    }

    /// `spec.<path>` if set.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut at = self.spec.get(parts.next()?)?;
        for part in parts {
            at = at.get(part)?;
        }
        Some(at)
    }

    /// Puts `value` into Secret `<gateway>-<suffix>` under `key`, points `spec.<field>` at it
    /// and returns the Secret's name. An EMS-encrypted value (`AES:...`) cannot be decrypted:
    /// the user is told the command that creates the Secret with the plaintext instead.
    pub fn secret(
        &mut self,
        (suffix, key): (&str, &str),
        value: &str,
        source: &str,
        field: &str,
    ) -> String {
        let name = format!("{}-{suffix}", self.name);
        self.set(field, json!({"name": name, "key": key}));
        if value.starts_with("AES:") {
            self.commands.push(format!(
                "kubectl create secret generic {name}{} --from-literal={key}=<plaintext of {source}>",
                self.ns_flag()
            ));
            self.report.actions.push(format!(
                "`{source}` is encrypted with the EMS' built-in key (`AES:...`), which cannot be \
                 decrypted here: create Secret `{name}` key `{key}` with its plaintext (see \
                 `secrets-to-create.sh`)."
            ));
        } else {
            self.secrets
                .entry(name.clone())
                .or_default()
                .insert(key.to_owned(), value.to_owned());
        }
        name
    }

    /// `" -n <ns>"` for commands, or nothing.
    pub fn ns_flag(&self) -> String {
        self.namespace
            .as_deref()
            .map(|n| format!(" -n {n}"))
            .unwrap_or_default()
    }

    fn metadata(&self, name: &str) -> Value {
        let mut m = json!({ "name": name });
        if let Some(ns) = &self.namespace {
            m["namespace"] = json!(ns);
        }
        m
    }

    /// The EdgeGateway manifest.
    pub fn gateway(&self) -> Value {
        json!({
            "apiVersion": "edgeway.io/v1alpha1",
            "kind": "EdgeGateway",
            "metadata": self.metadata(&self.name),
            "spec": self.spec,
        })
    }

    /// The output files: name and content.
    pub fn files(&self) -> Result<Vec<(String, String)>, serde_saphyr::ser::Error> {
        let docs = |items: Vec<Value>| -> Result<String, serde_saphyr::ser::Error> {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&serde_saphyr::to_string(item)?);
            }
            Ok(out)
        };
        let mut files = vec![(
            "gateway.yaml".to_owned(),
            format!(
                "# Imported from an EMS configuration by `edgeway-operator import ems`; see \
                 import-report.md.\n{}",
                serde_saphyr::to_string(&self.gateway())?
            ),
        )];
        if !self.config_maps.is_empty() {
            let maps = self
                .config_maps
                .iter()
                .map(|(name, data)| {
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": self.metadata(name), "data": data})
                })
                .collect();
            files.push(("configmaps.yaml".into(), docs(maps)?));
        }
        if !self.secrets.is_empty() {
            let secrets = self
                .secrets
                .iter()
                .map(|(name, data)| {
                    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                           "metadata": self.metadata(name), "stringData": data})
                })
                .collect();
            files.push(("secrets.yaml".into(), docs(secrets)?));
        }
        if !self.commands.is_empty() {
            let mut sh = String::from(
                "#!/bin/sh\n# Values the import could not carry over: replace each <...> with the \
                 plaintext, then run.\nset -e\n",
            );
            for c in &self.commands {
                sh.push_str(c);
                sh.push('\n');
            }
            files.push(("secrets-to-create.sh".into(), sh));
        }
        files.push(("import-report.md".into(), self.report.render(&self.name)));
        Ok(files)
    }
}

/// Reads the inputs into a draft. Bad input is an error naming the file, line and key.
pub fn import(inputs: &Inputs) -> Result<Draft, ImportError> {
    let text = std::fs::read_to_string(&inputs.config_json)
        .map_err(|e| ImportError::file(&inputs.config_json, format!("cannot read: {e}")))?;
    let config = jsonc::parse(&inputs.config_json, &text)?;
    let mut draft = Draft {
        namespace: inputs.namespace.clone(),
        allow_insecure: inputs.allow_insecure,
        ..Draft::default()
    };
    draft.name = match &inputs.name {
        Some(n) => n.clone(),
        None => ems::gateway_name(&config)
            .map(|n| dns_label(&n))
            .unwrap_or_else(|| "ems-gateway".into()),
    };
    if dns_label(&draft.name) != draft.name {
        return Err(ImportError::file(
            &inputs.config_json,
            format!(
                "--name {:?} is not a Kubernetes name (lower-case letters, digits and '-')",
                draft.name
            ),
        ));
    }
    ems::map(&mut draft, &inputs.config_json, &text, &config)?;
    if let Some(lua) = &inputs.config_lua {
        lsr::map(
            &mut draft,
            lua,
            inputs.templates.as_deref(),
            inputs.scripts.as_deref(),
        )?;
    }
    let gateway = draft.gateway();
    serde_json::from_value::<crate::crd::EdgeGateway>(gateway.clone()).map_err(|e| {
        ImportError::file(
            &inputs.config_json,
            format!("the mapped gateway is not valid: {e}"),
        )
    })?;
    if let Err(problems) = crate::local::schema::check(&gateway) {
        return Err(ImportError::file(
            &inputs.config_json,
            format!(
                "the mapped gateway breaks the CRD schema: {}",
                problems.join("; ")
            ),
        ));
    }
    Ok(draft)
}

/// Writes the draft's files into `dir`, which must not exist or be empty: into a sibling
/// temporary directory first, renamed into place, so a failure leaves no partial output.
/// Secrets are written readable by the owner only.
pub fn write(draft: &Draft, dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let fail = |e: String| ImportError::file(dir, e);
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(fail("exists and is not empty; choose a new --out".into()));
        }
        std::fs::remove_dir(dir).map_err(|e| fail(e.to_string()))?;
    }
    let files = draft
        .files()
        .map_err(|e| fail(format!("rendering YAML: {e}")))?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = parent.join(format!(
        ".{}.import-{}",
        dir.file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let written = (|| -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(&tmp)?;
        let mut out = Vec::new();
        for (name, content) in &files {
            let path = tmp.join(name);
            std::fs::write(&path, content)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = match name.as_str() {
                    "secrets.yaml" => 0o600,
                    n if n.ends_with(".sh") => 0o700,
                    _ => 0o644,
                };
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            }
            out.push(dir.join(name));
        }
        std::fs::rename(&tmp, dir)?;
        Ok(out)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        fail(e.to_string())
    })
}

/// A Kubernetes name from free text: lower case, other characters as '-', at most 63.
pub fn dns_label(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    out.truncate(63);
    out.trim_matches('-').to_owned()
}
