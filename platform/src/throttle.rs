//! Failed AUTHs per remote address: past a few in a minute, an address's next AUTHs are refused
//! without looking at the key, so app keys cannot be guessed at line rate (300 wrong keys at
//! 20/s were all checked before).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed AUTHs an address may make within [`WINDOW`] before it is refused. Generous, since
/// many edges can share one address behind NAT or a masquerading Service: one misconfigured
/// edge retrying with the tunnel's backoff makes fewer than ten attempts a minute, and 30
/// guesses a minute at a 128-bit key are no attack.
pub const MAX_FAILURES: u32 = 30;
/// How long failures are remembered (counted from an address's first failure).
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once; beyond it, expired ones are dropped, and a new address is not
/// tracked (memory stays bounded under many sources).
const MAX_TRACKED: usize = 10_000;

/// Failure counts by address.
#[derive(Debug, Default)]
pub struct AuthThrottle {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthThrottle {
    /// Whether `ip` has used up its failures for now.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&ip)
            .is_some_and(|(since, n)| *n >= MAX_FAILURES && now.duration_since(*since) < WINDOW)
    }

    /// Counts a failed AUTH from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            map.retain(|_, (since, _)| now.duration_since(*since) < WINDOW);
            if map.len() >= MAX_TRACKED {
                return;
            }
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
mod tests;
