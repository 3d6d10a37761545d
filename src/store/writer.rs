//! The block writer: buffers spans per (tenant, hour), rolls blocks by size or age, encodes
//! them off the async threads, uploads both tables and writes the index object last.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow::array::RecordBatch;
use bytes::Bytes;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;
use prost::Message;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

pub use super::chunk::{Chunk, Rows, Staged, stage, stage_decoded};
use super::convert::spans_to_batch;
use super::index::BlockMeta;
use super::layout::{Layout, Partition, new_block_id};
use super::schema;
use super::summary::Summariser;
use super::summary_table::summary_batch;
use super::{BlockNote, StoreError};

/// How blocks are cut and encoded.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Roll a block once its spans' OTLP size reaches this many bytes.
    pub max_block_bytes: u64,
    /// Cut the largest open blocks early while all of them together exceed this many
    /// OTLP bytes.
    pub max_buffer_bytes: u64,
    /// Roll a block once its first span has waited this long.
    pub max_block_age: Duration,
    /// Spans per Parquet row group of the span table.
    pub row_group_spans: usize,
    /// zstd level; `None` writes uncompressed.
    pub zstd_level: Option<i32>,
    /// Attribute keys whose values the trace summary keeps.
    pub indexed_attributes: Vec<String>,
    /// False-positive rate of each block's trace-id bloom filter.
    pub bloom_false_positive_rate: f64,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            max_block_bytes: 128 << 20,
            max_buffer_bytes: 256 << 20,
            max_block_age: Duration::from_secs(300),
            row_group_spans: 250_000,
            zstd_level: Some(3),
            indexed_attributes: Vec::new(),
            bloom_false_positive_rate: 0.01,
        }
    }
}

/// Spans of one partition waiting to become a block.
#[derive(Debug)]
struct Buffer {
    chunks: Vec<Rows>,
    bytes: u64,
    opened: Instant,
    /// The lowest write-ahead-log sequence number whose spans are in this buffer.
    first_seq: u64,
    /// The sequence number of each chunk's entry.
    seqs: Vec<u64>,
}

/// A block cut from a buffer, on its way to storage. Cloning shares the spans.
#[derive(Debug, Clone)]
pub struct SealedBlock {
    pub id: String,
    pub partition: Partition,
    chunks: Vec<Rows>,
    bytes: u64,
    first_seq: u64,
    /// The log entries whose spans (of this partition) the block holds.
    seqs: Vec<u64>,
    /// Blocks this one replaces (set by compaction).
    pub compacted_from: Vec<String>,
}

impl SealedBlock {
    pub fn span_count(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum()
    }

    /// What the write-ahead log is told before the block's index is written.
    pub fn note(&self) -> BlockNote {
        let mut seqs = self.seqs.clone();
        seqs.sort_unstable();
        seqs.dedup();
        BlockNote {
            block_id: self.id.clone(),
            tenant: self.partition.tenant.clone(),
            hour: self.partition.hour,
            seqs,
        }
    }
}

/// A sealed block not yet committed: its spans stay readable until its index exists.
#[derive(Debug)]
struct InFlight {
    first_seq: u64,
    bytes: u64,
    tenant: String,
    chunks: Vec<Rows>,
}

/// Buffers spans and tracks which write-ahead-log entries are committed.
#[derive(Debug)]
pub struct BlockWriter {
    config: WriterConfig,
    buffers: HashMap<Partition, Buffer>,
    /// Sealed blocks not yet committed, by id.
    in_flight: BTreeMap<String, InFlight>,
    /// The highest sequence number added so far.
    last_seq: u64,
    /// `uncommitted_bytes`, readable without the writer (see `uncommitted_counter`).
    uncommitted: Arc<AtomicU64>,
}

impl BlockWriter {
    pub fn new(config: WriterConfig) -> Self {
        Self {
            config,
            buffers: HashMap::new(),
            in_flight: BTreeMap::new(),
            last_seq: 0,
            uncommitted: Arc::default(),
        }
    }

    pub fn config(&self) -> &WriterConfig {
        &self.config
    }

    /// Adds decoded spans that the write-ahead log recorded as `seq` (compaction, tests).
    pub fn add(
        &mut self,
        resource_spans: &[ResourceSpans],
        seq: u64,
        now: Instant,
    ) -> Result<(), StoreError> {
        let bytes = resource_spans
            .iter()
            .map(|rs| rs.encoded_len() as u64)
            .sum();
        let staged = stage_decoded(resource_spans, bytes)?;
        self.insert(staged, seq, now);
        Ok(())
    }

    /// Buffers what `stage` prepared from the batch the write-ahead log recorded as `seq`.
    pub fn insert(&mut self, staged: Vec<Staged>, seq: u64, now: Instant) {
        self.last_seq = self.last_seq.max(seq);
        for Staged {
            partition,
            chunk,
            bytes,
        } in staged
        {
            let buffer = self.buffers.entry(partition).or_insert_with(|| Buffer {
                chunks: Vec::new(),
                bytes: 0,
                opened: now,
                first_seq: seq,
                seqs: Vec::new(),
            });
            buffer.chunks.push(Arc::new(chunk));
            buffer.seqs.push(seq);
            buffer.bytes += bytes;
            self.uncommitted.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Cuts the blocks that are full or old enough (or all of them, with `all`).
    pub fn seal_due(&mut self, now: Instant, all: bool, now_unix_millis: u64) -> Vec<SealedBlock> {
        let mut due: Vec<Partition> = Vec::new();
        let mut kept: Vec<(u64, &Partition)> = Vec::new();
        for (partition, b) in &self.buffers {
            if all
                || b.bytes >= self.config.max_block_bytes
                || now.duration_since(b.opened) >= self.config.max_block_age
            {
                due.push(partition.clone());
            } else {
                kept.push((b.bytes, partition));
            }
        }
        // Over the memory budget: the largest buffers go first.
        let mut open: u64 = kept.iter().map(|(bytes, _)| bytes).sum();
        kept.sort_unstable_by_key(|k| std::cmp::Reverse(k.0));
        for (bytes, partition) in kept {
            if open <= self.config.max_buffer_bytes {
                break;
            }
            open -= bytes;
            due.push(partition.clone());
        }
        let mut sealed = Vec::new();
        for partition in due {
            if let Some(buffer) = self.buffers.remove(&partition) {
                let id = new_block_id(now_unix_millis);
                let in_flight = InFlight {
                    first_seq: buffer.first_seq,
                    bytes: buffer.bytes,
                    tenant: partition.tenant.clone(),
                    chunks: buffer.chunks.clone(),
                };
                self.in_flight.insert(id.clone(), in_flight);
                sealed.push(SealedBlock {
                    id,
                    partition,
                    chunks: buffer.chunks,
                    bytes: buffer.bytes,
                    first_seq: buffer.first_seq,
                    seqs: buffer.seqs,
                    compacted_from: Vec::new(),
                });
            }
        }
        sealed
    }

    /// Takes back a block whose upload failed; it is sealed again on the next attempt.
    pub fn restore(&mut self, block: SealedBlock, now: Instant) {
        self.in_flight.remove(&block.id);
        let buffer = self
            .buffers
            .entry(block.partition)
            .or_insert_with(|| Buffer {
                chunks: Vec::new(),
                bytes: 0,
                opened: now,
                first_seq: block.first_seq,
                seqs: Vec::new(),
            });
        buffer.chunks.extend(block.chunks);
        buffer.seqs.extend(block.seqs);
        buffer.bytes += block.bytes;
        buffer.first_seq = buffer.first_seq.min(block.first_seq);
    }

    /// A sealed block whose encoded form waits in a staging store (see `write_or_stage`):
    /// its spans' request bytes are let go; it stays uncommitted, its log entries kept, until
    /// `committed`.
    pub fn staged(&mut self, block_id: &str) {
        if let Some(block) = self.in_flight.get_mut(block_id) {
            block.chunks = Vec::new();
        }
    }

    /// Marks a block as committed (its index object is written).
    pub fn committed(&mut self, block_id: &str) {
        if let Some(block) = self.in_flight.remove(block_id) {
            self.uncommitted.fetch_sub(block.bytes, Ordering::Relaxed);
        }
    }

    /// Every write-ahead-log entry up to this sequence number is in a committed block.
    pub fn committed_through(&self) -> u64 {
        let oldest = self
            .buffers
            .values()
            .map(|b| b.first_seq)
            .chain(self.in_flight.values().map(|f| f.first_seq))
            .min();
        match oldest {
            Some(seq) => seq.saturating_sub(1),
            None => self.last_seq,
        }
    }

    /// OTLP bytes in open buffers.
    pub fn buffered_bytes(&self) -> u64 {
        self.buffers.values().map(|b| b.bytes).sum()
    }

    /// OTLP bytes accepted and not yet committed: open buffers and blocks on their way.
    pub fn uncommitted_bytes(&self) -> u64 {
        self.uncommitted.load(Ordering::Relaxed)
    }

    /// A live view of `uncommitted_bytes` that needs no lock on the writer, for checks on
    /// every request (a pipeline refusing new data while the store is behind).
    pub fn uncommitted_counter(&self) -> Arc<AtomicU64> {
        self.uncommitted.clone()
    }

    /// When the oldest buffer reaches `max_block_age`.
    pub fn next_deadline(&self) -> Option<Instant> {
        let oldest = self.buffers.values().map(|b| b.opened).min()?;
        Some(oldest + self.config.max_block_age)
    }

    /// When the oldest buffered span arrived.
    pub fn oldest_buffered(&self) -> Option<Instant> {
        self.buffers.values().map(|b| b.opened).min()
    }

    pub fn is_empty(&self) -> bool {
        self.buffers.is_empty()
    }

    /// The spans of `tenant` not yet in a committed block: open buffers and sealed blocks
    /// still encoding or uploading. Cheap (shared handles), so a caller holding a lock on
    /// the writer can take them and search after releasing it.
    pub fn live_rows(&self, tenant: &str) -> Vec<Rows> {
        let buffered = self
            .buffers
            .iter()
            .filter(|(p, _)| p.tenant == tenant)
            .flat_map(|(_, b)| b.chunks.iter().cloned());
        let sealed = self
            .in_flight
            .values()
            .filter(|f| f.tenant == tenant)
            .flat_map(|f| f.chunks.iter().cloned());
        buffered.chain(sealed).collect()
    }
}

/// The encoded files of one block (cloning shares the bytes).
#[derive(Clone)]
struct Encoded {
    spans: Bytes,
    traces: Bytes,
    meta: BlockMeta,
}

/// Rows per data page at most. A trace lookup decodes the pages holding the trace's rows
/// (the offset index says where each is), so row groups can be large: each column's
/// dictionary is then written once for many pages (on loadgen's spans the attribute values
/// take 13.4 bytes per span in 100 000-span row groups, 10.2 in 250 000-span ones, and the
/// dictionaries alone took 7 at 10 000).
const PAGE_ROWS: usize = 16 * 1024;

/// Rows per record batch handed to the Parquet writer: the requests its texts point into
/// stay in the core's cache while their columns are encoded.
const BATCH_ROWS: usize = 2048;

/// How many rows ahead of the one being read its memory is asked for.
const PREFETCH_AHEAD: usize = 4;

/// Largest dictionary page. Parquet's default (1 MiB) is less than the distinct attribute
/// values of a large row group; past it a column falls back to plain values for the
/// rest of the row group, which on loadgen's spans cost 9 more bytes per span.
const DICTIONARY_BYTES: usize = 4 << 20;

fn properties(config: &WriterConfig) -> Result<WriterProperties, StoreError> {
    let compression = match config.zstd_level {
        Some(level) => Compression::ZSTD(ZstdLevel::try_new(level)?),
        None => Compression::UNCOMPRESSED,
    };
    // Version 1 data pages: version 2 leaves repetition and definition levels outside the
    // compressed data, and the attribute maps are mostly levels (six bytes per span more).
    let mut builder = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(compression)
        .set_dictionary_enabled(true);
    // Unique ids gain nothing from a dictionary; a parent id repeats for its children.
    for column in ["span_id", "parent_span_id"] {
        let path = ColumnPath::from(column);
        builder = builder
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BYTE_ARRAY);
    }
    // Nanosecond times: their high bytes are nearly constant within a block and their low
    // bytes noise. Split into byte streams, zstd packs the constant streams to nothing;
    // on loadgen's spans 3.0-3.9 bytes per value against 3.8-4.6 with deltas.
    for column in ["start_time", "end_time", "duration_ns"] {
        let path = ColumnPath::from(column);
        builder = builder
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
    }
    // Attribute maps' keys, values and type letters, ids, free texts, counts: no engine
    // prunes by their minimum and maximum, and comparing every value against them was
    // 3 % of the store's CPU for the attribute maps alone. Their offset index is still
    // written.
    for path in unpruned_leaves() {
        builder = builder.set_column_statistics_enabled(path.clone(), EnabledStatistics::None);
    }
    Ok(builder
        // Page statistics write the column indexes; the offset index is always written.
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(config.row_group_spans.max(1)))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_dictionary_page_size_limit(DICTIONARY_BYTES)
        .build())
}

/// The leaf columns of both tables whose statistics nothing reads (`is_unpruned_leaf`).
fn unpruned_leaves() -> &'static [ColumnPath] {
    static LEAVES: OnceLock<Vec<ColumnPath>> = OnceLock::new();
    LEAVES.get_or_init(|| {
        let converter = ArrowSchemaConverter::new();
        let mut out = Vec::new();
        for schema in [schema::span_schema(), schema::trace_schema()] {
            let Ok(parquet) = converter.convert(&schema) else {
                continue;
            };
            let paths = parquet.columns().iter().map(|column| column.path());
            out.extend(paths.filter(|p| schema::is_unpruned_leaf(p)).cloned());
        }
        out
    })
}

fn to_parquet(batch: &RecordBatch, props: WriterProperties) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(out)
}

/// Where each span of a block goes in the span table: its sort key and its place among
/// the block's chunks.
struct Placement {
    trace_id: u128,
    start: u64,
    chunk: u32,
    row: u32,
}

fn placements(chunks: &[Rows]) -> Vec<Placement> {
    let mut out = Vec::with_capacity(chunks.iter().map(|c| c.len()).sum());
    for (c, chunk) in chunks.iter().enumerate() {
        for (row, at) in chunk.spans().iter().enumerate() {
            out.push(Placement {
                trace_id: at.trace_id,
                start: at.start,
                chunk: c as u32,
                row: row as u32,
            });
        }
    }
    out.sort_unstable_by_key(|p| (p.trace_id, p.start));
    out
}

/// The encoded tables of a block and the time its spans cover.
struct Tables {
    spans: Vec<u8>,
    traces: Vec<u8>,
    span_times: (u64, u64),
}

/// Writes the chunks' spans in (trace id, start time) order, building the span table's
/// columns a page of rows at a time straight from the request bytes, one row group per
/// `row_group_spans`; summarises each trace on the way into the trace table.
fn encode_tables(
    chunks: &[Rows],
    order: &[Placement],
    tenant: &str,
    config: &WriterConfig,
) -> Result<Tables, StoreError> {
    let origins = chunks
        .iter()
        .map(|c| c.origins())
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, schema::span_schema(), Some(properties(config)?))?;
    let mut summariser = Summariser::new(&config.indexed_attributes);
    let mut rows = Vec::with_capacity(BATCH_ROWS);
    for group in order.chunks(config.row_group_spans.max(1)) {
        for slice in group.chunks(BATCH_ROWS) {
            rows.clear();
            for (k, p) in slice.iter().enumerate() {
                if let Some(a) = slice.get(k + 2 * PREFETCH_AHEAD) {
                    chunks[a.chunk as usize].prefetch_place(a.row as usize);
                }
                if let Some(a) = slice.get(k + PREFETCH_AHEAD) {
                    chunks[a.chunk as usize].prefetch_body(a.row as usize);
                }
                let chunk = &chunks[p.chunk as usize];
                rows.push(chunk.row(&origins[p.chunk as usize], p.row as usize)?);
            }
            writer.write(&spans_to_batch(&rows, &mut summariser)?)?;
        }
        // One row group per group of `row_group_spans`, whatever the writer buffered.
        writer.flush()?;
    }
    writer.close()?;
    let traces = summariser.finish();
    let span_times = (
        traces.iter().map(|t| t.start).min().unwrap_or(0),
        traces.iter().map(|t| t.end).max().unwrap_or(0),
    );
    let traces = to_parquet(&summary_batch(tenant, traces)?, properties(config)?)?;
    Ok(Tables {
        spans: out,
        traces,
        span_times,
    })
}

/// Sorts and encodes a block (CPU-bound: run it with `spawn_blocking`).
fn encode(block: &SealedBlock, config: &WriterConfig) -> Result<Encoded, StoreError> {
    let order = placements(&block.chunks);
    let Tables {
        spans,
        traces,
        span_times,
    } = encode_tables(&block.chunks, &order, &block.partition.tenant, config)?;
    let ids: Vec<[u8; 16]> = order.iter().map(|p| p.trace_id.to_be_bytes()).collect();
    drop(order);
    let mut meta = BlockMeta::describe(
        &block.id,
        &block.partition,
        &ids,
        span_times,
        config.row_group_spans,
        config.bloom_false_positive_rate,
    );
    meta.raw_bytes = block.bytes;
    meta.compacted_from = block.compacted_from.clone();
    meta.spans_bytes = spans.len() as u64;
    meta.traces_bytes = traces.len() as u64;
    Ok(Encoded {
        spans: Bytes::from(spans),
        traces: Bytes::from(traces),
        meta,
    })
}

/// Uploads one object; large ones go up in parts through `BufWriter`.
async fn upload(store: &Arc<dyn ObjectStore>, path: &Path, bytes: Bytes) -> Result<(), StoreError> {
    const MULTIPART_ABOVE: usize = 16 << 20;
    if bytes.len() <= MULTIPART_ABOVE {
        store.put(path, PutPayload::from(bytes)).await?;
        return Ok(());
    }
    let mut writer = BufWriter::with_capacity(store.clone(), path.clone(), MULTIPART_ABOVE);
    let uploaded = async {
        writer.write_all(&bytes).await?;
        writer.shutdown().await
    }
    .await;
    if let Err(e) = uploaded {
        writer.abort().await?;
        return Err(StoreError::Upload(e.to_string()));
    }
    Ok(())
}

/// Encodes a block and writes spans, traces and finally the index; returns the index.
/// On error nothing is visible (the index object is written last) and the block comes
/// back so its spans can be retried.
pub async fn write_block(
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
    config: &WriterConfig,
    block: SealedBlock,
) -> Result<BlockMeta, Box<(StoreError, SealedBlock)>> {
    let (encoded, block) = encode_off_thread(config, block).await?;
    match put_files(store, layout, &block, encoded).await {
        Ok(meta) => Ok(meta),
        Err(e) => Err(Box::new((e, block))),
    }
}

/// Where `write_or_stage` put a block.
#[derive(Debug)]
pub enum Written {
    /// In the store, index last: committed.
    Committed(BlockMeta),
    /// The encoded block is whole in the staging store: the upload failed (`error`), or
    /// was not tried (`None`).
    Staged {
        meta: BlockMeta,
        error: Option<StoreError>,
    },
}

/// `write_block`, except that a block whose upload fails is written whole (spans, traces,
/// index) into `staging`, an in-memory store, for `promote` to move to `store` once it
/// answers again. A block waiting there takes its encoded size in memory (tens of bytes
/// per span) instead of its spans' request bytes (hundreds), and is not encoded again on every
/// retry. Without `store` (known to be failing) the block goes to staging untried. Only a
/// failure to encode gives the block back.
pub async fn write_or_stage(
    store: Option<&Arc<dyn ObjectStore>>,
    staging: &Arc<dyn ObjectStore>,
    layout: &Layout,
    config: &WriterConfig,
    block: SealedBlock,
) -> Result<Written, Box<(StoreError, SealedBlock)>> {
    let (encoded, block) = encode_off_thread(config, block).await?;
    let error = match store {
        Some(store) => match put_files(store, layout, &block, encoded.clone()).await {
            Ok(meta) => return Ok(Written::Committed(meta)),
            Err(error) => Some(error),
        },
        None => None,
    };
    match put_files(staging, layout, &block, encoded).await {
        Ok(meta) => Ok(Written::Staged { meta, error }),
        Err(e) => Err(Box::new((e, block))),
    }
}

/// Moves a block `write_or_stage` staged into `store`: spans, traces, then the index, then
/// removes it from staging. On error nothing of it is visible in `store`.
pub async fn promote(
    staging: &Arc<dyn ObjectStore>,
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
    meta: &BlockMeta,
) -> Result<(), StoreError> {
    let parse = |path: &str| Path::parse(path).map_err(object_store::Error::from);
    let files = [parse(&meta.spans_path)?, parse(&meta.traces_path)?];
    let index = layout.index(&meta.tenant, &meta.block_id);
    let copied = async {
        for path in &files {
            let bytes = staging.get(path).await?.bytes().await?;
            upload(store, path, bytes).await?;
        }
        let json = staging.get(&index).await?.bytes().await?;
        store.put(&index, PutPayload::from(json)).await?;
        Ok::<(), StoreError>(())
    }
    .await;
    if let Err(e) = copied {
        remove_partial(store, &files).await;
        return Err(e);
    }
    for path in files.iter().chain([&index]) {
        // In memory: deleting cannot fail.
        let _ = staging.delete(path).await;
    }
    Ok(())
}

/// Outside engines read the Parquet files without the index: what did get written of a
/// failed block is removed so a retry does not count twice there. Best effort; retention
/// removes leftovers with their partition.
async fn remove_partial(store: &Arc<dyn ObjectStore>, files: &[Path]) {
    for path in files {
        let _ = store.delete(path).await;
    }
}

/// Encodes on the blocking pool. The encoder gets its own handle on the spans, so the
/// block always comes back, even from a bug in encoding or a runtime shutting down, and no
/// span is lost.
async fn encode_off_thread(
    config: &WriterConfig,
    block: SealedBlock,
) -> Result<(Encoded, SealedBlock), Box<(StoreError, SealedBlock)>> {
    let (cfg, shared) = (config.clone(), block.clone());
    let encoded = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| encode(&shared, &cfg)))
            .unwrap_or_else(|_| Err(StoreError::Task("encoding panicked".into())))
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))
    .and_then(|encoded| encoded);
    match encoded {
        Ok(encoded) => Ok((encoded, block)),
        Err(e) => Err(Box::new((e, block))),
    }
}

async fn put_files(
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
    block: &SealedBlock,
    encoded: Encoded,
) -> Result<BlockMeta, StoreError> {
    let Encoded {
        spans,
        traces,
        mut meta,
    } = encoded;
    let spans_path = layout.spans(&block.partition, &block.id);
    let traces_path = layout.traces(&block.partition, &block.id);
    meta.spans_path = spans_path.to_string();
    meta.traces_path = traces_path.to_string();
    let index_path = layout.index(&block.partition.tenant, &block.id);
    let json = serde_json::to_vec(&meta).map_err(|source| StoreError::Index {
        path: index_path.to_string(),
        source,
    })?;
    let put = async {
        upload(store, &spans_path, spans).await?;
        upload(store, &traces_path, traces).await?;
        store.put(&index_path, PutPayload::from(json)).await?;
        Ok::<(), StoreError>(())
    }
    .await;
    if let Err(e) = put {
        remove_partial(store, &[spans_path, traces_path]).await;
        return Err(e);
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn large_objects_go_up_in_parts_and_arrive_whole() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("big.parquet");
        let bytes: Vec<u8> = (0..40 << 20).map(|i: u32| (i % 251) as u8).collect();
        upload(&store, &path, Bytes::from(bytes.clone()))
            .await
            .unwrap();
        let back = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(back.len(), bytes.len());
        assert!(back == bytes);
    }
}
