//! Client authentication for the sidecar's resource server: HTTP Basic
//! (RFC 7617) and OAuth 1.0a HMAC-SHA1 (RFC 5849); mTLS identities are
//! established by the TLS layer and only labelled here.

pub mod authz;
pub mod basic;
pub mod oauth;

use std::fmt;

/// Why a credentials file could not be loaded, pointing at the offending
/// line or field but never quoting secret material.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// A problem on a specific line of a line-oriented file (Basic users).
    #[error("{path}: line {line}: {reason}")]
    Line {
        /// File path or other description of where the text came from.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong, without the secret text.
        reason: String,
    },
    /// A problem with a specific field of a structured file (OAuth YAML).
    #[error("{path}: {field}: {reason}")]
    Field {
        /// File path or other description of where the text came from.
        path: String,
        /// Field path, e.g. `consumers[2].secret`.
        field: String,
        /// What is wrong, without the secret text.
        reason: String,
    },
    /// A problem with the file as a whole (e.g. YAML syntax).
    #[error("{path}: {reason}")]
    File {
        /// File path or other description of where the text came from.
        path: String,
        /// What is wrong, without the secret text.
        reason: String,
    },
}

/// How a client proved who it is; used for metrics labels and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// Client certificate verified by the TLS layer.
    Mtls,
    /// HTTP Basic credentials checked against the users file.
    Basic,
    /// OAuth 1.0a HMAC-SHA1 signed request.
    OAuth,
}

impl AuthMethod {
    /// Stable lowercase label for metrics and the identity header.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Mtls => "mtls",
            AuthMethod::Basic => "basic",
            AuthMethod::OAuth => "oauth",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller, passed to handlers and the identity header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Which mechanism authenticated the caller.
    pub method: AuthMethod,
    /// User name, OAuth consumer key, or certificate subject.
    pub name: String,
}

impl Identity {
    /// Convenience constructor so callers need not spell out the struct.
    pub fn new(method: AuthMethod, name: impl Into<String>) -> Self {
        Identity {
            method,
            name: name.into(),
        }
    }
}

#[cfg(test)]
mod tests;
