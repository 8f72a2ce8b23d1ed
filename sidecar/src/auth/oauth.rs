//! OAuth 1.0a request signature verification, HMAC-SHA1 only (RFC 5849).
//!
//! The building blocks (header parsing, base string, normalisation,
//! signing) are public and pure so they can be tested against the RFC
//! vectors; [`OAuthVerifier`] adds credential lookup, the timestamp window
//! and the nonce replay cache.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::CredentialsError;

/// RFC 5849 §3.6: everything except the RFC 3986 unreserved set is encoded.
const OAUTH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Longest `Authorization` value accepted; bounds parsing work per request.
const MAX_HEADER_LEN: usize = 8 * 1024;

/// Why an OAuth request was refused; safe to log (no secrets, client text
/// truncated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The header, query or body could not be parsed.
    #[error("malformed OAuth request: {0}")]
    Malformed(String),
    /// A required protocol parameter is absent or empty.
    #[error("missing OAuth parameter {0}")]
    MissingParameter(&'static str),
    /// Only HMAC-SHA1 is implemented.
    #[error("unsupported oauth_signature_method {0:?} (only HMAC-SHA1)")]
    UnsupportedSignatureMethod(String),
    /// `oauth_version` was present but not `1.0`.
    #[error("unsupported oauth_version {0:?} (only 1.0)")]
    UnsupportedVersion(String),
    /// The consumer key is not configured.
    #[error("unknown OAuth consumer")]
    UnknownConsumer,
    /// The access token is not configured.
    #[error("unknown OAuth token")]
    UnknownToken,
    /// The timestamp is too far from the server clock; the server accepts `earliest..=latest`
    /// now (Unix seconds), which a client with a wrong clock can act on.
    #[error("oauth_timestamp outside the accepted window {earliest}-{latest}")]
    TimestampOutOfWindow {
        /// Earliest acceptable timestamp now.
        earliest: u64,
        /// Latest acceptable timestamp now.
        latest: u64,
    },
    /// This nonce was already used with the same consumer, token and timestamp.
    #[error("OAuth nonce replayed")]
    NonceReplayed,
    /// The replay cache is full of unexpired nonces; refusing is safer than
    /// forgetting one and allowing a replay.
    #[error("OAuth nonce cache full")]
    NonceCacheFull,
    /// The signature does not match the request.
    #[error("OAuth signature mismatch")]
    BadSignature,
}

/// Consumer and token secrets loaded from the OAuth credentials YAML file.
pub struct OAuthCredentials {
    consumers: HashMap<String, String>,
    tokens: HashMap<String, String>,
}

impl fmt::Debug for OAuthCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthCredentials")
            .field("consumers", &self.consumers.len())
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl OAuthCredentials {
    /// Parses the `consumers:` / `tokens:` YAML; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<OAuthCredentials, CredentialsError> {
        let field_err = |field: &str, reason: &str| CredentialsError::Field {
            path: source.to_owned(),
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        // Parse into an untyped tree first: typed deserialisation errors
        // quote offending values, which could be secrets. Syntax errors
        // from the scanner carry only positions and fixed messages.
        let root: Value =
            serde_saphyr::from_str_with_options(text, edgeway_runtime::config::yaml_options())
                .map_err(|e| CredentialsError::File {
                    path: source.to_owned(),
                    reason: format!("invalid YAML: {}", edgeway_runtime::config::yaml_error(&e)),
                })?;
        let Value::Object(root) = root else {
            return Err(field_err("(top level)", "must be a mapping"));
        };
        for key in root.keys() {
            match key.as_str() {
                "consumers" | "tokens" => {}
                other => return Err(field_err(other, "unknown field")),
            }
        }
        let consumers = match root.get("consumers") {
            Some(list) => entries(list, "consumers", "key", &field_err)?,
            None => return Err(field_err("consumers", "missing")),
        };
        let tokens = match root.get("tokens") {
            Some(Value::Null) | None => HashMap::new(),
            Some(list) => entries(list, "tokens", "token", &field_err)?,
        };
        Ok(OAuthCredentials { consumers, tokens })
    }
}

/// Reads a list of `{<id_field>: ..., secret: ...}` mappings into a map.
fn entries(
    list: &Value,
    section: &str,
    id_field: &str,
    field_err: &dyn Fn(&str, &str) -> CredentialsError,
) -> Result<HashMap<String, String>, CredentialsError> {
    let mut out = HashMap::new();
    let items = match list {
        Value::Null => return Ok(out),
        Value::Array(items) => items,
        _ => return Err(field_err(section, "must be a list")),
    };
    for (i, item) in items.iter().enumerate() {
        let here = format!("{section}[{i}]");
        let Value::Object(map) = item else {
            return Err(field_err(&here, "must be a mapping"));
        };
        for k in map.keys() {
            if k != id_field && k != "secret" {
                return Err(field_err(&format!("{here}.{k}"), "unknown field"));
            }
        }
        let string_field = |name: &str| -> Result<String, CredentialsError> {
            let at = format!("{here}.{name}");
            match map.get(name) {
                None => Err(field_err(&at, "missing")),
                Some(Value::String(s)) if s.is_empty() => Err(field_err(&at, "must not be empty")),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(field_err(&at, "must be a string (quote it)")),
            }
        };
        let id = string_field(id_field)?;
        let secret = string_field("secret")?;
        if out.contains_key(&id) {
            return Err(field_err(
                &format!("{here}.{id_field}"),
                &format!("duplicate {id_field} {id:?}"),
            ));
        }
        out.insert(id, secret);
    }
    Ok(out)
}

/// The parts of an HTTP request that OAuth signs.
#[derive(Debug, Clone, Copy)]
pub struct OAuthRequest<'a> {
    /// HTTP method, e.g. `GET`.
    pub method: &'a str,
    /// `http` or `https`, as the client addressed us.
    pub scheme: &'a str,
    /// The `Host` header, possibly with a port.
    pub host: &'a str,
    /// Request path without the query, as sent (still percent-encoded).
    pub path: &'a str,
    /// Raw query string without the `?`.
    pub query: Option<&'a str>,
    /// Full `Authorization` header value (`OAuth ...`).
    pub authorization: &'a str,
    /// Body, only when `Content-Type` is `application/x-www-form-urlencoded`.
    pub form_body: Option<&'a [u8]>,
}

/// Parses an `OAuth ...` header (§3.5.1) into percent-decoded pairs,
/// excluding `realm`, which is not signed.
pub fn parse_authorization_header(value: &str) -> Result<Vec<(String, String)>, OAuthError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(malformed("Authorization header too long"));
    }
    let value = value.trim();
    let scheme_end = value.find([' ', '\t']).unwrap_or(value.len());
    if !value[..scheme_end].eq_ignore_ascii_case("OAuth") {
        return Err(malformed("Authorization scheme is not OAuth"));
    }
    let mut rest = value[scheme_end..].trim_start();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| malformed("header parameter without '='"))?;
        let after = after
            .strip_prefix('"')
            .ok_or_else(|| malformed("header parameter value not quoted"))?;
        let (raw_value, after) = after
            .split_once('"')
            .ok_or_else(|| malformed("unterminated quoted value in header"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(malformed("empty header parameter name"));
        }
        if name != "realm" {
            out.push((decode(name, false)?, decode(raw_value, false)?));
        }
        let after = after.trim_start();
        rest = match after.strip_prefix(',') {
            Some(next) => next.trim_start(),
            None if after.is_empty() => after,
            None => return Err(malformed("expected ',' between header parameters")),
        };
    }
    Ok(out)
}

/// §3.4.1.2: scheme and host lowercased, default port dropped, no query.
pub fn base_string_uri(scheme: &str, host: &str, path: &str) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    // The port follows the last ':' unless that colon is inside an IPv6 literal.
    let (name, port) = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => (&host[..i], &host[i + 1..]),
        _ => (host.as_str(), ""),
    };
    let default_port = matches!((scheme.as_str(), port), ("http", "80") | ("https", "443"));
    let authority = if port.is_empty() || default_port {
        name.to_owned()
    } else {
        format!("{name}:{port}")
    };
    let path = if path.is_empty() { "/" } else { path };
    format!("{scheme}://{authority}{path}")
}

/// §3.4.1.3.2: encode each pair, drop `oauth_signature`, sort by name then
/// value, and join as `name=value&...`.
pub fn normalize_parameters(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| name != "oauth_signature")
        .map(|(n, v)| (encode(n), encode(v)))
        .collect();
    encoded.sort();
    let pairs: Vec<String> = encoded.iter().map(|(n, v)| format!("{n}={v}")).collect();
    pairs.join("&")
}

/// §3.4.1.1: `METHOD&encoded-uri&encoded-parameters`.
pub fn signature_base_string(method: &str, uri: &str, normalized: &str) -> String {
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        encode(uri),
        encode(normalized)
    )
}

/// §3.4.2: base64 HMAC-SHA1 of the base string, keyed by both secrets.
pub fn hmac_sha1_signature(base: &str, consumer_secret: &str, token_secret: &str) -> String {
    STANDARD.encode(hmac_sha1(base, consumer_secret, token_secret))
}

fn hmac_sha1(base: &str, consumer_secret: &str, token_secret: &str) -> Vec<u8> {
    let key = format!("{}&{}", encode(consumer_secret), encode(token_secret));
    // HMAC accepts keys of any length, so this cannot fail.
    match Hmac::<Sha1>::new_from_slice(key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(base.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Verifies signed requests and remembers nonces to refuse replays.
pub struct OAuthVerifier {
    /// Replaced whole when the consumers file changes; the nonce cache stays.
    creds: std::sync::RwLock<std::sync::Arc<OAuthCredentials>>,
    window: Duration,
    nonce_capacity: usize,
    nonces: Mutex<NonceCache>,
}

impl fmt::Debug for OAuthVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthVerifier")
            .field("creds", &self.creds)
            .field("window", &self.window)
            .field("nonce_capacity", &self.nonce_capacity)
            .finish_non_exhaustive()
    }
}

/// Seen nonces (hashed) with their expiry, oldest expiry first in `expiry`.
#[derive(Default)]
struct NonceCache {
    seen: HashSet<[u8; 32]>,
    expiry: BinaryHeap<Reverse<(u64, [u8; 32])>>,
}

impl NonceCache {
    /// Forgets nonces whose timestamps the window no longer accepts: a timestamp `ts` is
    /// accepted while `now <= ts + window`, so its nonce is kept through that second too
    /// (purging at `ts + window == now` let a request be replayed at the window's edge).
    fn purge(&mut self, now: u64) {
        while let Some(Reverse((at, key))) = self.expiry.peek().copied() {
            if at >= now {
                break;
            }
            self.expiry.pop();
            self.seen.remove(&key);
        }
    }
}

impl OAuthVerifier {
    /// Builds a verifier accepting timestamps within `window` of the clock
    /// and remembering at most `nonce_capacity` unexpired nonces.
    pub fn new(creds: OAuthCredentials, window: Duration, nonce_capacity: usize) -> Self {
        OAuthVerifier {
            creds: std::sync::RwLock::new(std::sync::Arc::new(creds)),
            window,
            nonce_capacity,
            nonces: Mutex::new(NonceCache::default()),
        }
    }

    /// Puts new consumers and tokens in force (a changed consumers file); the nonce cache
    /// stays, so no request can be replayed across the change.
    pub fn replace_credentials(&self, creds: OAuthCredentials) {
        *self
            .creds
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = std::sync::Arc::new(creds);
    }

    /// Checks a signed request at time `now`; returns the consumer key.
    pub fn verify(&self, req: &OAuthRequest<'_>, now: SystemTime) -> Result<String, OAuthError> {
        let creds = self
            .creds
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let header = parse_authorization_header(req.authorization)?;
        let mut proto: HashMap<&str, &str> = HashMap::new();
        for (name, value) in &header {
            if name.starts_with("oauth_") && proto.insert(name, value).is_some() {
                return Err(malformed("duplicate protocol parameter in header"));
            }
        }
        let required = |name: &'static str| match proto.get(name) {
            Some(v) if !v.is_empty() => Ok(*v),
            _ => Err(OAuthError::MissingParameter(name)),
        };
        let consumer_key = required("oauth_consumer_key")?;
        let signature = required("oauth_signature")?;
        let method = required("oauth_signature_method")?;
        let timestamp = required("oauth_timestamp")?;
        let nonce = required("oauth_nonce")?;
        if method != "HMAC-SHA1" {
            return Err(OAuthError::UnsupportedSignatureMethod(clip(method)));
        }
        if let Some(version) = proto.get("oauth_version") {
            if *version != "1.0" {
                return Err(OAuthError::UnsupportedVersion(clip(version)));
            }
        }
        let ts = parse_timestamp(timestamp)?;
        let now = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let window = self.window.as_secs();
        if ts.abs_diff(now) > window {
            return Err(OAuthError::TimestampOutOfWindow {
                earliest: now.saturating_sub(window),
                latest: now.saturating_add(window),
            });
        }
        let consumer_secret = creds
            .consumers
            .get(consumer_key)
            .ok_or(OAuthError::UnknownConsumer)?;
        // An empty oauth_token means "no token" (§3.1).
        let token = proto.get("oauth_token").copied().unwrap_or("");
        let token_secret = if token.is_empty() {
            ""
        } else {
            creds.tokens.get(token).ok_or(OAuthError::UnknownToken)?
        };

        let mut params = header.clone();
        if let Some(query) = req.query {
            params.extend(parse_form(query.as_bytes(), "query")?);
        }
        if let Some(body) = req.form_body {
            params.extend(parse_form(body, "form body")?);
        }
        // §3.5: protocol parameters must appear in one place only.
        if params[header.len()..]
            .iter()
            .any(|(n, _)| n.starts_with("oauth_"))
        {
            return Err(malformed("protocol parameters outside the header"));
        }
        if req.host.is_empty() {
            return Err(malformed("missing Host"));
        }
        let base = signature_base_string(
            req.method,
            &base_string_uri(req.scheme, req.host, req.path),
            &normalize_parameters(&params),
        );
        let expected = hmac_sha1(&base, consumer_secret, token_secret);
        let provided = STANDARD
            .decode(signature)
            .map_err(|_| OAuthError::BadSignature)?;
        if !bool::from(expected.ct_eq(&provided)) || expected.is_empty() {
            return Err(OAuthError::BadSignature);
        }

        // Only now, with a valid signature, may the request use cache space.
        let key = replay_key(consumer_key, token, nonce, ts);
        let mut cache = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        cache.purge(now);
        if cache.seen.contains(&key) {
            return Err(OAuthError::NonceReplayed);
        }
        if cache.seen.len() >= self.nonce_capacity {
            return Err(OAuthError::NonceCacheFull);
        }
        // Replayable until the timestamp itself leaves the window.
        cache.seen.insert(key);
        cache.expiry.push(Reverse((ts.saturating_add(window), key)));
        Ok(consumer_key.to_owned())
    }
}

fn malformed(reason: &str) -> OAuthError {
    OAuthError::Malformed(reason.to_owned())
}

/// Keeps client-supplied text in errors short.
fn clip(s: &str) -> String {
    s.chars().take(32).collect()
}

fn parse_timestamp(s: &str) -> Result<u64, OAuthError> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("oauth_timestamp is not a positive integer"));
    }
    s.parse()
        .map_err(|_| malformed("oauth_timestamp is not a positive integer"))
}

/// Length-prefixed digest so distinct tuples can never collide by concatenation.
fn replay_key(consumer: &str, token: &str, nonce: &str, ts: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [consumer.as_bytes(), token.as_bytes(), nonce.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(ts.to_be_bytes());
    h.finalize().into()
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, OAUTH_ENCODE).to_string()
}

/// Strict percent-decoding to UTF-8; `plus_is_space` for form encoding.
fn decode(s: &str, plus_is_space: bool) -> Result<String, OAuthError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                // Checked digit by digit: from_str_radix would accept "+f".
                let digit = |j: usize| bytes.get(j).and_then(|&b| (b as char).to_digit(16));
                let (Some(hi), Some(lo)) = (digit(i + 1), digit(i + 2)) else {
                    return Err(malformed("invalid percent-encoding"));
                };
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| malformed("parameter is not UTF-8"))
}

/// §3.4.1.3.1: query and form body are `application/x-www-form-urlencoded`.
fn parse_form(data: &[u8], what: &str) -> Result<Vec<(String, String)>, OAuthError> {
    let text = std::str::from_utf8(data).map_err(|_| malformed(&format!("{what} is not UTF-8")))?;
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = |_| malformed(&format!("invalid encoding in {what}"));
            Ok((decode(n, true).map_err(bad)?, decode(v, true).map_err(bad)?))
        })
        .collect()
}

#[cfg(test)]
mod tests;
