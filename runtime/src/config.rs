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
    let mut path = None;
    serde_saphyr::with_deserializer_from_str_with_options(text, yaml_options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = Some(e.path().to_string());
            e.into_inner()
        })
    })
    .map_err(|e| {
        let field = match path {
            // serde_path_to_error says "." at the root and "?" where the parser failed first.
            Some(p) if p != "." && p != "?" => p,
            _ => source.to_owned(),
        };
        ConfigError::new(field, yaml_error(&e))
    })
}

/// The YAML reader's options for every file Edgeway reads. Errors carry no source snippet: a
/// snippet quotes the file, and credential files hold secrets. The parser's default budget
/// (events, aliases, depth, scalar bytes) stays on, so an alias bomb fails fast.
pub fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    options
}

/// One line for a YAML error: the message and, where known, its line and column.
pub fn yaml_error(e: &serde_saphyr::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests;
