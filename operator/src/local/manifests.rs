//! Reading the manifests `edgeway-operator local` runs: EdgeGateways plus the Secrets and
//! ConfigMaps they reference, from multi-document YAML files, as `kubectl apply -f` takes them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use serde::Deserialize;

use crate::crd::{EdgeGateway, FileSource};
use crate::secrets::secret_text;

/// A manifest problem, located by file and document.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ManifestError {
    /// The file.
    pub file: String,
    /// What is wrong, naming the document and field.
    pub message: String,
}

/// Everything the files declared.
#[derive(Default)]
pub struct Manifests {
    /// Gateways, with the file each came from.
    pub gateways: Vec<(PathBuf, EdgeGateway)>,
    /// Secrets by name.
    pub secrets: BTreeMap<String, Secret>,
    /// ConfigMaps by name.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// cert-manager Certificates, which local mode issues from its own CA.
    pub certificates: Vec<CertificateRequest>,
}

/// The part of a cert-manager `Certificate` local mode honours.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequest {
    /// Secret to write (`tls.crt`, `tls.key`, `ca.crt`).
    pub secret_name: String,
    /// DNS names.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// Subject CN.
    #[serde(default)]
    pub common_name: Option<String>,
}

/// Reads every document of every file; unknown kinds are errors, not silently skipped.
pub fn load(files: &[PathBuf]) -> Result<Manifests, ManifestError> {
    let mut m = Manifests::default();
    for file in files {
        let err = |message: String| ManifestError {
            file: file.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(file).map_err(|e| err(format!("cannot read: {e}")))?;
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple_with_options(
            &text,
            edgeway_runtime::config::yaml_options(),
        )
        .map_err(|e| err(edgeway_runtime::config::yaml_error(&e)))?;
        for (i, value) in docs.into_iter().enumerate() {
            if value.is_null() {
                continue;
            }
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_owned();
            let at = |e: String| err(format!("document {} ({kind}): {e}", i + 1));
            match kind.as_str() {
                "EdgeGateway" => {
                    super::schema::check(&value).map_err(|errs| at(errs.join("; ")))?;
                    let gw: EdgeGateway = serde_path_to_error::deserialize(value)
                        .map_err(|e| at(format!("{}: {}", e.path(), e.inner())))?;
                    if m.gateways
                        .iter()
                        .any(|(_, g)| g.name_any() == gw.name_any())
                    {
                        return Err(at(format!("duplicate EdgeGateway {:?}", gw.name_any())));
                    }
                    m.gateways.push((file.clone(), gw));
                }
                "Secret" => {
                    let mut s: Secret =
                        serde_json::from_value(value).map_err(|e| at(e.to_string()))?;
                    // As the API server does: stringData is merged into data.
                    if let Some(sd) = s.string_data.take() {
                        let data = s.data.get_or_insert_with(Default::default);
                        for (k, v) in sd {
                            data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
                        }
                    }
                    m.secrets.insert(s.name_any(), s);
                }
                "ConfigMap" => {
                    let c: ConfigMap =
                        serde_json::from_value(value).map_err(|e| at(e.to_string()))?;
                    m.config_maps.insert(c.name_any(), c);
                }
                "Certificate" => {
                    let spec = value
                        .get("spec")
                        .cloned()
                        .ok_or_else(|| at("spec is required".into()))?;
                    let c: CertificateRequest = serde_path_to_error::deserialize(spec)
                        .map_err(|e| at(format!("spec.{}: {}", e.path(), e.inner())))?;
                    m.certificates.push(c);
                }
                other => {
                    return Err(at(format!(
                        "kind {other:?} is not supported here (EdgeGateway, Secret, ConfigMap, cert-manager Certificate)"
                    )))
                }
            }
        }
    }
    if m.gateways.is_empty() {
        return Err(ManifestError {
            file: files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            message: "no EdgeGateway in these files".into(),
        });
    }
    Ok(m)
}

impl Manifests {
    /// A key of a Secret, or an error naming the field that referenced it.
    pub fn secret(&self, field: &str, name: &str, key: &str) -> Result<String, String> {
        let s = self
            .secrets
            .get(name)
            .ok_or_else(|| format!("{field}: Secret {name:?} is not in the manifests"))?;
        secret_text(s, key).ok_or_else(|| format!("{field}: Secret {name:?} has no key {key:?}"))
    }

    /// The bytes of a Secret's key (binary keys such as `keystore.p12`).
    pub fn secret_bytes(&self, field: &str, name: &str, key: &str) -> Result<Vec<u8>, String> {
        let s = self
            .secrets
            .get(name)
            .ok_or_else(|| format!("{field}: Secret {name:?} is not in the manifests"))?;
        s.data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .ok_or_else(|| format!("{field}: Secret {name:?} has no key {key:?}"))
    }

    /// A key of a ConfigMap, or an error naming the field that referenced it.
    pub fn config_map(&self, field: &str, name: &str, key: &str) -> Result<String, String> {
        let c = self
            .config_maps
            .get(name)
            .ok_or_else(|| format!("{field}: ConfigMap {name:?} is not in the manifests"))?;
        c.data
            .as_ref()
            .and_then(|d| d.get(key).cloned())
            .ok_or_else(|| format!("{field}: ConfigMap {name:?} has no key {key:?}"))
    }

    /// The text a `FileSource` (Secret or ConfigMap key) points at.
    pub fn file_source(&self, field: &str, src: &FileSource) -> Result<String, String> {
        match (&src.secret_name, &src.config_map_name) {
            (Some(s), _) => self.secret(field, s, &src.key),
            (None, Some(c)) => self.config_map(field, c, &src.key),
            (None, None) => Err(format!("{field}: names neither a Secret nor a ConfigMap")),
        }
    }
}
