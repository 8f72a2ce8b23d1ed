//! The authentication layer: tries the configured methods in order; any one suffices.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::Semaphore;

use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::request::Parts;

use crate::auth::basic::{www_authenticate, BasicUsers, Quick};
use crate::auth::oauth::{OAuthError, OAuthRequest, OAuthVerifier};
use crate::auth::{AuthMethod, Identity};
use crate::config::{AuthConfig, AuthMethodName};
use crate::metrics::Metrics;
use edgeway_runtime::ConfigError;

use super::credentials::CredentialFiles;

/// What the connection itself proved before any request arrived.
#[derive(Debug, Clone, Default)]
pub struct ConnIdentity {
    /// Identity from a verified client certificate.
    pub peer: Option<String>,
    /// That certificate (DER), when verified and named.
    pub cert: Option<rustls_pki_types::CertificateDer<'static>>,
    /// Whether the connection is TLS (for OAuth's base string URI scheme).
    pub tls: bool,
}

/// Password hashes checked at once: one per core. Each is memory-hard (argon2 at common
/// defaults takes 64 MiB), so an unbounded pool let 64 concurrent bad logins take 3.7 GB.
fn hash_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Requests that may wait for a hash slot; past this, basic attempts are answered 503 at
/// once. The unknown-user check waits and costs like a real one, so refusals do not tell
/// users apart.
pub const HASH_QUEUE: usize = 64;

/// One request waiting for a hash slot.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No method succeeded: 401.
    Unauthenticated,
    /// No method succeeded and an OAuth signature carried a timestamp outside the window: 401
    /// naming the acceptable timestamps (RFC 5849 leaves the reason to the server; this is the
    /// OAuth Problem Reporting extension's `timestamp_refused`), so a device with a wrong clock
    /// can tell. It reveals nothing else: the window is checked before the consumer is looked up.
    TimestampRefused {
        /// Earliest acceptable `oauth_timestamp` now, Unix seconds.
        earliest: u64,
        /// Latest acceptable one.
        latest: u64,
    },
    /// Too many password checks are waiting: 503, try again.
    Busy,
}

/// Verifies requests against the configured methods; built once at start-up.
pub struct Authenticator {
    methods: Vec<AuthMethodName>,
    /// The credential files in force, reloaded when they change.
    creds: Arc<CredentialFiles>,
    /// `WWW-Authenticate` challenges of basic and OAuth, when enabled.
    basic_challenge: Option<String>,
    oauth_challenge: Option<String>,
    metrics: Arc<Metrics>,
    hashing: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl Authenticator {
    /// Reads the credential files named by the config; errors name the field and file.
    pub fn from_config(auth: &AuthConfig, metrics: Arc<Metrics>) -> Result<Self, ConfigError> {
        let creds = CredentialFiles::load(auth, metrics.clone())?;
        let basic_challenge = creds
            .users()
            .map(|_| www_authenticate(auth.basic.as_ref().map_or("edgeway", |b| b.realm.as_str())));
        let oauth_challenge = creds.oauth().map(|_| {
            let realm = auth.basic.as_ref().map_or("edgeway", |b| b.realm.as_str());
            format!("OAuth realm=\"{realm}\"")
        });
        Ok(Self {
            methods: auth.methods.clone(),
            creds: Arc::new(creds),
            basic_challenge,
            oauth_challenge,
            metrics,
            hashing: Arc::new(Semaphore::new(hash_slots())),
            waiting: AtomicUsize::new(0),
        })
    }

    /// The credential files, to watch for changes (`None` when no method reads any).
    pub fn credentials(&self) -> Option<Arc<CredentialFiles>> {
        self.creds.any().then(|| self.creds.clone())
    }

    /// `WWW-Authenticate` challenges for a 401, one per challengeable method.
    pub fn challenges(&self) -> Vec<&str> {
        let mut v = Vec::new();
        v.extend(self.basic_challenge.as_deref());
        v.extend(self.oauth_challenge.as_deref());
        v
    }

    /// Whether verifying this request needs its body (an OAuth form body is signed).
    pub fn needs_body(&self, parts: &Parts) -> bool {
        self.creds.oauth().is_some()
            && scheme_of(parts).eq_ignore_ascii_case("oauth")
            && is_form(parts)
    }

    /// Checks a password hash on the blocking pool, at most [`hash_slots`] at once and
    /// [`HASH_QUEUE`] waiting; `Err(Busy)` past that.
    async fn hash_check(
        &self,
        users: &Arc<BasicUsers>,
        header: &str,
    ) -> Result<Option<String>, Refusal> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= HASH_QUEUE {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Busy);
        }
        // Counted out on drop too: a client that disconnects while waiting drops this future
        // here, and a count that only went up would turn every later attempt away as busy.
        let waiting = Waiting(&self.waiting);
        let slot = self.hashing.clone().acquire_owned().await;
        drop(waiting);
        let Ok(slot) = slot else {
            return Err(Refusal::Busy);
        };
        let (users, header) = (users.clone(), header.to_owned());
        let name = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            users.verify(&header)
        })
        .await
        .ok()
        .flatten();
        Ok(name)
    }

    /// Returns the verified identity, or why not (failures are counted).
    pub async fn authenticate(
        &self,
        parts: &Parts,
        body: &[u8],
        conn: &ConnIdentity,
    ) -> Result<Identity, Refusal> {
        let authorization = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let scheme = scheme_of(parts);
        let mut attempted = false;
        let mut timestamp_refused = None;
        for method in &self.methods {
            let outcome = match method {
                AuthMethodName::Mtls => conn.peer.clone().map(|p| (AuthMethod::Mtls, Some(p))),
                AuthMethodName::Basic if scheme.eq_ignore_ascii_case("basic") => {
                    let Some(users) = self.creds.users() else {
                        continue;
                    };
                    let header = authorization.unwrap_or("");
                    let name = match users.verify_quick(header) {
                        Quick::Decided(name) => name,
                        Quick::NeedsHash => match self.hash_check(&users, header).await {
                            Ok(name) => name,
                            Err(busy) => {
                                self.metrics.auth_failure("busy");
                                return Err(busy);
                            }
                        },
                    };
                    Some((AuthMethod::Basic, name))
                }
                AuthMethodName::OAuth if scheme.eq_ignore_ascii_case("oauth") => {
                    let Some(verifier) = self.creds.oauth() else {
                        continue;
                    };
                    let verified =
                        verify_oauth(verifier, parts, body, conn, authorization.unwrap_or(""));
                    let name = match verified {
                        Ok(name) => Some(name),
                        Err(OAuthError::TimestampOutOfWindow { earliest, latest }) => {
                            timestamp_refused =
                                Some(Refusal::TimestampRefused { earliest, latest });
                            None
                        }
                        Err(_) => None,
                    };
                    Some((AuthMethod::OAuth, name))
                }
                _ => None,
            };
            match outcome {
                Some((method, Some(name))) => return Ok(Identity { method, name }),
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
        Err(timestamp_refused.unwrap_or(Refusal::Unauthenticated))
    }
}

/// The `Authorization` scheme of a request, or "".
fn scheme_of(parts: &Parts) -> &str {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split_whitespace().next())
        .unwrap_or("")
}

/// Whether the body is an HTML form (OAuth signs its parameters).
fn is_form(parts: &Parts) -> bool {
    parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"))
}

/// Runs OAuth verification; the reason for a refusal is logged at debug and returned for the
/// caller to tell a clock problem apart (the only reason a client is told).
fn verify_oauth(
    verifier: &OAuthVerifier,
    parts: &Parts,
    body: &[u8],
    conn: &ConnIdentity,
    authorization: &str,
) -> Result<String, OAuthError> {
    let host = parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .ok_or_else(|| OAuthError::Malformed("no Host header to sign".into()))?;
    let form = is_form(parts);
    let req = OAuthRequest {
        method: parts.method.as_str(),
        scheme: if conn.tls { "https" } else { "http" },
        host,
        path: parts.uri.path(),
        query: parts.uri.query(),
        authorization,
        form_body: form.then_some(body),
    };
    let verified = verifier.verify(&req, SystemTime::now());
    if let Err(e) = &verified {
        tracing::debug!(reason = %e, "OAuth signature refused");
    }
    verified
}

#[cfg(test)]
mod tests;
