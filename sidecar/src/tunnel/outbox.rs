//! Store-and-forward of property updates: an update leaves the outbox only when the platform
//! acknowledged it, survives disconnects (resent in order) and, when persisted, restarts.
//!
//! Persistence is an append-only JSON-lines log plus an acknowledgement watermark (the highest
//! sequence number below which everything is acknowledged), rewritten compactly when most of the
//! log is acknowledged. Writes are buffered and flushed by [`Outbox::flush`], which the tunnel calls
//! before every send and at shutdown, so what was sent was on disk first. A crash between a push
//! and the next flush can lose those last updates; a clean stop loses nothing.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use edgeway_protocol::basetype::{BaseType, Quality};

/// What to do when the outbox is full.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum OverflowPolicy {
    /// Drop the oldest unacknowledged update to make room (fresh data matters most).
    #[default]
    DropOldest,
    /// Refuse the new update (history matters most).
    DropNewest,
}

/// One property update waiting for the platform's acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// Thing name.
    #[serde(rename = "t")]
    pub thing: Arc<str>,
    /// Property name.
    #[serde(rename = "p")]
    pub property: Arc<str>,
    /// The property's base type, to encode the value.
    #[serde(rename = "b")]
    pub base_type: BaseType,
    /// The value in JSON form.
    #[serde(rename = "v")]
    pub value: serde_json::Value,
    /// Sample time, Unix milliseconds.
    #[serde(rename = "ts")]
    pub time_ms: i64,
    /// Sample quality.
    #[serde(rename = "q")]
    pub quality: Quality,
}

/// The updates of one thing handed out together: they travel as one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ThingBatch {
    /// Thing name.
    pub thing: Arc<str>,
    /// Sequence numbers (to acknowledge) and updates, oldest first.
    pub rows: Vec<(u64, Update)>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    s: u64,
    #[serde(flatten)]
    u: Update,
}

/// Errors of the persisted outbox; they name the file.
#[derive(Debug, thiserror::Error)]
#[error("offline queue {path}: {source}")]
pub struct OutboxError {
    path: PathBuf,
    source: std::io::Error,
}

struct Disk {
    dir: PathBuf,
    log: BufWriter<File>,
    /// Records in the log file, acknowledged or not (drives compaction).
    records: usize,
}

/// The bounded queue of unacknowledged updates.
pub struct Outbox {
    capacity: usize,
    policy: OverflowPolicy,
    /// Updates by sequence number; sequence order is generation order.
    items: BTreeMap<u64, Update>,
    /// Lowest sequence number not yet handed out for sending since the last rewind.
    cursor: u64,
    next_seq: u64,
    dropped: u64,
    disk: Option<Disk>,
}

impl Outbox {
    /// An in-memory outbox holding at most `capacity` updates.
    pub fn in_memory(capacity: usize, policy: OverflowPolicy) -> Self {
        Self {
            capacity: capacity.max(1),
            policy,
            items: BTreeMap::new(),
            cursor: 0,
            next_seq: 1,
            dropped: 0,
            disk: None,
        }
    }

    /// Opens (or creates) a persisted outbox in `dir`, reloading what was not acknowledged.
    pub fn open(dir: &Path, capacity: usize, policy: OverflowPolicy) -> Result<Self, OutboxError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OutboxError { path, source }
        };
        std::fs::create_dir_all(dir).map_err(err(dir))?;
        let watermark = read_watermark(&dir.join("acked")).map_err(err(&dir.join("acked")))?;
        let log_path = dir.join("queue.log");
        let mut out = Self::in_memory(capacity, policy);
        if log_path.exists() {
            let f = File::open(&log_path).map_err(err(&log_path))?;
            for line in BufReader::new(f).lines() {
                let line = line.map_err(err(&log_path))?;
                // A torn last line from a crash mid-write is skipped: it was never sent.
                let Ok(rec) = serde_json::from_str::<Record>(&line) else {
                    continue;
                };
                out.next_seq = out.next_seq.max(rec.s + 1);
                if rec.s > watermark {
                    out.items.insert(rec.s, rec.u);
                }
            }
        }
        out.next_seq = out.next_seq.max(watermark + 1);
        while out.items.len() > out.capacity {
            out.evict_for_capacity();
        }
        out.disk = Some(Disk {
            dir: dir.to_path_buf(),
            log: BufWriter::new(File::create(dir.join("queue.log.tmp")).map_err(err(dir))?),
            records: 0,
        });
        out.rewrite().map_err(err(&log_path))?;
        Ok(out)
    }

    /// Adds an update; returns `false` when the policy dropped something (counted).
    pub fn push(&mut self, update: Update) -> bool {
        let mut clean = true;
        if self.items.len() >= self.capacity {
            clean = false;
            match self.policy {
                OverflowPolicy::DropNewest => {
                    self.dropped += 1;
                    return false;
                }
                OverflowPolicy::DropOldest => self.evict_for_capacity(),
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(d) = self.disk.as_mut() {
            let rec = Record { s: seq, u: update };
            if let Ok(line) = serde_json::to_string(&rec) {
                if writeln!(d.log, "{line}").is_err() {
                    tracing::error!(dir = %d.dir.display(), "cannot append to the offline queue");
                }
                d.records += 1;
            }
            self.items.insert(seq, rec.u);
        } else {
            self.items.insert(seq, update);
        }
        clean
    }

    fn evict_for_capacity(&mut self) {
        if let Some((&seq, _)) = self.items.iter().next() {
            self.items.remove(&seq);
            self.dropped += 1;
        }
    }

    /// Hands out up to `max` updates not yet sent since the last rewind, oldest first.
    pub fn next_batch(&mut self, max: usize) -> Vec<(u64, Update)> {
        let batch: Vec<(u64, Update)> = self
            .items
            .range(self.cursor..)
            .take(max)
            .map(|(s, u)| (*s, u.clone()))
            .collect();
        if let Some((last, _)) = batch.last() {
            self.cursor = last + 1;
        }
        batch
    }

    /// Hands out unsent updates oldest first, grouped by thing (one request each), at most
    /// `max_rows` updates over at most `max_things` things. It stops at the first update that
    /// does not fit, so everything before the cursor has been handed out and per-thing order
    /// holds across batches.
    pub fn next_groups(&mut self, max_rows: usize, max_things: usize) -> Vec<ThingBatch> {
        let mut groups: Vec<ThingBatch> = Vec::new();
        // Batches mix thousands of devices: index groups by thing, not a linear search.
        let mut index: HashMap<Arc<str>, usize> = HashMap::new();
        let mut cursor = self.cursor;
        for (taken, (&seq, u)) in self.items.range(self.cursor..).enumerate() {
            if taken == max_rows {
                break;
            }
            let i = match index.get(&u.thing) {
                Some(&i) => i,
                None if groups.len() < max_things => {
                    index.insert(u.thing.clone(), groups.len());
                    groups.push(ThingBatch {
                        thing: u.thing.clone(),
                        rows: Vec::new(),
                    });
                    groups.len() - 1
                }
                None => break,
            };
            groups[i].rows.push((seq, u.clone()));
            cursor = seq + 1;
        }
        self.cursor = cursor;
        groups
    }

    /// Removes acknowledged updates; unknown sequence numbers (already dropped) are ignored.
    pub fn ack(&mut self, seqs: impl IntoIterator<Item = u64>) {
        for s in seqs {
            self.items.remove(&s);
        }
        if let Some(d) = self.disk.as_ref() {
            let watermark = self.watermark();
            let path = d.dir.join("acked");
            if let Err(e) = write_atomic(&path, watermark.to_string().as_bytes()) {
                tracing::error!(error = %e, "cannot record acknowledgements of the offline queue");
            }
            if d.records > 1024 && self.items.len() * 4 < d.records {
                if let Err(e) = self.rewrite() {
                    tracing::error!(error = %e, "cannot compact the offline queue");
                }
            }
        }
    }

    /// Makes every unacknowledged update eligible for sending again (after a reconnect).
    pub fn rewind(&mut self) {
        self.cursor = 0;
    }

    /// Writes buffered records to the file.
    pub fn flush(&mut self) -> Result<(), OutboxError> {
        if let Some(d) = self.disk.as_mut() {
            d.log.flush().map_err(|source| OutboxError {
                path: d.dir.join("queue.log"),
                source,
            })?;
        }
        Ok(())
    }

    /// Updates waiting for acknowledgement.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Updates dropped by the overflow policy since start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether everything handed out has been sent and nothing new waits.
    pub fn has_unsent(&self) -> bool {
        self.items.range(self.cursor..).next().is_some()
    }

    /// Everything below this sequence number is acknowledged (or dropped).
    fn watermark(&self) -> u64 {
        self.items
            .keys()
            .next()
            .map_or(self.next_seq - 1, |first| first - 1)
    }

    /// Rewrites the log with only unacknowledged records, then swaps it in atomically.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let Some(d) = self.disk.as_mut() else {
            return Ok(());
        };
        let tmp = d.dir.join("queue.log.tmp");
        let mut w = BufWriter::new(File::create(&tmp)?);
        for (s, u) in &self.items {
            let rec = Record {
                s: *s,
                u: u.clone(),
            };
            writeln!(
                w,
                "{}",
                serde_json::to_string(&rec).map_err(std::io::Error::other)?
            )?;
        }
        w.flush()?;
        w.get_ref().sync_all()?;
        drop(w);
        let log = d.dir.join("queue.log");
        std::fs::rename(&tmp, &log)?;
        write_atomic(
            &d.dir.join("acked"),
            self.watermark_value().to_string().as_bytes(),
        )?;
        let f = OpenOptions::new().append(true).open(&log)?;
        let d = self
            .disk
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no disk"))?;
        d.log = BufWriter::new(f);
        d.records = self.items.len();
        Ok(())
    }

    fn watermark_value(&self) -> u64 {
        self.watermark()
    }
}

fn read_watermark(path: &Path) -> std::io::Result<u64> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().parse().unwrap_or(0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(thing: &str, i: i64) -> Update {
        Update {
            thing: thing.into(),
            property: "p".into(),
            base_type: BaseType::Integer,
            value: serde_json::json!(i),
            time_ms: i,
            quality: Quality::Good,
        }
    }

    fn values(batch: &[(u64, Update)]) -> Vec<i64> {
        batch.iter().map(|(_, u)| u.time_ms).collect()
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("edgeway-outbox-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn unacked_updates_are_resent_in_order_after_rewind() {
        let mut o = Outbox::in_memory(10, OverflowPolicy::DropOldest);
        for i in 0..5 {
            o.push(up("a", i));
        }
        let b1 = o.next_batch(3);
        assert_eq!(values(&b1), vec![0, 1, 2]);
        o.ack([b1[0].0]);
        assert_eq!(values(&o.next_batch(10)), vec![3, 4]);
        assert!(o.next_batch(10).is_empty());
        o.rewind();
        assert_eq!(values(&o.next_batch(10)), vec![1, 2, 3, 4]);
        assert_eq!(o.len(), 4);
    }

    #[test]
    fn groups_stop_at_the_thing_limit_and_keep_order() {
        let mut o = Outbox::in_memory(100, OverflowPolicy::DropOldest);
        for (i, t) in ["a", "b", "a", "c", "b", "a"].iter().enumerate() {
            o.push(up(t, i as i64));
        }
        // Two things fit: "c" (4th update) stops the batch, so the later "b" and "a" wait.
        let g = o.next_groups(100, 2);
        let shape: Vec<(&str, Vec<i64>)> = g.iter().map(|b| (&*b.thing, values(&b.rows))).collect();
        assert_eq!(shape, vec![("a", vec![0, 2]), ("b", vec![1])]);
        let g = o.next_groups(2, 10);
        let shape: Vec<(&str, Vec<i64>)> = g.iter().map(|b| (&*b.thing, values(&b.rows))).collect();
        assert_eq!(shape, vec![("c", vec![3]), ("b", vec![4])]);
        assert_eq!(values(&o.next_groups(10, 10)[0].rows), vec![5]);
        assert!(!o.has_unsent());
        o.rewind();
        assert_eq!(o.next_groups(100, 100).len(), 3);
    }

    #[test]
    fn overflow_policies_drop_and_count() {
        let mut o = Outbox::in_memory(3, OverflowPolicy::DropOldest);
        for i in 0..5 {
            o.push(up("a", i));
        }
        assert_eq!(o.dropped(), 2);
        assert_eq!(values(&o.next_batch(10)), vec![2, 3, 4]);

        let mut o = Outbox::in_memory(3, OverflowPolicy::DropNewest);
        for i in 0..5 {
            o.push(up("a", i));
        }
        assert_eq!(o.dropped(), 2);
        assert_eq!(values(&o.next_batch(10)), vec![0, 1, 2]);
    }

    #[test]
    fn persisted_outbox_survives_restart_without_losing_or_repeating() {
        let dir = temp("restart");
        {
            let mut o = Outbox::open(&dir, 100, OverflowPolicy::DropOldest).unwrap();
            for i in 0..6 {
                o.push(up("a", i));
            }
            let b = o.next_batch(2);
            o.ack(b.iter().map(|(s, _)| *s));
            o.flush().unwrap();
        }
        let mut o = Outbox::open(&dir, 100, OverflowPolicy::DropOldest).unwrap();
        assert_eq!(values(&o.next_batch(100)), vec![2, 3, 4, 5]);
        // Sequence numbers keep growing across restarts, so acks never collide.
        o.push(up("a", 6));
        let b = o.next_batch(100);
        assert_eq!(values(&b), vec![6]);
        assert!(b[0].0 > 6);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn torn_last_line_is_ignored_and_compaction_keeps_the_rest() {
        let dir = temp("torn");
        {
            let mut o = Outbox::open(&dir, 5000, OverflowPolicy::DropOldest).unwrap();
            for i in 0..2000 {
                o.push(up("a", i));
            }
            let b = o.next_batch(1900);
            o.flush().unwrap();
            o.ack(b.iter().map(|(s, _)| *s));
            o.flush().unwrap();
        }
        let log = dir.join("queue.log");
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"{\"s\":99999,\"t\":\"a\"").unwrap();
        drop(f);
        let lines = std::fs::read_to_string(&log).unwrap().lines().count();
        assert!(lines < 200, "log was not compacted: {lines} lines");
        let mut o = Outbox::open(&dir, 5000, OverflowPolicy::DropOldest).unwrap();
        let rest = values(&o.next_batch(10_000));
        assert_eq!(rest, (1900..2000).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reload_over_capacity_applies_the_policy() {
        let dir = temp("shrink");
        {
            let mut o = Outbox::open(&dir, 10, OverflowPolicy::DropOldest).unwrap();
            for i in 0..10 {
                o.push(up("a", i));
            }
            o.flush().unwrap();
        }
        let mut o = Outbox::open(&dir, 4, OverflowPolicy::DropOldest).unwrap();
        assert_eq!(values(&o.next_batch(10)), vec![6, 7, 8, 9]);
        assert_eq!(o.dropped(), 6);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
