//! Store-and-forward of property updates and events: an entry leaves the outbox only when the
//! platform acknowledged it, survives disconnects (resent in order) and, when persisted,
//! restarts.
//!
//! The queue is bounded in updates (`capacity`) and, when `maxBytes` is set, in bytes (each
//! update counted as its record in the log); the overflow policy decides what goes when full.
//! Persistence ([`disk`]) is an append-only JSON-lines log of records and acknowledgements,
//! compacted whenever its dead lines (acknowledged or dropped) outweigh the live ones, online
//! or offline. Every push and acknowledgement is written to the kernel at once (a killed
//! process loses nothing, and nothing acknowledged is sent again after a restart);
//! `fsync` decides when it reaches the disk. A volume that fills does not stop the gateway:
//! the queue keeps its updates in memory, says so (log line, metric, the gateway's status) and
//! writes them all once space returns.

mod disk;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::config::{OverflowPolicy, QueueConfig};
use disk::Disk;
use edgeway_protocol::basetype::{BaseType, Quality};

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
    /// An event, not a property value: `property` is the event name and `value` the JSON
    /// object of its data (`base_type` INFOTABLE). Absent from the log for property values, so
    /// logs written before events existed read unchanged.
    #[serde(rename = "e", default, skip_serializing_if = "std::ops::Not::not")]
    pub event: bool,
}

/// The updates of one thing handed out together: they travel as one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ThingBatch {
    /// Thing name.
    pub thing: Arc<str>,
    /// Sequence numbers (to acknowledge) and updates, oldest first.
    pub rows: Vec<(u64, Update)>,
}

/// A line of the log: an update's record, acknowledgements, or the next sequence number (the
/// first line of a compacted log, so numbers keep growing across restarts).
#[derive(Deserialize)]
struct Record {
    s: u64,
    #[serde(flatten)]
    u: Update,
}

#[derive(Serialize, Deserialize)]
struct Acks {
    a: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
struct Next {
    next: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Acks(Acks),
    Next(Next),
    Record(Record),
}

/// Errors of the persisted outbox; they name the file.
#[derive(Debug, thiserror::Error)]
#[error("offline queue {path}: {source}")]
pub struct OutboxError {
    path: PathBuf,
    source: std::io::Error,
}

/// What the queue holds and how its persistence fares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Updates waiting for acknowledgement.
    pub len: usize,
    /// Updates the queue holds before its overflow policy applies.
    pub capacity: usize,
    /// Their bytes (records in the log); 0 when bytes are not counted (in memory, no `maxBytes`).
    pub bytes: u64,
    /// Updates dropped by the overflow policy since start.
    pub dropped: u64,
    /// The persisted queue cannot be written now (updates are held in memory).
    pub write_failing: bool,
    /// Failed writes of the persisted queue since start.
    pub write_errors: u64,
}

struct Entry {
    update: Update,
    /// Bytes of its log record; 0 when not counted.
    bytes: u64,
}

/// The bounded queue of unacknowledged updates.
pub struct Outbox {
    capacity: usize,
    max_bytes: Option<u64>,
    policy: OverflowPolicy,
    /// Updates by sequence number; sequence order is generation order.
    items: BTreeMap<u64, Entry>,
    /// Sum of the entries' bytes.
    bytes: u64,
    /// Lowest sequence number not yet handed out for sending since the last rewind.
    cursor: u64,
    next_seq: u64,
    dropped: u64,
    disk: Option<Disk>,
}

impl Outbox {
    /// An in-memory outbox bounded as `config` says (its `dir` is not used).
    pub fn in_memory(config: &QueueConfig) -> Self {
        Self {
            capacity: config.capacity.max(1),
            max_bytes: config.max_bytes,
            policy: config.overflow,
            items: BTreeMap::new(),
            bytes: 0,
            cursor: 0,
            next_seq: 1,
            dropped: 0,
            disk: None,
        }
    }

    /// Opens (or creates) a persisted outbox in `dir`, reloading what was not acknowledged.
    /// Only a directory that cannot be created or a log that cannot be read is an error; a
    /// log that cannot be rewritten (a full volume) starts the queue failing, in memory.
    pub fn open(dir: &Path, config: &QueueConfig) -> Result<Self, OutboxError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OutboxError { path, source }
        };
        std::fs::create_dir_all(dir).map_err(err(dir))?;
        // Logs written before acknowledgement lines kept a watermark file instead.
        let legacy_path = dir.join("acked");
        let watermark = read_watermark(&legacy_path).map_err(err(&legacy_path))?;
        let log_path = dir.join("queue.log");
        let mut records = BTreeMap::new();
        let mut acked = HashSet::new();
        let mut next_seq = watermark + 1;
        if log_path.exists() {
            let f = std::fs::File::open(&log_path).map_err(err(&log_path))?;
            for line in BufReader::new(f).lines() {
                let line = line.map_err(err(&log_path))?;
                // A torn last line from a crash mid-write is skipped: it was never sent.
                match serde_json::from_str::<Line>(&line) {
                    Ok(Line::Record(r)) => {
                        next_seq = next_seq.max(r.s + 1);
                        if r.s > watermark {
                            records.insert(r.s, r.u);
                        }
                    }
                    Ok(Line::Acks(a)) => acked.extend(a.a),
                    Ok(Line::Next(n)) => next_seq = next_seq.max(n.next),
                    Err(_) => {}
                }
            }
        }
        let mut out = Self::in_memory(config);
        out.next_seq = next_seq;
        out.disk = Some(Disk::new(dir, config));
        for (seq, update) in records {
            if !acked.contains(&seq) {
                let bytes = out.record_bytes(seq, &update);
                out.bytes += bytes;
                out.items.insert(seq, Entry { update, bytes });
            }
        }
        // The bounds may have shrunk since: the oldest go.
        while out.over_bounds(0, 0) {
            out.evict_oldest();
        }
        if out.rewrite() && legacy_path.exists() {
            std::fs::remove_file(&legacy_path).map_err(err(&legacy_path))?;
        }
        Ok(out)
    }

    /// Adds an update; returns `false` when the policy dropped something (counted).
    pub fn push(&mut self, update: Update) -> bool {
        let seq = self.next_seq;
        let line = self.disk.as_ref().map(|_| record_line(seq, &update));
        let bytes = match (&line, self.max_bytes) {
            (Some(l), _) => l.len() as u64,
            (None, Some(_)) => self.record_bytes(seq, &update),
            (None, None) => 0,
        };
        if self.max_bytes.is_some_and(|m| bytes > m) {
            // Larger than the whole queue: it can never be kept.
            self.dropped += 1;
            return false;
        }
        let mut clean = true;
        while self.over_bounds(1, bytes) {
            clean = false;
            match self.policy {
                OverflowPolicy::DropNewest => {
                    self.dropped += 1;
                    return false;
                }
                OverflowPolicy::DropOldest => self.evict_oldest(),
            }
        }
        self.next_seq += 1;
        if let (Some(d), Some(l)) = (self.disk.as_mut(), &line) {
            d.append(l);
        }
        self.bytes += bytes;
        self.items.insert(seq, Entry { update, bytes });
        if !clean {
            // Evicted records are dead lines in the log: offline, only this compacts it.
            self.maybe_compact();
        }
        clean
    }

    /// Whether adding `count` updates of `bytes` would break a bound.
    fn over_bounds(&self, count: usize, bytes: u64) -> bool {
        self.items.len() + count > self.capacity
            || self.max_bytes.is_some_and(|m| self.bytes + bytes > m)
    }

    fn evict_oldest(&mut self) {
        if let Some((_, e)) = self.items.pop_first() {
            self.bytes -= e.bytes;
            self.dropped += 1;
        }
    }

    /// Bytes of `update`'s log record, counted only when something needs them.
    fn record_bytes(&self, seq: u64, update: &Update) -> u64 {
        if self.disk.is_none() && self.max_bytes.is_none() {
            return 0;
        }
        let mut counter = ByteCounter(0);
        // Plain data to a counter: serializing cannot fail.
        let _ = serde_json::to_writer(&mut counter, &RecordRef { s: seq, u: update });
        counter.0 + 1
    }
    /// Hands out up to `max` updates not yet sent since the last rewind, oldest first.
    pub fn next_batch(&mut self, max: usize) -> Vec<(u64, Update)> {
        let batch: Vec<(u64, Update)> = self
            .items
            .range(self.cursor..)
            .take(max)
            .map(|(s, e)| (*s, e.update.clone()))
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
        for (taken, (&seq, e)) in self.items.range(self.cursor..).enumerate() {
            if taken == max_rows {
                break;
            }
            let u = &e.update;
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
    /// Persisted, the acknowledgement is written to the kernel before this returns, so a
    /// restart does not send it again.
    pub fn ack(&mut self, seqs: impl IntoIterator<Item = u64>) {
        let mut acked = Vec::new();
        for s in seqs {
            if let Some(e) = self.items.remove(&s) {
                self.bytes -= e.bytes;
                acked.push(s);
            }
        }
        if acked.is_empty() {
            return;
        }
        if let Some(d) = self.disk.as_mut() {
            d.append(&json_line(&Acks { a: acked }));
            d.commit();
            self.maybe_compact();
        }
    }

    /// Makes every unacknowledged update eligible for sending again (after a reconnect).
    pub fn rewind(&mut self) {
        self.cursor = 0;
    }

    /// Writes what was pushed to the kernel and syncs it as the `fsync` policy says; while the
    /// volume refuses writes, retries (at most once a second) to write the whole queue.
    /// Called after every batch of pushes, before every send, on a timer and at shutdown.
    pub fn flush(&mut self) -> Result<(), OutboxError> {
        let Some(d) = self.disk.as_mut() else {
            return Ok(());
        };
        if d.failing().is_some() && d.retry_due() {
            self.rewrite();
        } else {
            d.commit();
        }
        match self.disk.as_ref().and_then(Disk::failing) {
            Some(e) => Err(OutboxError {
                path: self.disk.as_ref().map(Disk::log_path).unwrap_or_default(),
                source: std::io::Error::other(e.to_owned()),
            }),
            None => Ok(()),
        }
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

    /// The queue's counts and its persistence's state.
    pub fn stats(&self) -> QueueStats {
        QueueStats {
            len: self.items.len(),
            capacity: self.capacity,
            bytes: self.bytes,
            dropped: self.dropped,
            write_failing: self.disk.as_ref().is_some_and(|d| d.failing().is_some()),
            write_errors: self.disk.as_ref().map_or(0, Disk::errors),
        }
    }

    /// Whether everything handed out has been sent and nothing new waits.
    pub fn has_unsent(&self) -> bool {
        self.items.range(self.cursor..).next().is_some()
    }

    /// Compacts the log when its dead lines outweigh the live ones (and a floor, so small
    /// queues are not rewritten at every acknowledgement): the file stays within twice the
    /// live bytes plus the floor, which `maxBytes` caps at half of itself.
    fn maybe_compact(&mut self) {
        let Some(d) = self.disk.as_ref() else {
            return;
        };
        let floor = self.max_bytes.map_or(1 << 20, |m| (m / 2).min(1 << 20));
        let dead = d.file_bytes().saturating_sub(self.bytes);
        if d.failing().is_none() && dead > self.bytes.max(floor) {
            self.rewrite();
        }
    }

    /// Rewrites the log with the live records only; `false` if it could not be written.
    fn rewrite(&mut self) -> bool {
        let Some(d) = self.disk.as_mut() else {
            return true;
        };
        let head = json_line(&Next {
            next: self.next_seq,
        });
        let records = self.items.iter().map(|(s, e)| record_line(*s, &e.update));
        d.rewrite(std::iter::once(head).chain(records))
    }
}

#[derive(Serialize)]
struct RecordRef<'a> {
    s: u64,
    #[serde(flatten)]
    u: &'a Update,
}

/// An update's log line, newline included.
fn record_line(seq: u64, update: &Update) -> Vec<u8> {
    json_line(&RecordRef { s: seq, u: update })
}

fn json_line(value: &impl Serialize) -> Vec<u8> {
    // Plain data with string keys: serializing cannot fail.
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Counts what is written to it.
struct ByteCounter(u64);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn read_watermark(path: &Path) -> std::io::Result<u64> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().parse().unwrap_or(0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
