//! Reading the store: list committed blocks, find a trace by id, read blocks back as OTLP.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::StoreError;
use super::decode::batches_to_resource_spans;
use super::index::BlockMeta;
use super::layout::Layout;

/// Reads committed blocks; blocks without an index object are never seen.
#[derive(Clone)]
pub struct StoreReader {
    store: Arc<dyn ObjectStore>,
    layout: Layout,
}

impl StoreReader {
    pub fn new(store: Arc<dyn ObjectStore>, layout: Layout) -> Self {
        Self { store, layout }
    }

    /// Every tenant that has at least one committed block.
    pub async fn tenants(&self) -> Result<Vec<String>, StoreError> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.layout.index_root()))
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
        let all = self.all_blocks(tenant).await?;
        let replaced: std::collections::HashSet<&str> = all
            .iter()
            .flat_map(|m| m.compacted_from.iter().map(String::as_str))
            .collect();
        let visible = all
            .iter()
            .filter(|m| !replaced.contains(m.block_id.as_str()))
            .cloned()
            .collect();
        Ok(visible)
    }

    /// Every index object of `tenant`, including blocks a compaction already replaced.
    pub async fn all_blocks(&self, tenant: &str) -> Result<Vec<BlockMeta>, StoreError> {
        let dir = self.layout.index_dir(tenant);
        let objects: Vec<_> = self.store.list(Some(&dir)).try_collect().await?;
        let mut metas = Vec::with_capacity(objects.len());
        for object in objects {
            if object.location.extension() != Some("json") {
                continue;
            }
            // Retention or compaction may delete an index between listing and reading it.
            match self.block(&object.location).await {
                Ok(meta) => metas.push(meta),
                Err(StoreError::ObjectStore(object_store::Error::NotFound { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        metas.sort_by(|a, b| a.block_id.cmp(&b.block_id));
        Ok(metas)
    }

    async fn block(&self, path: &Path) -> Result<BlockMeta, StoreError> {
        let bytes = self.store.get(path).await?.bytes().await?;
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
        let mut batches = Vec::new();
        for meta in self.blocks(tenant).await? {
            if !meta.may_contain(trace_id) {
                continue;
            }
            let groups = meta.row_groups_for(trace_id);
            if groups.is_empty() {
                continue;
            }
            for batch in self.read_spans(&meta, Some(groups)).await? {
                batches.push(filter_trace(&batch, trace_id)?);
            }
        }
        batches_to_resource_spans(&batches)
    }

    /// Every span of one block, as OTLP.
    pub async fn block_spans(&self, meta: &BlockMeta) -> Result<Vec<ResourceSpans>, StoreError> {
        let batches = self.read_spans(meta, None).await?;
        batches_to_resource_spans(&batches)
    }

    async fn read_spans(
        &self,
        meta: &BlockMeta,
        row_groups: Option<Vec<usize>>,
    ) -> Result<Vec<RecordBatch>, StoreError> {
        let reader = ObjectReader {
            store: self.store.clone(),
            path: Path::from(meta.spans_path.as_str()),
            size: meta.spans_bytes,
        };
        let mut builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
        if let Some(groups) = row_groups {
            builder = builder.with_row_groups(groups);
        }
        Ok(builder.build()?.try_collect().await?)
    }
}

/// Keeps the rows of one trace id.
fn filter_trace(batch: &RecordBatch, trace_id: &[u8]) -> Result<RecordBatch, StoreError> {
    let ids = batch
        .column_by_name("trace_id")
        .and_then(|c| {
            c.as_any()
                .downcast_ref::<arrow::array::FixedSizeBinaryArray>()
        })
        .ok_or_else(|| StoreError::Column("trace_id".into()))?;
    let mask: arrow::array::BooleanArray =
        ids.iter().map(|id| Some(id == Some(trace_id))).collect();
    Ok(arrow::compute::filter_record_batch(batch, &mask)?)
}

/// Reads a Parquet object whose size the index already knows (no HEAD request).
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.store
            .get_range(&self.path, range)
            .map_err(external)
            .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
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
