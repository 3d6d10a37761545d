//! The write-ahead log under `wal_dir` (`crate::store::wal`) behind the store's
//! `WriteAheadLog` seam: appends are written and synced off the async worker threads.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::component::ResourceSpans;
use crate::store::wal::{FsyncPolicy, Seq, Wal, WalError, WalOptions};
use crate::store::{StoreError, WriteAheadLog};

/// A file-backed write-ahead log shared by the exporter and its committer task.
pub struct FileWal {
    wal: Arc<Mutex<Wal>>,
}

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
    async fn append(&self, batch: &[ResourceSpans]) -> Result<u64, StoreError> {
        let seq = blocking(|| self.wal.lock().append_spans(batch)).map_err(store_error)?;
        Ok(seq.0)
    }

    async fn committed_through(&self, seq: u64) -> Result<(), StoreError> {
        blocking(|| self.wal.lock().commit(Seq(seq))).map_err(store_error)?;
        Ok(())
    }

    async fn replay(&self) -> Result<Vec<(u64, Vec<ResourceSpans>)>, StoreError> {
        let replay = self.wal.lock().replay();
        let mut entries = Vec::new();
        for entry in replay {
            let (seq, batch) = entry.map_err(store_error)?;
            entries.push((seq.0, batch.resource_spans));
        }
        Ok(entries)
    }
}
