//! The basic users file and the OAuth consumers file, re-read when their Secret changes
//! (`edgeway_runtime::watch`): new credentials work and removed ones stop within the kubelet's
//! sync, without a restart; open connections go on. A file that no longer parses is logged and
//! the credentials in force stay. OAuth's nonce cache survives a reload, so a request cannot be
//! replayed across one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use edgeway_runtime::watch::{fingerprint, Reload};
use edgeway_runtime::ConfigError;

use crate::auth::basic::BasicUsers;
use crate::auth::oauth::{OAuthCredentials, OAuthVerifier};
use crate::config::{AuthConfig, AuthMethodName};
use crate::metrics::Metrics;

/// The credential files in force.
pub struct CredentialFiles {
    users: Option<(PathBuf, RwLock<Arc<BasicUsers>>)>,
    oauth: Option<(PathBuf, Arc<OAuthVerifier>)>,
    fingerprint: Mutex<u64>,
    metrics: Arc<Metrics>,
}

impl CredentialFiles {
    /// Reads the files the enabled methods name; errors name the field and the file.
    pub fn load(auth: &AuthConfig, metrics: Arc<Metrics>) -> Result<Self, ConfigError> {
        let users = match &auth.basic {
            Some(b) if auth.methods.contains(&AuthMethodName::Basic) => {
                let users = parse_users(&b.users_file)?;
                Some((b.users_file.clone(), RwLock::new(Arc::new(users))))
            }
            _ => None,
        };
        let oauth = match &auth.oauth {
            Some(o) if auth.methods.contains(&AuthMethodName::OAuth) => {
                let creds = parse_consumers(&o.credentials_file)?;
                let verifier = OAuthVerifier::new(
                    creds,
                    Duration::from_secs(o.timestamp_window_secs),
                    o.nonce_cache_size,
                );
                Some((o.credentials_file.clone(), Arc::new(verifier)))
            }
            _ => None,
        };
        let this = Self {
            users,
            oauth,
            fingerprint: Mutex::new(0),
            metrics,
        };
        *this
            .fingerprint
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = fingerprint(&this.files());
        Ok(this)
    }

    /// The basic users in force, when basic is enabled.
    pub fn users(&self) -> Option<Arc<BasicUsers>> {
        let (_, users) = self.users.as_ref()?;
        Some(users.read().unwrap_or_else(PoisonError::into_inner).clone())
    }

    /// The OAuth verifier, when OAuth is enabled.
    pub fn oauth(&self) -> Option<&Arc<OAuthVerifier>> {
        self.oauth.as_ref().map(|(_, v)| v)
    }

    /// Whether any file is there to watch.
    pub fn any(&self) -> bool {
        self.users.is_some() || self.oauth.is_some()
    }
}

impl Reload for CredentialFiles {
    fn what(&self) -> &'static str {
        "credential files"
    }

    fn files(&self) -> Vec<PathBuf> {
        let users = self.users.iter().map(|(p, _)| p.clone());
        users
            .chain(self.oauth.iter().map(|(p, _)| p.clone()))
            .collect()
    }

    fn reload(&self) -> Result<bool, ConfigError> {
        let fp = fingerprint(&self.files());
        let mut last = self
            .fingerprint
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *last == fp {
            return Ok(false);
        }
        // A broken file is reported once per content, not at every later event or poll.
        *last = fp;
        // Both parsed before either is swapped: a broken file changes nothing.
        let users = match &self.users {
            Some((path, _)) => Some(parse_users(path)?),
            None => None,
        };
        let consumers = match &self.oauth {
            Some((path, _)) => Some(parse_consumers(path)?),
            None => None,
        };
        if let (Some((_, slot)), Some(new)) = (&self.users, users) {
            *slot.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(new);
        }
        if let (Some((_, verifier)), Some(new)) = (&self.oauth, consumers) {
            verifier.replace_credentials(new);
        }
        Ok(true)
    }

    fn reloaded(&self, result: &'static str) {
        self.metrics.credential_reload(result);
    }
}

fn parse_users(path: &Path) -> Result<BasicUsers, ConfigError> {
    let text = read(path, "auth.basic.usersFile")?;
    BasicUsers::parse(&text, &path.display().to_string())
        .map_err(|e| ConfigError::new("auth.basic.usersFile", e.to_string()))
}

fn parse_consumers(path: &Path) -> Result<OAuthCredentials, ConfigError> {
    let text = read(path, "auth.oauth.credentialsFile")?;
    OAuthCredentials::parse(&text, &path.display().to_string())
        .map_err(|e| ConfigError::new("auth.oauth.credentialsFile", e.to_string()))
}

fn read(path: &Path, field: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))
}
