//! Config files: reading them and parsing YAML (or JSON) into typed structs, with errors that
//! name the field path. Every Edgeway config file (sidecar, platform) goes through here, so the
//! messages agree.

use std::path::Path;

/// A config problem, located by its field path (e.g. `server.tls.cert`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Dotted path of the offending field, or the file for syntax errors.
    pub field: String,
    /// What is wrong, without any secret material.
    pub message: String,
}

impl ConfigError {
    /// Builds an error for a field path.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Reads a config file; the error names the file.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read: {e}")))
}

/// Parses YAML (or JSON) into `T`; an error names the field path, or `source` for syntax errors.
/// Every Edgeway config file (sidecar, platform) is read through this, so messages agree.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
    source: &str,
) -> Result<T, ConfigError> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { source.to_owned() } else { path };
        ConfigError::new(field, strip_location(&e.into_inner().to_string()))
    })
}

/// serde_yaml prefixes its own field path; ours is already in `field`, so drop the repeat.
fn strip_location(msg: &str) -> String {
    match msg.split_once(": ") {
        Some((head, rest)) if !head.is_empty() && !head.contains(' ') => rest.to_owned(),
        _ => msg.to_owned(),
    }
}
