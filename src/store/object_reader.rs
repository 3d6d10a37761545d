//! Parquet objects read by range from object storage, counting the bytes fetched, with a
//! bounded cache of parsed footers (objects never change once written).

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::StoreError;

/// Counters of one read call (or of the reader's whole life).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub bytes: AtomicU64,
    pub cache_hits: AtomicU64,
}

impl Tally {
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn hits(&self) -> u64 {
        self.cache_hits.load(Ordering::Relaxed)
    }
}

/// Reads a Parquet object whose size the index already knows (no HEAD request).
pub(crate) struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    tally: Arc<Tally>,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.tally.add_bytes(range.end.saturating_sub(range.start));
        self.store
            .get_range(&self.path, range)
            .map_err(external)
            .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        for range in &ranges {
            self.tally.add_bytes(range.end.saturating_sub(range.start));
        }
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .with_prefetch_hint(Some(64 * 1024))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// Parsed footers by object path; the oldest entry goes when full.
pub(crate) struct FooterCache {
    capacity: usize,
    entries: parking_lot::Mutex<(HashMap<String, ArrowReaderMetadata>, VecDeque<String>)>,
}

impl FooterCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Default::default(),
        }
    }

    fn get(&self, path: &str) -> Option<ArrowReaderMetadata> {
        self.entries.lock().0.get(path).cloned()
    }

    fn insert(&self, path: &str, metadata: ArrowReaderMetadata) {
        let mut guard = self.entries.lock();
        let (map, order) = &mut *guard;
        if map.insert(path.to_string(), metadata).is_some() {
            return;
        }
        order.push_back(path.to_string());
        while order.len() > self.capacity {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    /// A stream builder over `path`, its footer from the cache when there.
    pub async fn open(
        &self,
        store: &Arc<dyn ObjectStore>,
        path: &str,
        size: u64,
        tally: &Arc<Tally>,
    ) -> Result<ParquetRecordBatchStreamBuilder<ObjectReader>, StoreError> {
        let (reader, metadata) = self.footer(store, path, size, tally).await?;
        Ok(ParquetRecordBatchStreamBuilder::new_with_metadata(
            reader, metadata,
        ))
    }

    /// A reader of `path` and its parsed footer, from the cache when there.
    pub async fn footer(
        &self,
        store: &Arc<dyn ObjectStore>,
        path: &str,
        size: u64,
        tally: &Arc<Tally>,
    ) -> Result<(ObjectReader, ArrowReaderMetadata), StoreError> {
        let mut reader = ObjectReader {
            store: store.clone(),
            path: Path::from(path),
            size,
            tally: tally.clone(),
        };
        let metadata = match self.get(path) {
            Some(metadata) => {
                tally.hit();
                metadata
            }
            None => {
                // The offset index says where each page is, so a trace lookup fetches the
                // pages of its rows rather than whole column chunks.
                let options =
                    ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
                let metadata = ArrowReaderMetadata::load_async(&mut reader, options).await?;
                self.insert(path, metadata.clone());
                metadata
            }
        };
        Ok((reader, metadata))
    }
}
