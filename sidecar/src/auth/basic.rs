//! HTTP Basic authentication (RFC 7617) against an htpasswd-style file.
//!
//! Timing is kept independent of which user exists: the user is selected
//! without branching on the name, and unknown users are checked against a
//! dummy secret of the same kind and cost.

use std::fmt;
use std::sync::Mutex;

use argon2::password_hash::{PasswordHashString, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::CredentialsError;

/// Number of recent successful verifications remembered to skip re-hashing.
const CACHE_CAPACITY: usize = 1024;

/// Longest `Authorization` value we will decode; real ones are far shorter.
const MAX_HEADER_LEN: usize = 8 * 1024;

/// Accepts base64 with or without padding; clients differ.
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type HmacSha256 = Hmac<Sha256>;

/// A stored secret; plaintext is kept only as a SHA-256 digest so the
/// comparison is fixed-length and the text is not kept in memory.
enum Secret {
    Plain([u8; 32]),
    Argon2(PasswordHashString),
    Bcrypt(String),
}

impl Secret {
    /// Checks `password`; the cost depends only on the secret's kind/params.
    fn check(&self, password: &str) -> Choice {
        match self {
            Secret::Plain(digest) => sha256(password.as_bytes()).ct_eq(digest),
            Secret::Argon2(hash) => Choice::from(u8::from(
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash.password_hash())
                    .is_ok(),
            )),
            Secret::Bcrypt(hash) => {
                Choice::from(u8::from(bcrypt::verify(password, hash).unwrap_or(false)))
            }
        }
    }
}

struct User {
    name: String,
    name_digest: [u8; 32],
    secret: Secret,
}

/// Ring buffer of HMAC tags of `user:password` pairs that verified recently.
struct SuccessCache {
    key: [u8; 32],
    tags: Vec<[u8; 32]>,
    next: usize,
}

impl SuccessCache {
    /// `None` only if HMAC keying fails (it accepts any key length, so
    /// never in practice); the cache is then simply bypassed.
    fn tag(&self, user: &str, password: &str) -> Option<[u8; 32]> {
        let mut mac = HmacSha256::new_from_slice(&self.key).ok()?;
        mac.update(user.as_bytes());
        mac.update(b":");
        mac.update(password.as_bytes());
        Some(mac.finalize().into_bytes().into())
    }

    /// Scans every entry so a hit takes as long as a miss.
    fn contains(&self, tag: &[u8; 32]) -> bool {
        let mut hit = Choice::from(0);
        for t in &self.tags {
            hit |= t.ct_eq(tag);
        }
        hit.into()
    }

    fn insert(&mut self, tag: [u8; 32]) {
        if self.tags.len() < CACHE_CAPACITY {
            self.tags.push(tag);
        } else {
            // Full: overwrite the oldest entry.
            self.tags[self.next] = tag;
            self.next = (self.next + 1) % CACHE_CAPACITY;
        }
    }
}

/// The users allowed to authenticate with HTTP Basic, loaded from a file.
pub struct BasicUsers {
    users: Vec<User>,
    /// Checked instead of a real secret when the user does not exist.
    dummy: Secret,
    /// Every secret is `{PLAIN}`: checks are cheap and skip the cache.
    all_plain: bool,
    cache: Mutex<SuccessCache>,
}

impl fmt::Debug for BasicUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicUsers")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl BasicUsers {
    /// Parses an htpasswd-style `user:secret` file; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<BasicUsers, CredentialsError> {
        let err = |line: usize, reason: String| CredentialsError::Line {
            path: source.to_owned(),
            line,
            reason,
        };
        let mut users: Vec<User> = Vec::new();
        let mut first_line: Vec<usize> = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            let line_no = idx + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((name, secret)) = raw.split_once(':') else {
                return Err(err(line_no, "missing ':' between user and password".into()));
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(err(line_no, "empty user name".into()));
            }
            if name.chars().any(char::is_control) {
                return Err(err(line_no, "user name contains control characters".into()));
            }
            if let Some(pos) = users.iter().position(|u| u.name == name) {
                return Err(err(
                    line_no,
                    format!(
                        "duplicate user {name:?} (first defined on line {})",
                        first_line[pos]
                    ),
                ));
            }
            let secret = parse_secret(secret).map_err(|reason| err(line_no, reason.into()))?;
            users.push(User {
                name: name.to_owned(),
                name_digest: sha256(name.as_bytes()),
                secret,
            });
            first_line.push(line_no);
        }
        let dummy = dummy_secret(&users).map_err(|reason| CredentialsError::File {
            path: source.to_owned(),
            reason: reason.into(),
        })?;
        let all_plain = users.iter().all(|u| matches!(u.secret, Secret::Plain(_)));
        let kinds: std::collections::HashSet<_> = users
            .iter()
            .map(|u| std::mem::discriminant(&u.secret))
            .collect();
        if kinds.len() > 1 {
            tracing::warn!(
                file = source,
                "users file mixes plaintext, bcrypt and argon2 secrets: a wrong password's \
                 timing tells users of a dearer kind from unknown names; use one kind"
            );
        }
        Ok(BasicUsers {
            users,
            dummy,
            all_plain,
            cache: Mutex::new(SuccessCache {
                key: rand::random(),
                tags: Vec::new(),
                next: 0,
            }),
        })
    }

    /// Number of configured users, for logs and readiness checks.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when the file defined no users (Basic auth then always fails).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Decides without a slow hash when that is possible: every secret is plaintext (one
    /// SHA-256), or the pair verified recently. The blocking-pool hop of [`Self::verify`] cost
    /// more than a plaintext check itself, so it is taken only when a hash must run.
    pub fn verify_quick(&self, authorization_header: &str) -> Quick {
        if self.all_plain {
            return Quick::Decided(self.verify(authorization_header));
        }
        match decode_basic(authorization_header) {
            None => Quick::Decided(None),
            Some((user, password)) if self.recently_verified(&user, &password) => {
                Quick::Decided(Some(user))
            }
            Some(_) => Quick::NeedsHash,
        }
    }

    /// Checks a full `Authorization` header value; returns the user name on
    /// success. CPU-heavy for hashed secrets: call from a blocking thread.
    pub fn verify(&self, authorization_header: &str) -> Option<String> {
        let (user, password) = decode_basic(authorization_header)?;
        // Plaintext checks cost less than the cache's HMAC.
        if !self.all_plain && self.recently_verified(&user, &password) {
            return Some(user);
        }

        // Select the matching user without an early exit on the name.
        let wanted = sha256(user.as_bytes());
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, u) in self.users.iter().enumerate() {
            let eq = u.name_digest.ct_eq(&wanted);
            index.conditional_assign(&(i as u64), eq);
            found |= eq;
        }
        // When not found, `index` is 0 but the dummy is used instead; the
        // choice between them is the only branch and its cost is equal.
        let secret = match (bool::from(found), self.users.get(index as usize)) {
            (true, Some(u)) => &u.secret,
            _ => &self.dummy,
        };
        let ok = secret.check(&password) & found;
        if !bool::from(ok) {
            return None;
        }
        if !self.all_plain {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(tag) = cache.tag(&user, &password) {
                cache.insert(tag);
            }
        }
        Some(user)
    }

    fn recently_verified(&self, user: &str, password: &str) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .tag(user, password)
            .is_some_and(|t| cache.contains(&t))
    }
}

/// The outcome of [`BasicUsers::verify_quick`].
#[derive(Debug, PartialEq, Eq)]
pub enum Quick {
    /// Decided: the user name, or `None` for a refusal.
    Decided(Option<String>),
    /// A password hash must be computed: run [`BasicUsers::verify`] on a blocking thread.
    NeedsHash,
}

/// The `WWW-Authenticate` challenge for a 401 response.
pub fn www_authenticate(realm: &str) -> String {
    let mut escaped = String::with_capacity(realm.len());
    for c in realm.chars() {
        if c == '"' || c == '\\' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    format!("Basic realm=\"{escaped}\", charset=\"UTF-8\"")
}

/// Splits `Basic <base64>` into user and password; `None` if malformed.
fn decode_basic(header: &str) -> Option<(String, String)> {
    if header.len() > MAX_HEADER_LEN {
        return None;
    }
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = LENIENT_B64.decode(rest.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    // RFC 7617: the user-id ends at the first colon; the password may hold more.
    let (user, password) = text.split_once(':')?;
    if user.is_empty() {
        return None;
    }
    Some((user.to_owned(), password.to_owned()))
}

/// Classifies and validates one secret; errors never quote it.
fn parse_secret(secret: &str) -> Result<Secret, &'static str> {
    if secret.starts_with("$argon2") {
        let hash = PasswordHashString::new(secret).map_err(|_| "malformed argon2 hash")?;
        let alg = hash.algorithm();
        if !matches!(alg.as_str(), "argon2id" | "argon2i" | "argon2d") {
            return Err("unsupported argon2 variant");
        }
        Params::try_from(&hash.password_hash()).map_err(|_| "invalid argon2 parameters")?;
        if hash.hash().is_none() || hash.salt().is_none() {
            return Err("argon2 hash lacks salt or output");
        }
        return Ok(Secret::Argon2(hash));
    }
    if ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|p| secret.starts_with(p))
    {
        secret
            .parse::<bcrypt::HashParts>()
            .map_err(|_| "malformed bcrypt hash")?;
        return Ok(Secret::Bcrypt(secret.to_owned()));
    }
    if secret.starts_with('$') && secret[1..].contains('$') {
        // Looks like a hash we do not support ($apr1$, $6$, ...); treating it
        // as plaintext would silently lock the user out.
        return Err("unsupported password hash format (use argon2, bcrypt or {PLAIN}...)");
    }
    let plain = secret.strip_prefix("{PLAIN}").unwrap_or(secret);
    if plain.is_empty() {
        return Err("empty password");
    }
    Ok(Secret::Plain(sha256(plain.as_bytes())))
}

/// Builds the stand-in secret for unknown users with the kind and cost of the cheapest
/// configured secret (plaintext, else the lowest bcrypt cost, else the lightest argon2
/// parameters). An unknown user then costs what the cheapest real check costs: with the
/// dearest instead, a file mixing plaintext and argon2 users answered a wrong password of a
/// plaintext user in ~1 ms and an unknown user in ~200 ms, telling names apart (and every
/// unknown name cost a full argon2 hash). Mixed costs still tell the dearer users apart:
/// `parse` warns about it.
fn dummy_secret(users: &[User]) -> Result<Secret, &'static str> {
    let random_password = hex(&rand::random::<[u8; 16]>());
    if users.iter().any(|u| matches!(u.secret, Secret::Plain(_))) {
        return Ok(Secret::Plain(sha256(random_password.as_bytes())));
    }
    let bcrypt_cost = users
        .iter()
        .filter_map(|u| match &u.secret {
            Secret::Bcrypt(h) => h.parse::<bcrypt::HashParts>().ok().map(|p| p.get_cost()),
            _ => None,
        })
        .min();
    if let Some(cost) = bcrypt_cost {
        let hash =
            bcrypt::hash(&random_password, cost).map_err(|_| "cannot compute dummy bcrypt hash")?;
        return Ok(Secret::Bcrypt(hash));
    }
    let cheapest_argon = users
        .iter()
        .filter_map(|u| match &u.secret {
            Secret::Argon2(h) => {
                let model = h.password_hash();
                let params = Params::try_from(&model).ok()?;
                let cost = u64::from(params.m_cost()) * u64::from(params.t_cost());
                Some((cost, model.algorithm, model.version, params))
            }
            _ => None,
        })
        .min_by_key(|(cost, ..)| *cost);
    if let Some((_, algorithm, version, params)) = cheapest_argon {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
            .map_err(|_| "cannot encode argon2 salt")?;
        let hash = Argon2::default()
            .hash_password_customized(
                random_password.as_bytes(),
                Some(algorithm),
                version,
                params,
                &salt,
            )
            .map_err(|_| "cannot compute dummy argon2 hash")?;
        return Ok(Secret::Argon2(hash.serialize()));
    }
    Ok(Secret::Plain(sha256(random_password.as_bytes())))
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
