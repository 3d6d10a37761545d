//! The trace store format: partitioned Parquet blocks plus a JSON index on object storage.
//!
//! Layout (hive-style, so outside engines prune by partition):
//! `{root}/spans/tenant={t}/date=YYYY-MM-DD/hour=HH/{block}.parquet`, the same under
//! `traces/` for the per-trace summary, and `{root}/index/tenant={t}/{block}.json`, written
//! last: a block without its index object is invisible.

pub mod bloom;
pub mod convert;
pub mod decode;
pub mod index;
pub mod layout;
pub mod location;
pub mod reader;
pub mod retention;
pub mod schema;
pub mod summary;
pub mod writer;

#[cfg(test)]
pub(crate) mod testdata;
#[cfg(test)]
mod tests;

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
    #[error("upload failed: {0}")]
    Upload(String),
    #[error("encoding task failed: {0}")]
    Task(String),
}
