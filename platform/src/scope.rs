//! Which thing names a principal may bind (`auth.thingScopes`): glob patterns per principal.
//!
//! Without scopes every authenticated edge may bind any name, which suits one tenant. With
//! them, a key for plant A cannot bind plant B's things, and a principal the map does not list
//! binds nothing. Matching is linear in the name and pattern (both at most 256 bytes), so a BIND
//! of many names costs no more than reading them.

use std::collections::BTreeMap;

/// The longest pattern accepted (the longest thing name is as long).
pub const MAX_PATTERN_LEN: usize = 256;

/// Thing-name patterns per principal; `None` means unscoped.
#[derive(Debug, Clone, Default)]
pub struct ThingScopes(Option<BTreeMap<String, Vec<String>>>);

impl ThingScopes {
    /// Scopes from the config (`None`: every principal may bind any name).
    pub fn new(scopes: Option<BTreeMap<String, Vec<String>>>) -> Self {
        Self(scopes)
    }

    /// Whether `principal` may bind `name`.
    pub fn allows(&self, principal: &str, name: &str) -> bool {
        match &self.0 {
            None => true,
            Some(map) => map
                .get(principal)
                .is_some_and(|patterns| patterns.iter().any(|p| glob(p, name))),
        }
    }
}

/// `*` matches any run of characters (also none); every other character matches itself.
/// Greedy with one backtrack point, the classic linear-space wildcard match: at most
/// `pattern.len() * name.len()` steps.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests;
