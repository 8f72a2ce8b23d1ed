//! What the platform stored, audited: every counter value from the first to the last present
//! once, in order. Pure, so its own tests pin what counts as lost or repeated.

use std::collections::BTreeMap;

/// The audit of one device's stored counter values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// Values stored.
    pub stored: usize,
    /// Values missing between the first and the last stored.
    pub lost: usize,
    /// Values stored more than once (each extra copy counts).
    pub duplicates: usize,
    /// Values stored after a larger one.
    pub out_of_order: usize,
    /// The largest value stored.
    pub last: Option<i64>,
    /// The first few missing values, to look for in the logs.
    pub missing: Vec<i64>,
}

impl Audit {
    /// Audits `values` (oldest first) against a counter counting up by one from its smallest
    /// value. (The simulation may skip a device's first slots when its start is late, so the
    /// first value stored, not 0, is where a device's count begins.)
    pub fn of(values: &[i64]) -> Audit {
        let first = values.iter().copied().min().unwrap_or(0);
        let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
        let mut out_of_order = 0;
        let mut max: Option<i64> = None;
        for &v in values {
            *seen.entry(v).or_default() += 1;
            if max.is_some_and(|m| v < m) {
                out_of_order += 1;
            }
            max = max.max(Some(v));
        }
        let duplicates = seen.values().map(|n| n - 1).sum();
        let lost = match max {
            Some(last) if last >= first => {
                (last - first + 1) as usize - seen.range(first..=last).count()
            }
            _ => 0,
        };
        let missing = match max {
            Some(last) => (first..=last)
                .filter(|v| !seen.contains_key(v))
                .take(5)
                .collect(),
            None => vec![],
        };
        Audit {
            missing,
            stored: values.len(),
            lost,
            duplicates,
            out_of_order,
            last: max,
        }
    }

    /// Adds another device's audit.
    pub fn add(&mut self, other: &Audit) {
        self.stored += other.stored;
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.last = self.last.max(other.last);
        if self.missing.len() < 5 {
            self.missing
                .extend(other.missing.iter().take(5 - self.missing.len()));
        }
    }
}

#[cfg(test)]
mod tests;
