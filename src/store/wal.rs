//! The trace store's local write-ahead log: batches are made durable here before the exporter
//! acknowledges them, and are deleted only once the blocks holding them are committed.
//!
//! # Layout
//!
//! `wal_dir` holds segment files named by the sequence number they start at
//! (`00000000000000000042.wal`), a `committed` marker with the highest committed sequence
//! number, and a `lock` file that keeps a second process out. A segment is a run of records: a 24-byte header (magic `SLWL`, version, flags,
//! sequence number, payload length, crc32 of header and payload) followed by the batch as an
//! OTLP `ExportTraceServiceRequest` in protobuf wire form.
//!
//! # Recovery on open
//!
//! Every segment is read and every record checked (magic, version, checksum, increasing
//! sequence number). A damaged record at the end of the last segment is a torn write: the
//! segment is truncated to the last good record and the cut bytes are counted and logged.
//! Damage anywhere else (an older segment, or the middle of the last one, which a valid
//! record still follows) is not something a crash produces: it is logged as an error with the
//! segment path and offset, the rest of that segment is skipped and counted, the file is kept
//! for inspection, and recovery continues with the next segment; new appends then go to a
//! fresh segment. Records after the damage in that segment are not trusted (their bytes
//! could be span data that merely looks like a record).
//!
//! # Why a synchronous API
//!
//! Appends are large (250 KB – 4 MB) and each must be written and, by default, fsynced
//! before the exporter answers. `tokio::fs` runs every operation on the blocking pool
//! anyway: it copies the buffer once more, splits writes above its 2 MiB buffer into
//! several pool hops, and makes `sync_data` another hop. So the WAL uses `std::fs`, and the
//! exporter calls it inside one `tokio::task::spawn_blocking` per batch (owning the `Wal`
//! behind a mutex, or moving it in and out): encoding, write and fsync happen in one hop,
//! off the async worker threads, with one copy of the batch. `Replay` owns its state so it
//! can be driven the same way.

mod record;
mod recover;
mod replay;
mod segment;
#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, counter, gauge};

use crate::component::TraceBatch;
use crate::telemetry::metrics as names;

pub use record::Damage;
pub use recover::{Corruption, Recovery, TornTail};
use replay::PendingSegment;
pub use replay::Replay;
use segment::Segment;

/// A record's sequence number: strictly increasing across the WAL's life. Only numbers held
/// by records that recovery skipped as damaged may be given out again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seq(pub u64);

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// When appended records are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before `append` returns: an acknowledged batch survives power loss.
    Always,
    /// At the first append after this much time since the last sync (and on `sync`):
    /// a power loss can lose up to that much; a killed process loses nothing.
    Interval(Duration),
    /// Left to the operating system: a killed process loses nothing, a power loss may.
    Never,
}

/// How a WAL is sized and synced.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A segment is closed and a new one started when the next record would take it past
    /// this many bytes (a record larger than this gets a segment of its own).
    pub segment_bytes: u64,
    /// The WAL never holds more than this many bytes (`wal_max_bytes`); appends beyond it
    /// fail with `WalError::WalFull`.
    pub max_bytes: u64,
    pub fsync: FsyncPolicy,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 * 1024 * 1024,
            max_bytes: 2 * 1024 * 1024 * 1024,
            fsync: FsyncPolicy::Always,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The WAL holds `bytes` and the record would take it past `max`: retry after a commit.
    #[error("write-ahead log is full: {bytes} bytes held, limit {max} bytes")]
    WalFull { bytes: u64, max: u64 },
    /// The record alone is larger than the WAL may ever hold: retrying cannot help.
    #[error("record of {len} bytes can never fit the write-ahead log limit of {max} bytes")]
    RecordTooLarge { len: u64, max: u64 },
    /// Another `Wal` (in this or another process) has the directory open.
    #[error("{}: the write-ahead log is in use by another process", path.display())]
    Locked { path: PathBuf },
    #[error("cannot commit up to sequence {up_to}: the last appended is {last}")]
    CommitAhead { up_to: Seq, last: Seq },
    #[error("{}: {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{} at offset {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

impl WalError {
    fn io(path: &Path, op: &'static str, source: std::io::Error) -> Self {
        WalError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }

    /// True when the caller should refuse the batch as retryable (the WAL may drain).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, WalError::RecordTooLarge { .. })
    }
}

/// The segment being appended to.
struct Active {
    file: File,
    path: PathBuf,
    bytes: u64,
    /// Bytes written since the last fsync.
    unsynced: bool,
}

struct WalMetrics {
    bytes: Gauge,
    segments: Gauge,
    replayed_spans: Counter,
}

impl WalMetrics {
    fn new(dir: &Path) -> Self {
        let label = [("dir", dir.display().to_string())];
        Self {
            bytes: gauge!(names::STORE_WAL_BYTES, &label),
            segments: gauge!(names::STORE_WAL_SEGMENTS, &label),
            replayed_spans: counter!(names::STORE_WAL_REPLAYED_SPANS, &label),
        }
    }
}

/// A write-ahead log in one directory, which it locks while open.
pub struct Wal {
    dir: PathBuf,
    /// Holds an exclusive lock on `dir/lock`; the OS releases it when the process dies.
    _lock: Option<File>,
    options: WalOptions,
    /// Every segment file, oldest first; the last is `active` when that is set.
    segments: Vec<Segment>,
    active: Option<Active>,
    next_seq: u64,
    committed: u64,
    bytes: u64,
    last_sync: Instant,
    pending: Vec<PendingSegment>,
    recovery: Recovery,
    metrics: WalMetrics,
    /// The record being written, kept between appends: a batch's record is megabytes, and
    /// allocating it afresh each time has the kernel zero new pages for every append.
    scratch: Vec<u8>,
}

impl Wal {
    /// Opens (creating) the WAL in `dir`, validating every segment; see the module docs for
    /// what happens to damaged records. `recovery()` tells what was found.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<Wal, WalError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| WalError::io(&dir, "create", e))?;
        let lock = segment::lock_dir(&dir)?;
        let found = recover::recover(&dir)?;
        let active = match found.reusable_tail {
            true => found.segments.last().map(|s| (s.path.clone(), s.bytes)),
            false => None,
        };
        let active = match active {
            Some((path, bytes)) => Some(Active {
                file: segment::open_append(&path)?,
                path,
                bytes,
                unsynced: false,
            }),
            None => None,
        };
        let bytes = found.segments.iter().map(|s| s.bytes).sum();
        let wal = Wal {
            metrics: WalMetrics::new(&dir),
            dir,
            _lock: Some(lock),
            options,
            segments: found.segments,
            active,
            next_seq: found.next_seq,
            committed: found.recovery.committed.0,
            bytes,
            last_sync: Instant::now(),
            pending: found.pending,
            recovery: found.recovery,
            scratch: Vec::new(),
        };
        wal.record_size();
        Ok(wal)
    }

    /// What recovery found when the WAL was opened.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Bytes held in segment files.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Segment files on disk.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The sequence number the next append will get.
    pub fn next_seq(&self) -> Seq {
        Seq(self.next_seq)
    }

    /// The highest committed sequence number (0 when nothing was ever committed).
    pub fn committed(&self) -> Seq {
        Seq(self.committed)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The records that were uncommitted when the WAL was opened, in order, for
    /// re-ingestion on start. Records appended since are not included.
    pub fn replay(&self) -> Replay {
        Replay::new(
            self.pending.iter().cloned().collect(),
            self.metrics.replayed_spans.clone(),
        )
    }

    /// Writes `batch` as the next record and, by the fsync policy, syncs it; when this
    /// returns Ok the batch survives a killed process (and, with `Always`, a power loss).
    pub fn append(&mut self, batch: &TraceBatch) -> Result<Seq, WalError> {
        let payload_len = record::payload_len(batch);
        let len = (record::HEADER_LEN + payload_len) as u64;
        let max = self.options.max_bytes;
        if len > max || payload_len > u32::MAX as usize {
            return Err(WalError::RecordTooLarge { len, max });
        }
        if self.bytes + len > max {
            return Err(WalError::WalFull {
                bytes: self.bytes,
                max,
            });
        }
        let seq = self.next_seq;
        let mut buf = std::mem::take(&mut self.scratch);
        record::encode_into(&mut buf, seq, batch, payload_len);
        let written = self
            .prepare_segment(len)
            .and_then(|()| self.write(&buf, seq));
        self.scratch = buf;
        written?;
        self.next_seq += 1;
        self.bytes += len;
        self.record_size();
        Ok(Seq(seq))
    }

    /// Forces appended records to stable storage now (for `FsyncPolicy::Interval` on a tick).
    pub fn sync(&mut self) -> Result<(), WalError> {
        if let Some(active) = self.active.as_mut().filter(|a| a.unsynced) {
            active
                .file
                .sync_data()
                .map_err(|e| WalError::io(&active.path, "fsync", e))?;
            active.unsynced = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Marks every record up to `up_to` as committed (in a block whose index is written):
    /// they are never replayed again, and whole segments holding only such records are
    /// deleted. Committing at or below the current mark does nothing. A writer with several
    /// open blocks passes one less than the lowest sequence number still in an open block.
    pub fn commit(&mut self, up_to: Seq) -> Result<usize, WalError> {
        let last = self.next_seq - 1;
        if up_to.0 > last {
            return Err(WalError::CommitAhead {
                up_to,
                last: Seq(last),
            });
        }
        if up_to.0 <= self.committed {
            return Ok(0);
        }
        let sync = self.options.fsync != FsyncPolicy::Never;
        // The marker first: a crash before the deletions replays nothing committed.
        segment::write_committed(&self.dir, up_to.0, sync)?;
        self.committed = up_to.0;
        let deletable = self.deletable_prefix(up_to.0);
        for seg in self.segments.drain(..deletable) {
            if self.active.as_ref().is_some_and(|a| a.path == seg.path) {
                self.active = None;
            }
            match fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(WalError::io(&seg.path, "delete", e)),
            }
            self.bytes -= seg.bytes;
        }
        if deletable > 0 && sync {
            segment::sync_dir(&self.dir)?;
        }
        self.record_size();
        Ok(deletable)
    }

    /// How many leading segments hold only records <= `up_to`. A segment's records all lie
    /// below the next segment's first sequence number, so that bounds older ones even when
    /// damage hides their last record.
    fn deletable_prefix(&self, up_to: u64) -> usize {
        let mut count = 0;
        for (i, seg) in self.segments.iter().enumerate() {
            let is_active = self.active.as_ref().is_some_and(|a| a.path == seg.path);
            let upper = if is_active {
                seg.last_seq
            } else if let Some(next) = self.segments.get(i + 1) {
                Some(next.first_seq - 1)
            } else {
                // A closed last segment: damage ended it; what follows its last record is lost.
                Some(seg.last_seq.unwrap_or(seg.first_seq.saturating_sub(1)))
            };
            match upper {
                Some(upper) if upper <= up_to => count += 1,
                _ => break,
            }
        }
        count
    }

    /// Makes sure the active segment can take a record of `len` bytes, rolling if not.
    fn prepare_segment(&mut self, len: u64) -> Result<(), WalError> {
        let full = self
            .active
            .as_ref()
            .is_some_and(|a| a.bytes > 0 && a.bytes + len > self.options.segment_bytes);
        if full {
            if self.options.fsync != FsyncPolicy::Never {
                self.sync()?;
            }
            self.active = None;
        }
        if self.active.is_some() {
            return Ok(());
        }
        let path = segment::segment_path(&self.dir, self.next_seq);
        let file = segment::open_append(&path)?;
        if self.options.fsync != FsyncPolicy::Never {
            segment::sync_dir(&self.dir)?;
        }
        self.segments.push(Segment {
            path: path.clone(),
            first_seq: self.next_seq,
            last_seq: None,
            bytes: 0,
        });
        self.active = Some(Active {
            file,
            path,
            bytes: 0,
            unsynced: false,
        });
        Ok(())
    }

    /// Writes one encoded record to the active segment and syncs by policy. On failure the
    /// segment is cut back to its previous end so no partial record is followed by more.
    fn write(&mut self, buf: &[u8], seq: u64) -> Result<(), WalError> {
        let active = self
            .active
            .as_mut()
            .expect("prepare_segment should have opened a segment");
        if let Err(e) = active.file.write_all(buf) {
            let error = WalError::io(&active.path, "write", e);
            if active.file.set_len(active.bytes).is_err() {
                // The tail cannot be repaired: the next append starts a new segment and
                // the damage is reported on the next open.
                self.active = None;
            }
            return Err(error);
        }
        active.bytes += buf.len() as u64;
        active.unsynced = true;
        if let Some(seg) = self.segments.last_mut() {
            seg.last_seq = Some(seq);
            seg.bytes += buf.len() as u64;
        }
        let due = match self.options.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(every) => self.last_sync.elapsed() >= every,
            FsyncPolicy::Never => false,
        };
        if due { self.sync() } else { Ok(()) }
    }

    /// Leaks every handle but the directory lock, as a killed process would (the OS
    /// releases its locks but nothing else runs).
    #[cfg(test)]
    fn simulate_kill(mut self) {
        let lock = self._lock.take();
        std::mem::forget(self);
        drop(lock);
    }

    fn record_size(&self) {
        self.metrics.bytes.set(self.bytes as f64);
        self.metrics.segments.set(self.segments.len() as f64);
    }
}
