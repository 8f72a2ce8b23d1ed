//! The outbox's log file: appends, the fsync policy, compaction by rewrite, and the failing
//! state a full (or broken) volume puts it in.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::tunnel::config::{FsyncPolicy, QueueConfig};

/// A failing log is retried at most this often: each retry writes the whole queue.
const RETRY_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Disk {
    dir: PathBuf,
    /// The open log; `None` while failing (and before the first rewrite).
    log: Option<BufWriter<File>>,
    /// Bytes in the log file, live and dead lines.
    file_bytes: u64,
    fsync: FsyncPolicy,
    interval: Duration,
    /// Something was written since the last `fdatasync`.
    unsynced: bool,
    last_sync: Instant,
    /// Why the log cannot be written, while it cannot.
    failing: Option<String>,
    last_attempt: Instant,
    errors: u64,
}

impl Disk {
    pub(super) fn new(dir: &Path, config: &QueueConfig) -> Self {
        let now = Instant::now();
        Self {
            dir: dir.to_path_buf(),
            log: None,
            file_bytes: 0,
            fsync: config.fsync,
            interval: Duration::from_millis(config.fsync_interval_ms),
            unsynced: false,
            last_sync: now,
            failing: None,
            last_attempt: now,
            errors: 0,
        }
    }

    pub(super) fn log_path(&self) -> PathBuf {
        self.dir.join("queue.log")
    }

    pub(super) fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    pub(super) fn failing(&self) -> Option<&str> {
        self.failing.as_deref()
    }

    pub(super) fn errors(&self) -> u64 {
        self.errors
    }

    pub(super) fn retry_due(&self) -> bool {
        self.last_attempt.elapsed() >= RETRY_EVERY
    }

    /// Appends one line (buffered); dropped while failing: the next rewrite carries it.
    pub(super) fn append(&mut self, line: &[u8]) {
        let Some(w) = self.log.as_mut() else {
            return;
        };
        match w.write_all(line) {
            Ok(()) => {
                self.file_bytes += line.len() as u64;
                self.unsynced = true;
            }
            Err(e) => self.fail(e),
        }
    }

    /// Hands buffered lines to the kernel, then syncs them as the policy says.
    pub(super) fn commit(&mut self) {
        let Some(w) = self.log.as_mut() else {
            return;
        };
        if let Err(e) = w.flush() {
            return self.fail(e);
        }
        let due = match self.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval => self.last_sync.elapsed() >= self.interval,
            FsyncPolicy::Never => false,
        };
        if self.unsynced && due {
            if let Err(e) = w.get_ref().sync_data() {
                return self.fail(e);
            }
            self.unsynced = false;
            self.last_sync = Instant::now();
        }
    }

    /// Replaces the log with `lines` (written to a new file, synced, renamed over the old
    /// one); `false` if that failed, which leaves the log failing.
    pub(super) fn rewrite(&mut self, lines: impl Iterator<Item = Vec<u8>>) -> bool {
        self.last_attempt = Instant::now();
        // What the old log still buffers is in `lines` too: discard it, do not write it.
        if let Some(old) = self.log.take() {
            drop(old.into_parts());
        }
        let tmp = self.dir.join("queue.log.tmp");
        let log = self.log_path();
        let written = (|| -> std::io::Result<(BufWriter<File>, u64)> {
            let mut w = BufWriter::new(File::create(&tmp)?);
            let mut n = 0;
            for l in lines {
                w.write_all(&l)?;
                n += l.len() as u64;
            }
            w.flush()?;
            w.get_ref().sync_all()?;
            drop(w);
            std::fs::rename(&tmp, &log)?;
            // The rename itself is durable only once the directory is synced.
            File::open(&self.dir)?.sync_all()?;
            let f = OpenOptions::new().append(true).open(&log)?;
            Ok((BufWriter::new(f), n))
        })();
        match written {
            Ok((w, n)) => {
                self.log = Some(w);
                self.file_bytes = n;
                self.unsynced = false;
                self.last_sync = Instant::now();
                if self.failing.take().is_some() {
                    tracing::info!(
                        dir = %self.dir.display(),
                        "offline queue writable again: everything queued is on disk"
                    );
                }
                true
            }
            Err(e) => {
                // A partial copy would hold the space the volume lacks.
                let _ = std::fs::remove_file(&tmp);
                self.fail(e);
                false
            }
        }
    }

    fn fail(&mut self, e: std::io::Error) {
        self.errors += 1;
        // Dropping the writer would try to flush it again.
        if let Some(w) = self.log.take() {
            drop(w.into_parts());
        }
        self.last_attempt = Instant::now();
        if self.failing.is_none() {
            tracing::error!(
                dir = %self.dir.display(),
                error = %e,
                "cannot write the offline queue (is its volume full?): updates are kept in \
                 memory, within the queue's bounds, and written once the volume takes them \
                 again; a restart before then loses them"
            );
        }
        self.failing = Some(e.to_string());
    }
}
