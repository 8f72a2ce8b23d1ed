//! The authentication layer: tries the configured methods in order; any one suffices.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::request::Parts;

use crate::auth::basic::{www_authenticate, BasicUsers, Quick};
use crate::auth::oauth::{OAuthCredentials, OAuthRequest, OAuthVerifier};
use crate::auth::{AuthMethod, Identity};
use crate::config::{AuthConfig, AuthMethodName};
use crate::metrics::Metrics;
use edgeway_runtime::ConfigError;

/// What the connection itself proved before any request arrived.
#[derive(Debug, Clone, Default)]
pub struct ConnIdentity {
    /// Identity from a verified client certificate.
    pub peer: Option<String>,
    /// Whether the connection is TLS (for OAuth's base string URI scheme).
    pub tls: bool,
}

/// Verifies requests against the configured methods; built once at start-up.
pub struct Authenticator {
    methods: Vec<AuthMethodName>,
    basic: Option<(Arc<BasicUsers>, String)>,
    oauth: Option<(Arc<OAuthVerifier>, String)>,
    metrics: Arc<Metrics>,
}

impl Authenticator {
    /// Reads the credential files named by the config; errors name the field and file.
    pub fn from_config(auth: &AuthConfig, metrics: Arc<Metrics>) -> Result<Self, ConfigError> {
        let basic = match &auth.basic {
            Some(b) if auth.methods.contains(&AuthMethodName::Basic) => {
                let text = read(&b.users_file, "auth.basic.usersFile")?;
                let users = BasicUsers::parse(&text, &b.users_file.display().to_string())
                    .map_err(|e| ConfigError::new("auth.basic.usersFile", e.to_string()))?;
                Some((Arc::new(users), www_authenticate(&b.realm)))
            }
            _ => None,
        };
        let oauth = match &auth.oauth {
            Some(o) if auth.methods.contains(&AuthMethodName::OAuth) => {
                let text = read(&o.credentials_file, "auth.oauth.credentialsFile")?;
                let creds =
                    OAuthCredentials::parse(&text, &o.credentials_file.display().to_string())
                        .map_err(|e| {
                            ConfigError::new("auth.oauth.credentialsFile", e.to_string())
                        })?;
                let verifier = OAuthVerifier::new(
                    creds,
                    Duration::from_secs(o.timestamp_window_secs),
                    o.nonce_cache_size,
                );
                let realm = auth.basic.as_ref().map_or("edgeway", |b| b.realm.as_str());
                Some((Arc::new(verifier), format!("OAuth realm=\"{realm}\"")))
            }
            _ => None,
        };
        Ok(Self {
            methods: auth.methods.clone(),
            basic,
            oauth,
            metrics,
        })
    }

    /// `WWW-Authenticate` challenges for a 401, one per challengeable method.
    pub fn challenges(&self) -> Vec<&str> {
        let mut v = Vec::new();
        if let Some((_, c)) = &self.basic {
            v.push(c.as_str());
        }
        if let Some((_, c)) = &self.oauth {
            v.push(c.as_str());
        }
        v
    }

    /// Returns the verified identity, or `None` (and counts the failure) when no method succeeds.
    pub async fn authenticate(
        &self,
        parts: &Parts,
        body: &[u8],
        conn: &ConnIdentity,
    ) -> Option<Identity> {
        let authorization = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let scheme = authorization
            .and_then(|a| a.split_whitespace().next())
            .unwrap_or("");
        let mut attempted = false;
        for method in &self.methods {
            let outcome = match method {
                AuthMethodName::Mtls => conn.peer.clone().map(|p| (AuthMethod::Mtls, Some(p))),
                AuthMethodName::Basic if scheme.eq_ignore_ascii_case("basic") => {
                    let Some((users, _)) = &self.basic else {
                        continue;
                    };
                    let header = authorization.unwrap_or("");
                    let name = match users.verify_quick(header) {
                        Quick::Decided(name) => name,
                        Quick::NeedsHash => {
                            let (users, header) = (users.clone(), header.to_owned());
                            tokio::task::spawn_blocking(move || users.verify(&header))
                                .await
                                .ok()
                                .flatten()
                        }
                    };
                    Some((AuthMethod::Basic, name))
                }
                AuthMethodName::OAuth if scheme.eq_ignore_ascii_case("oauth") => {
                    let Some((verifier, _)) = &self.oauth else {
                        continue;
                    };
                    let name =
                        verify_oauth(verifier, parts, body, conn, authorization.unwrap_or(""));
                    Some((AuthMethod::OAuth, name))
                }
                _ => None,
            };
            match outcome {
                Some((method, Some(name))) => return Some(Identity { method, name }),
                Some((method, None)) => {
                    attempted = true;
                    self.metrics.auth_failure(method.as_str());
                }
                None => {}
            }
        }
        if !attempted {
            self.metrics.auth_failure("none");
        }
        None
    }
}

/// Runs OAuth verification; the reason for a refusal is logged at debug, never returned.
fn verify_oauth(
    verifier: &OAuthVerifier,
    parts: &Parts,
    body: &[u8],
    conn: &ConnIdentity,
    authorization: &str,
) -> Option<String> {
    let host = parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))?;
    let form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let req = OAuthRequest {
        method: parts.method.as_str(),
        scheme: if conn.tls { "https" } else { "http" },
        host,
        path: parts.uri.path(),
        query: parts.uri.query(),
        authorization,
        form_body: form.then_some(body),
    };
    match verifier.verify(&req, SystemTime::now()) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::debug!(reason = %e, "OAuth signature refused");
            None
        }
    }
}

fn read(path: &std::path::Path, field: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))
}
