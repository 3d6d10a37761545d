//! The write-ahead log under `wal_dir` (`crate::store::wal`) behind the store's
//! `WriteAheadLog` seam: appends are written and synced off the async worker threads.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::component::ResourceSpans;
use crate::store::wal::{FsyncPolicy, Seq, Wal, WalError, WalOptions};
use crate::store::{BlockNote, StoreError, WriteAheadLog};

/// A file-backed write-ahead log shared by the exporter and its committer task.
pub struct FileWal {
    wal: Arc<Mutex<Wal>>,
    /// `blocks.notes` in the log's directory: one JSON line per block about to commit.
    notes: PathBuf,
    notes_lock: Mutex<()>,
}

/// The notes file: blocks noted before their index was written, one JSON line each.
const NOTES_FILE: &str = "blocks.notes";

impl FileWal {
    /// Opens (creating) the log, recovering from a torn tail left by a crash.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, WalError> {
        let options = WalOptions {
            max_bytes,
            fsync: FsyncPolicy::Always,
            ..WalOptions::default()
        };
        let wal = Wal::open(dir, options)?;
        let recovery = wal.recovery();
        if recovery.truncated_bytes > 0 || !recovery.corruptions.is_empty() {
            tracing::warn!(dir = %dir.display(), ?recovery, "write-ahead log recovered from damage");
        }
        Ok(Self {
            wal: Arc::new(Mutex::new(wal)),
            notes: dir.join(NOTES_FILE),
            notes_lock: Mutex::new(()),
        })
    }
}

fn store_error(err: WalError) -> StoreError {
    StoreError::Wal(err.to_string())
}

/// Runs blocking log IO without stalling the async worker: on a multi-thread runtime the
/// worker hands its other tasks away for the duration; elsewhere (tests) it runs inline.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

#[async_trait]
impl WriteAheadLog for FileWal {
    async fn append(&self, batch: &crate::component::TraceBatch) -> Result<u64, StoreError> {
        let seq = blocking(|| self.wal.lock().append(batch)).map_err(store_error)?;
        Ok(seq.0)
    }

    async fn committed_through(&self, seq: u64) -> Result<(), StoreError> {
        blocking(|| self.wal.lock().commit(Seq(seq))).map_err(store_error)?;
        // Notes of blocks whose entries are all released are not needed by any replay.
        blocking(|| {
            let _held = self.notes_lock.lock();
            let notes = read_notes(&self.notes)?;
            let kept: Vec<&BlockNote> = notes
                .iter()
                .filter(|n| n.seqs.iter().any(|s| *s > seq))
                .collect();
            if kept.len() == notes.len() {
                return Ok(());
            }
            let partial = self.notes.with_extension("notes.tmp");
            let mut file = std::fs::File::create(&partial)?;
            for note in kept {
                writeln!(file, "{}", serde_json::to_string(note)?)?;
            }
            file.sync_data()?;
            std::fs::rename(&partial, &self.notes)
        })
        .map_err(|e| StoreError::Wal(format!("{}: {e}", self.notes.display())))
    }

    async fn note_block(&self, note: &BlockNote) -> Result<(), StoreError> {
        let line =
            serde_json::to_string(note).map_err(|e| StoreError::Wal(format!("block note: {e}")))?;
        blocking(|| {
            let _held = self.notes_lock.lock();
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.notes)?;
            writeln!(file, "{line}")?;
            file.sync_data()
        })
        .map_err(|e| StoreError::Wal(format!("{}: {e}", self.notes.display())))
    }

    async fn block_notes(&self) -> Result<Vec<BlockNote>, StoreError> {
        let _held = self.notes_lock.lock();
        read_notes(&self.notes)
            .map_err(|e| StoreError::Wal(format!("{}: {e}", self.notes.display())))
    }

    async fn replay(&self) -> Result<Vec<(u64, Vec<ResourceSpans>)>, StoreError> {
        let replay = self.wal.lock().replay();
        let mut entries = Vec::new();
        for entry in replay {
            let (seq, batch) = entry.map_err(store_error)?;
            entries.push((seq.0, batch.into_resource_spans()));
        }
        Ok(entries)
    }
}

/// The notes in `path` (none when it does not exist). A line that does not parse is the
/// torn end of a note whose block never wrote its index: skipped.
fn read_notes(path: &Path) -> std::io::Result<Vec<BlockNote>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}
