//! Secrets the platform checks: edge application keys and the REST bearer token.
//!
//! Only SHA-256 digests are kept in memory and compared in constant time, so neither the
//! length nor the content of a presented secret leaks through timing. Secrets are never logged.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use edgeway_runtime::ConfigError;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type Digest32 = [u8; 32];

fn digest(secret: &str) -> Digest32 {
    Sha256::digest(secret.as_bytes()).into()
}

/// One application key: its principal and digest.
#[derive(Clone)]
struct AppKey {
    principal: String,
    digest: Digest32,
}

/// The application keys file, re-read when its modification time changes.
pub struct AppKeys {
    path: PathBuf,
    field: String,
    state: Mutex<(Option<SystemTime>, Vec<AppKey>)>,
}

impl std::fmt::Debug for AppKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppKeys").field("path", &self.path).finish()
    }
}

impl AppKeys {
    /// Loads the file; errors name `field` (e.g. `auth.appKeysFile`).
    pub fn load(path: &Path, field: &str) -> Result<Self, ConfigError> {
        let (mtime, keys) = read_keys(path, field)?;
        Ok(Self {
            path: path.to_path_buf(),
            field: field.to_owned(),
            state: Mutex::new((mtime, keys)),
        })
    }

    /// Number of keys currently loaded.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1.len()
    }

    /// True when no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The principal of the matching key, comparing against every key in constant time.
    pub fn check(&self, presented: &str) -> Option<String> {
        self.refresh();
        let wanted = digest(presented);
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut found: Option<&AppKey> = None;
        for k in &state.1 {
            if bool::from(k.digest.ct_eq(&wanted)) && found.is_none() {
                found = Some(k);
            }
        }
        found.map(|k| k.principal.clone())
    }

    /// Re-reads the file when it changed; a bad new file is logged and the old keys kept.
    fn refresh(&self) {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if mtime.is_none() || mtime == state.0 {
            return;
        }
        match read_keys(&self.path, &self.field) {
            Ok(new) => {
                tracing::info!(keys = new.1.len(), "application keys reloaded");
                *state = new;
            }
            Err(e) => {
                tracing::error!(error = %e, "application keys file rejected; keeping the previous keys");
                state.0 = mtime;
            }
        }
    }
}

fn read_keys(path: &Path, field: &str) -> Result<(Option<SystemTime>, Vec<AppKey>), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))?;
    let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut keys = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (principal, key) = match line.split_once(':') {
            Some((name, key)) => (name.trim().to_owned(), key.trim()),
            None => (format!("appKey@line{}", i + 1), line),
        };
        if principal.is_empty() || key.is_empty() {
            return Err(ConfigError::new(
                field,
                format!(
                    "line {} of {}: expected `key` or `name:key`",
                    i + 1,
                    path.display()
                ),
            ));
        }
        keys.push(AppKey {
            principal,
            digest: digest(key),
        });
    }
    if keys.is_empty() {
        return Err(ConfigError::new(
            field,
            format!("no application key in {}", path.display()),
        ));
    }
    Ok((mtime, keys))
}

/// The REST bearer token (digest only).
pub struct BearerToken(Digest32);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl BearerToken {
    /// Reads the token file (surrounding whitespace trimmed); errors name `field`.
    pub fn load(path: &Path, field: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(ConfigError::new(
                field,
                format!("{} is empty", path.display()),
            ));
        }
        Ok(Self(digest(token)))
    }

    /// Checks an `Authorization` header value (`Bearer <token>`) in constant time.
    pub fn check(&self, authorization: Option<&str>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some((scheme, token)) = value.split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer") && bool::from(digest(token.trim()).ct_eq(&self.0))
    }
}

#[cfg(test)]
mod tests;
