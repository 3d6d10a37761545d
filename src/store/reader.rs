//! Reading the store: list committed blocks, find a trace by id, read blocks back as OTLP.
//! Search reads (summaries, attribute scans) live in `search`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use super::decode::batches_to_resource_spans;
use super::index::BlockMeta;
use super::layout::Layout;
use super::live::merge_spans;
use super::object_reader::{FooterCache, ObjectReader, Tally};
use super::{StoreError, TimeWindow};

pub(super) mod lookup;
mod pages;

/// How many parsed Parquet footers a reader keeps.
const FOOTER_CACHE_ENTRIES: usize = 1024;

/// How many blocks one trace lookup reads at once: a trace's spans are usually spread over
/// many blocks, and each read is mostly decoding, so they run as tasks on the runtime.
const LOOKUP_READS_IN_FLIGHT: usize = 8;

/// What one read did, for query statistics and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadStats {
    /// Blocks whose index was consulted.
    pub blocks_inspected: u64,
    pub row_groups_read: u64,
    /// Bytes fetched from object storage (Parquet footers and column chunks).
    pub bytes_read: u64,
    /// Blocks whose bloom filter said maybe but whose row groups held no span of the trace.
    pub bloom_false_positives: u64,
    /// Index objects and Parquet footers served from the reader's caches.
    pub cache_hits: u64,
}

/// Reads committed blocks; blocks without an index object are never seen. Cheap to clone;
/// clones share their caches, so one reader serves concurrent queries.
#[derive(Clone)]
pub struct StoreReader {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    /// Parsed index objects by path: an index never changes once written.
    indexes: parking_lot::Mutex<HashMap<String, Arc<BlockMeta>>>,
    footers: FooterCache,
    cache_hits: AtomicU64,
}

impl StoreReader {
    pub fn new(store: Arc<dyn ObjectStore>, layout: Layout) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                layout,
                indexes: Default::default(),
                footers: FooterCache::new(FOOTER_CACHE_ENTRIES),
                cache_hits: AtomicU64::new(0),
            }),
        }
    }

    /// Index objects and footers served from cache since the reader was made.
    pub fn cache_hits(&self) -> u64 {
        self.inner.cache_hits.load(Ordering::Relaxed)
    }

    pub(super) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// Folds a call's cache hits into the reader's lifetime count.
    pub(super) fn fold(&self, tally: &Tally) {
        self.inner
            .cache_hits
            .fetch_add(tally.hits(), Ordering::Relaxed);
    }

    /// A reader and the (cached) footer of one Parquet object of the store.
    pub(super) async fn footer(
        &self,
        path: &str,
        size: u64,
        tally: &Arc<Tally>,
    ) -> Result<
        (
            ObjectReader,
            parquet::arrow::arrow_reader::ArrowReaderMetadata,
        ),
        StoreError,
    > {
        self.inner
            .footers
            .footer(&self.inner.store, path, size, tally)
            .await
    }

    /// A stream builder over one Parquet object of the store.
    pub(super) async fn open(
        &self,
        path: &str,
        size: u64,
        tally: &Arc<Tally>,
    ) -> Result<parquet::arrow::ParquetRecordBatchStreamBuilder<ObjectReader>, StoreError> {
        self.inner
            .footers
            .open(&self.inner.store, path, size, tally)
            .await
    }

    /// Every tenant that has at least one committed block.
    pub async fn tenants(&self) -> Result<Vec<String>, StoreError> {
        let listing = self
            .store()
            .list_with_delimiter(Some(&self.inner.layout.index_root()))
            .await?;
        let mut out = Vec::new();
        for prefix in listing.common_prefixes {
            if let Some(t) = prefix.filename().and_then(|f| f.strip_prefix("tenant=")) {
                out.push(t.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// The index of every visible block of `tenant`, oldest first: committed, and not
    /// replaced by a compacted block.
    pub async fn blocks(&self, tenant: &str) -> Result<Vec<BlockMeta>, StoreError> {
        self.blocks_in(tenant, None).await
    }

    /// The visible blocks of `tenant` whose time range overlaps `window` (all with `None`).
    pub async fn blocks_in(
        &self,
        tenant: &str,
        window: Option<TimeWindow>,
    ) -> Result<Vec<BlockMeta>, StoreError> {
        let tally = Arc::new(Tally::default());
        let blocks = self.visible(tenant, window, &tally).await;
        self.fold(&tally);
        Ok(blocks?.iter().map(|m| BlockMeta::clone(m)).collect())
    }

    async fn visible(
        &self,
        tenant: &str,
        window: Option<TimeWindow>,
        tally: &Tally,
    ) -> Result<Vec<Arc<BlockMeta>>, StoreError> {
        let all = self.indexes(tenant, tally).await?;
        let replaced: HashSet<&str> = all
            .iter()
            .flat_map(|m| m.compacted_from.iter().map(String::as_str))
            .collect();
        let visible = all
            .iter()
            .filter(|m| !replaced.contains(m.block_id.as_str()))
            .filter(|m| {
                window.is_none_or(|w| w.overlaps(m.min_start_unix_nano, m.max_end_unix_nano))
            })
            .cloned()
            .collect();
        Ok(visible)
    }

    /// Every index object of `tenant`, including blocks a compaction already replaced.
    pub async fn all_blocks(&self, tenant: &str) -> Result<Vec<BlockMeta>, StoreError> {
        let tally = Tally::default();
        let all = self.indexes(tenant, &tally).await?;
        self.fold(&tally);
        Ok(all.iter().map(|m| BlockMeta::clone(m)).collect())
    }

    /// Lists the tenant's index objects (so new blocks appear and deleted ones vanish) and
    /// parses only those not already cached.
    async fn indexes(
        &self,
        tenant: &str,
        tally: &Tally,
    ) -> Result<Vec<Arc<BlockMeta>>, StoreError> {
        let dir = self.inner.layout.index_dir(tenant);
        let objects: Vec<_> = self.store().list(Some(&dir)).try_collect().await?;
        let mut metas = Vec::with_capacity(objects.len());
        let mut listed = HashSet::new();
        for object in objects {
            if object.location.extension() != Some("json") {
                continue;
            }
            let key = object.location.to_string();
            let cached = self.inner.indexes.lock().get(&key).cloned();
            if let Some(meta) = cached {
                tally.hit();
                metas.push(meta);
                listed.insert(key);
                continue;
            }
            // Retention or compaction may delete an index between listing and reading it.
            match self.block(&object.location).await {
                Ok(meta) => {
                    let meta = Arc::new(meta);
                    self.inner.indexes.lock().insert(key.clone(), meta.clone());
                    metas.push(meta);
                    listed.insert(key);
                }
                Err(StoreError::ObjectStore(object_store::Error::NotFound { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        let prefix = format!("{dir}/");
        self.inner
            .indexes
            .lock()
            .retain(|path, _| !path.starts_with(&prefix) || listed.contains(path));
        metas.sort_by(|a, b| a.block_id.cmp(&b.block_id));
        Ok(metas)
    }

    async fn block(&self, path: &Path) -> Result<BlockMeta, StoreError> {
        let bytes = self.store().get(path).await?.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Index {
            path: path.to_string(),
            source,
        })
    }

    /// The spans of trace `trace_id` of `tenant`, reading only candidate row groups.
    pub async fn trace(
        &self,
        tenant: &str,
        trace_id: &[u8],
    ) -> Result<Vec<ResourceSpans>, StoreError> {
        self.trace_in(tenant, trace_id, None, &mut ReadStats::default())
            .await
    }

    /// Like `trace`, skipping blocks whose time range misses `window`. A span found in
    /// several blocks (compaction overlap, a replayed log) is returned once.
    pub async fn trace_in(
        &self,
        tenant: &str,
        trace_id: &[u8],
        window: Option<TimeWindow>,
        stats: &mut ReadStats,
    ) -> Result<Vec<ResourceSpans>, StoreError> {
        let tally = Arc::new(Tally::default());
        let found = self
            .trace_blocks(tenant, trace_id, window, stats, &tally)
            .await;
        stats.bytes_read += tally.bytes();
        stats.cache_hits += tally.hits();
        self.fold(&tally);
        Ok(merge_spans(found?))
    }

    async fn trace_blocks(
        &self,
        tenant: &str,
        trace_id: &[u8],
        window: Option<TimeWindow>,
        stats: &mut ReadStats,
        tally: &Arc<Tally>,
    ) -> Result<Vec<Vec<ResourceSpans>>, StoreError> {
        let mut reads = Vec::new();
        for meta in self.visible(tenant, window, tally).await? {
            stats.blocks_inspected += 1;
            if !meta.may_contain(trace_id) {
                continue;
            }
            let groups = meta.row_groups_for(trace_id);
            stats.row_groups_read += groups.len() as u64;
            if groups.is_empty() {
                stats.bloom_false_positives += 1;
                continue;
            }
            let (reader, id, tally) = (self.clone(), trace_id.to_vec(), tally.clone());
            // Spawned when the buffer below polls it, so at most a few run at once.
            reads.push(async move {
                tokio::spawn(async move { reader.block_trace(&meta, &groups, &id, &tally).await })
                    .await
            });
        }
        let mut results = futures::stream::iter(reads).buffered(LOOKUP_READS_IN_FLIGHT);
        let mut parts = Vec::new();
        while let Some(result) = results.next().await {
            match result.map_err(|e| StoreError::Task(e.to_string()))?? {
                Some(part) => parts.push(part),
                None => stats.bloom_false_positives += 1,
            }
        }
        Ok(parts)
    }

    /// The spans of one trace in one block, as OTLP; `None` when it holds none.
    async fn block_trace(
        &self,
        meta: &BlockMeta,
        groups: &[usize],
        trace_id: &[u8],
        tally: &Arc<Tally>,
    ) -> Result<Option<Vec<ResourceSpans>>, StoreError> {
        let (mut reader, metadata) = self
            .inner
            .footers
            .footer(&self.inner.store, &meta.spans_path, meta.spans_bytes, tally)
            .await?;
        let batches = lookup::trace_rows(&mut reader, &metadata, groups, trace_id).await?;
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(None);
        }
        batches_to_resource_spans(&batches).map(Some)
    }

    /// Every span of one block, as OTLP.
    pub async fn block_spans(&self, meta: &BlockMeta) -> Result<Vec<ResourceSpans>, StoreError> {
        let tally = Arc::new(Tally::default());
        let builder = self
            .open(&meta.spans_path, meta.spans_bytes, &tally)
            .await?;
        let batches: Vec<RecordBatch> = builder.build()?.try_collect().await?;
        self.fold(&tally);
        batches_to_resource_spans(&batches)
    }
}

/// The position of a top-level column among the file's root fields.
pub(super) fn root_index(
    schema: &parquet::schema::types::SchemaDescriptor,
    name: &str,
) -> Result<usize, StoreError> {
    schema
        .root_schema()
        .get_fields()
        .iter()
        .position(|f| f.name() == name)
        .ok_or_else(|| StoreError::Column(name.to_string()))
}
