//! The CRD's OpenAPI schema applied to local manifests, so local mode refuses what `kubectl
//! apply` would refuse (enums, ranges, patterns, required fields) and says where.

use serde_json::Value;

/// Checks one EdgeGateway document; each problem is `path: message`, as the API server words it.
pub fn check(doc: &Value) -> Result<(), Vec<String>> {
    let crd = crate::crd_value(false);
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let validator = match jsonschema::validator_for(schema) {
        Ok(v) => v,
        Err(e) => return Err(vec![format!("the CRD schema itself does not compile: {e}")]),
    };
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| {
            let path = e
                .instance_path()
                .to_string()
                .trim_start_matches('/')
                .replace('/', ".");
            let path = if path.is_empty() {
                "(document)".into()
            } else {
                path
            };
            format!("{path}: {e}")
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
