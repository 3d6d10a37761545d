//! The trace store format: partitioned Parquet blocks plus a JSON index on object storage.
//!
//! Layout (hive-style, so outside engines prune by partition):
//! `{root}/spans/tenant={t}/date=YYYY-MM-DD/hour=HH/{block}.parquet`, the same under
//! `traces/` for the per-trace summary, and `{root}/index/tenant={t}/{block}.json`, written
//! last: a block without its index object is invisible.

pub mod bloom;
pub mod chunk;
pub mod compaction;
pub mod convert;
pub mod decode;
pub mod index;
pub mod layout;
pub mod live;
pub mod location;
mod object_reader;
pub mod reader;
pub mod retention;
pub mod schema;
mod search;
pub mod search_filter;
pub mod summary;
pub mod summary_table;
pub mod wal;
pub mod writer;

#[cfg(test)]
mod query_tests;
#[cfg(test)]
pub(crate) mod testdata;
#[cfg(test)]
mod tests;

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

/// A closed interval of unix nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

impl TimeWindow {
    /// Whether `[start, end]` shares at least one instant with the window.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        start <= self.end_unix_nano && end >= self.start_unix_nano
    }

    pub fn contains(&self, t: u64) -> bool {
        self.overlaps(t, t)
    }
}

/// `key = value` on a span's or its resource's attributes, compared as the store's text
/// form of the value (`convert::encode_value(..).1`), so `user.id=8821` matches an int 8821
/// and a string "8821".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanPredicate {
    pub key: String,
    pub value: String,
}

impl SpanPredicate {
    /// Whether the attributes hold the key with the value.
    pub fn matches(&self, attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> bool {
        attributes.iter().any(|kv| {
            kv.key == self.key && convert::encode_value(kv.value.as_ref()).1 == self.value
        })
    }
}

/// The write-ahead log as the trace store uses it. A batch is appended before `export`
/// answers Ok; entries are released once every block holding their spans has its index
/// written; uncommitted entries are replayed into new blocks on start.
#[async_trait::async_trait]
pub trait WriteAheadLog: Send + Sync {
    /// Durably records a batch; returns its sequence number (strictly increasing, from 1).
    async fn append(&self, batch: &crate::component::TraceBatch) -> Result<u64, StoreError>;
    /// Every entry with a sequence number up to `seq` is in a committed block.
    async fn committed_through(&self, seq: u64) -> Result<(), StoreError>;
    /// The entries not yet committed, oldest first, to rebuild blocks after a restart.
    async fn replay(&self) -> Result<Vec<(u64, Vec<ResourceSpans>)>, StoreError>;
    /// Durably notes which entries a block holds spans of, before its index is written:
    /// after a crash between the index and `committed_through`, the replay skips what the
    /// block already committed instead of storing it twice.
    async fn note_block(&self, _note: &BlockNote) -> Result<(), StoreError> {
        Ok(())
    }
    /// The notes of blocks that may hold entries not yet released.
    async fn block_notes(&self) -> Result<Vec<BlockNote>, StoreError> {
        Ok(Vec::new())
    }
}

/// Which log entries a block holds the spans of one partition of (see `note_block`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockNote {
    pub block_id: String,
    pub tenant: String,
    /// Hours since the Unix epoch of the block's partition.
    pub hour: u64,
    /// Sequence numbers of the entries whose spans of this partition the block holds.
    pub seqs: Vec<u64>,
}

impl From<crate::component::wire::WireError> for StoreError {
    fn from(error: crate::component::wire::WireError) -> Self {
        StoreError::Spans(error.to_string())
    }
}

/// Everything that can go wrong reading or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("index {path}: {source}")]
    Index {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid store url {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("invalid tenant: {0}")]
    Tenant(String),
    #[error("unexpected column {0}: the file was not written by this store version")]
    Column(String),
    #[error("span bytes: {0}")]
    Spans(String),
    #[error("upload failed: {0}")]
    Upload(String),
    #[error("write-ahead log: {0}")]
    Wal(String),
    #[error("encoding task failed: {0}")]
    Task(String),
}
