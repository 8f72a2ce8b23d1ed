//! Store-and-forward of property updates and events: an entry leaves the outbox only when the platform
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

use super::config::{OverflowPolicy, QueueConfig};
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
    /// An in-memory outbox bounded as `config` says (its `dir` is not used).
    pub fn in_memory(config: &QueueConfig) -> Self {
        Self {
            capacity: config.capacity.max(1),
            policy: config.overflow,
            items: BTreeMap::new(),
            cursor: 0,
            next_seq: 1,
            dropped: 0,
            disk: None,
        }
    }

    /// Opens (or creates) a persisted outbox in `dir`, reloading what was not acknowledged.
    pub fn open(dir: &Path, config: &QueueConfig) -> Result<Self, OutboxError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OutboxError { path, source }
        };
        std::fs::create_dir_all(dir).map_err(err(dir))?;
        let watermark = read_watermark(&dir.join("acked")).map_err(err(&dir.join("acked")))?;
        let log_path = dir.join("queue.log");
        let mut out = Self::in_memory(config);
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
mod tests;
