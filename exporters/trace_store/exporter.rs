//! The exporter: routes batches into the block writer and commits blocks in the background.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use metrics::{counter, gauge, histogram};
use object_store::{ObjectStore, ObjectStoreExt};
use prost::Message;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::component::names::{
    STORE_BLOCKS_WRITTEN, STORE_BUFFERED_BYTES, STORE_BYTES_WRITTEN, STORE_COMPACTED_BYTES,
    STORE_COMPACTION_RUNS, STORE_INDEX_LAG, STORE_RAW_BYTES_WRITTEN,
    STORE_RETENTION_DELETED_BLOCKS, STORE_SPANS_WRITTEN, STORE_STAGED_BYTES, STORE_UPLOAD_FAILURES,
    STORE_UPLOAD_LATENCY,
};
use crate::component::{Backlog, ComponentError, ExportError, Exporter, Health, TraceBatch};
use crate::store::compaction;
use crate::store::index::BlockMeta;
use crate::store::layout::{Layout, Partition};
use crate::store::live::{self, LiveView, QuerySource};
use crate::store::reader::StoreReader;
use crate::store::retention::{self, RetentionPolicy};
use crate::store::summary::TraceSummary;
use crate::store::writer::Rows;
use crate::store::writer::{BlockWriter, Written, promote, stage, stage_decoded, write_or_stage};
use crate::store::{SpanPredicate, TimeWindow};
use crate::store::{StoreError, WriteAheadLog};

/// How often buffers are checked for `max_block_age`.
const TICK: Duration = Duration::from_secs(1);
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// State shared by `export` and the background committer.
pub(crate) struct Shared {
    pub id: String,
    pub store: Arc<dyn ObjectStore>,
    pub layout: Layout,
    /// One reader for every query of this store, so its caches are shared.
    pub reader: StoreReader,
    /// Encoded blocks whose upload failed, whole (index included), in memory until the
    /// store takes them; read by queries like the store itself.
    pub staging: Arc<dyn ObjectStore>,
    pub staging_reader: StoreReader,
    /// The blocks in `staging`, oldest first.
    pub staged: parking_lot::Mutex<Vec<BlockMeta>>,
    pub writer: Mutex<BlockWriter>,
    pub wal: Option<Arc<dyn WriteAheadLog>>,
    /// The most uncommitted span bytes held before exports are refused.
    pub max_uncommitted: u64,
    /// The writer's `uncommitted_bytes`, readable without its lock.
    pub uncommitted: Arc<AtomicU64>,
    pub retention: Option<RetentionPolicy>,
    pub backoff: parking_lot::Mutex<Backoff>,
    /// Time between compaction runs, when compaction is enabled.
    pub compaction_interval: Option<Duration>,
    /// Wakes the committer when a buffer is full, so `export` never waits for an upload.
    pub full: tokio::sync::Notify,
    /// Woken when the committer has sealed open buffers (exports wait for it while the
    /// open buffers are over `max_buffer_bytes`).
    pub sealed: tokio::sync::Notify,
    /// The writer's indexed attribute keys (kept here so queries need not lock the writer).
    pub indexed_attributes: Vec<String>,
}

/// Exponential backoff of block uploads while object storage fails.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    retry_at: Option<Instant>,
    delay: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(60);

    fn after(&mut self, succeeded: bool) {
        if succeeded {
            *self = Backoff::default();
            return;
        }
        self.delay = (self.delay * 2).clamp(Self::FIRST, Self::MAX);
        self.retry_at = Some(Instant::now() + self.delay);
    }
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Shared {
    /// Waits while the open buffers are over `max_buffer_bytes`: the committer, busy
    /// encoding, has not sealed them yet. Without the wait, a store whose encoding is
    /// slower than its intake (one core for both) buffered gigabytes; with it, the wait
    /// reaches the senders as backpressure and memory stays near twice the budget (open
    /// buffers plus the sealed blocks being written).
    async fn wait_for_committer(&self) {
        loop {
            let sealed = self.sealed.notified();
            let over = {
                let writer = self.writer.lock().await;
                writer.buffered_bytes() > writer.config().max_buffer_bytes
            };
            if !over {
                return;
            }
            self.full.notify_one();
            // Rechecked now and then: a commit may end without sealing anything.
            let _ = tokio::time::timeout(Duration::from_secs(1), sealed).await;
        }
    }

    /// Moves staged blocks to the store, seals due blocks (all of them with `all`) and
    /// writes them; a block whose upload fails waits in staging. Returns the first failure.
    pub async fn commit(&self, all: bool) -> Result<(), StoreError> {
        // While storage fails, background attempts leave it alone until the backoff ends
        // (a flush or shutdown always tries), but due blocks are still sealed and staged,
        // so open buffers stay within max_buffer_bytes during an outage.
        let backing_off = !all
            && self
                .backoff
                .lock()
                .retry_at
                .is_some_and(|at| Instant::now() < at);
        let (sealed, config) = {
            let mut writer = self.writer.lock().await;
            let millis = unix_now().as_millis() as u64;
            (
                writer.seal_due(Instant::now(), all, millis),
                writer.config().clone(),
            )
        };
        self.sealed.notify_waiters();
        if backing_off && sealed.is_empty() {
            return Ok(());
        }
        let mut first_error = if backing_off {
            Some(StoreError::Upload(
                "object storage failing; waiting for the next attempt".into(),
            ))
        } else {
            self.promote_staged().await.err()
        };
        for block in sealed {
            let started = Instant::now();
            if let Some(wal) = &self.wal
                && let Err(error) = wal.note_block(&block.note()).await
            {
                tracing::warn!(exporter = %self.id, %error, "block not written: the log could not note it");
                self.writer.lock().await.restore(block, Instant::now());
                first_error.get_or_insert(error);
                continue;
            }
            // While the store fails, new blocks go straight to staging.
            let store = first_error.is_none().then_some(&self.store);
            let written = write_or_stage(store, &self.staging, &self.layout, &config, block).await;
            match written {
                Ok(Written::Committed(meta)) => {
                    histogram!(STORE_UPLOAD_LATENCY, "exporter" => self.id.clone())
                        .record(started.elapsed().as_secs_f64());
                    self.record_block(&meta);
                    self.writer.lock().await.committed(&meta.block_id);
                }
                Ok(Written::Staged { meta, error }) => {
                    if let Some(error) = error {
                        counter!(STORE_UPLOAD_FAILURES, "exporter" => self.id.clone()).increment(1);
                        tracing::warn!(exporter = %self.id, %error, "block upload failed; the encoded block waits in memory, its spans in the write-ahead log");
                        first_error = Some(error);
                    }
                    self.writer.lock().await.staged(&meta.block_id);
                    self.staged.lock().push(meta);
                }
                Err(failed) => {
                    let (error, block) = *failed;
                    tracing::warn!(exporter = %self.id, %error, "block encoding failed; its spans stay buffered");
                    self.writer.lock().await.restore(block, Instant::now());
                    first_error.get_or_insert(error);
                }
            }
        }
        self.release_wal().await?;
        self.update_gauges().await;
        if !backing_off {
            self.backoff.lock().after(first_error.is_none());
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Moves staged blocks to the store, oldest first; stops at the first failure (the
    /// store is still failing; the rest wait for the next attempt).
    async fn promote_staged(&self) -> Result<(), StoreError> {
        let waiting: Vec<BlockMeta> = self.staged.lock().clone();
        for meta in waiting {
            let started = Instant::now();
            if let Err(error) = promote(&self.staging, &self.store, &self.layout, &meta).await {
                counter!(STORE_UPLOAD_FAILURES, "exporter" => self.id.clone()).increment(1);
                tracing::warn!(exporter = %self.id, %error, staged = self.staged.lock().len(), "upload of a staged block failed");
                return Err(error);
            }
            histogram!(STORE_UPLOAD_LATENCY, "exporter" => self.id.clone())
                .record(started.elapsed().as_secs_f64());
            self.record_block(&meta);
            self.staged.lock().retain(|m| m.block_id != meta.block_id);
            self.writer.lock().await.committed(&meta.block_id);
        }
        Ok(())
    }

    fn record_block(&self, meta: &BlockMeta) {
        let id = self.id.clone();
        counter!(STORE_BLOCKS_WRITTEN, "exporter" => id.clone()).increment(1);
        counter!(STORE_SPANS_WRITTEN, "exporter" => id.clone()).increment(meta.span_count);
        counter!(STORE_RAW_BYTES_WRITTEN, "exporter" => id.clone()).increment(meta.raw_bytes);
        counter!(STORE_BYTES_WRITTEN, "exporter" => id.clone(), "table" => "spans")
            .increment(meta.spans_bytes);
        counter!(STORE_BYTES_WRITTEN, "exporter" => id, "table" => "traces")
            .increment(meta.traces_bytes);
    }

    /// Tells the write-ahead log which entries are now in committed blocks.
    async fn release_wal(&self) -> Result<(), StoreError> {
        if let Some(wal) = &self.wal {
            let through = self.writer.lock().await.committed_through();
            wal.committed_through(through).await?;
        }
        Ok(())
    }

    async fn update_gauges(&self) {
        let staged: u64 = self
            .staged
            .lock()
            .iter()
            .map(|m| m.spans_bytes + m.traces_bytes)
            .sum();
        gauge!(STORE_STAGED_BYTES, "exporter" => self.id.clone()).set(staged as f64);
        let writer = self.writer.lock().await;
        gauge!(STORE_BUFFERED_BYTES, "exporter" => self.id.clone())
            .set(writer.buffered_bytes() as f64);
        let lag = writer
            .oldest_buffered()
            .map_or(0.0, |opened| opened.elapsed().as_secs_f64());
        gauge!(STORE_INDEX_LAG, "exporter" => self.id.clone()).set(lag);
    }

    async fn compact(&self) {
        let config = self.writer.lock().await.config().clone();
        // Late spans still reach an hour shortly after it ends; leave it alone until then.
        let grace = (config.max_block_age * 2).max(Duration::from_secs(600));
        let now = unix_now().as_secs();
        match compaction::compact(&self.store, &self.layout, &config, grace, now).await {
            Ok(report) => {
                counter!(STORE_COMPACTION_RUNS, "exporter" => self.id.clone(), "result" => "ok")
                    .increment(1);
                counter!(STORE_COMPACTED_BYTES, "exporter" => self.id.clone())
                    .increment(report.raw_bytes);
            }
            Err(error) => {
                counter!(STORE_COMPACTION_RUNS, "exporter" => self.id.clone(), "result" => "failed")
                    .increment(1);
                tracing::warn!(exporter = %self.id, %error, "compaction run failed");
            }
        }
    }

    async fn apply_retention(&self) {
        let Some(policy) = &self.retention else {
            return;
        };
        match retention::apply(&self.store, &self.layout, policy, unix_now().as_secs()).await {
            Ok(report) => counter!(STORE_RETENTION_DELETED_BLOCKS, "exporter" => self.id.clone())
                .increment(report.blocks),
            Err(error) => tracing::warn!(exporter = %self.id, %error, "retention run failed"),
        }
    }
}

/// Writes batches into the trace store.
pub struct TraceStoreExporter {
    shared: Arc<Shared>,
    next_seq: u64,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl TraceStoreExporter {
    pub(crate) fn new(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
            next_seq: 0,
            cancel: CancellationToken::new(),
            tasks: Vec::new(),
        }
    }

    /// A reader over the same store (what this exporter committed is visible through it).
    pub fn reader(&self) -> crate::store::reader::StoreReader {
        self.shared.reader.clone()
    }

    /// Blocks waiting in staging, and the column chunks the writer holds for `tenant`.
    #[cfg(test)]
    pub(crate) async fn held(&self, tenant: &str) -> (usize, usize) {
        let staged = self.shared.staged_of(tenant).len();
        (staged, self.shared.live_rows(tenant).await.len())
    }

    /// Rebuilds blocks from what the write-ahead log still holds (after a crash).
    async fn replay(&mut self) -> Result<(), StoreError> {
        let Some(wal) = self.shared.wal.clone() else {
            return Ok(());
        };
        let entries = wal.replay().await?;
        if entries.is_empty() {
            return Ok(());
        }
        let committed = self.committed_entries(wal.as_ref()).await?;
        let mut writer = self.shared.writer.lock().await;
        let mut skipped = 0;
        for (seq, batch) in entries {
            let bytes = batch.iter().map(|rs| rs.encoded_len() as u64).sum();
            let (kept, done): (Vec<_>, Vec<_>) = stage_decoded(&batch, bytes)?
                .into_iter()
                .partition(|s| !committed.contains(&(s.partition.clone(), seq)));
            skipped += done.iter().map(|s| s.chunk.len()).sum::<usize>();
            writer.insert(kept, seq, Instant::now());
            self.next_seq = self.next_seq.max(seq);
        }
        if skipped > 0 {
            tracing::info!(exporter = %self.shared.id, spans = skipped, "replay skipped spans a block had committed before the crash");
        }
        Ok(())
    }

    /// (partition, entry) pairs whose spans are in a committed block: noted blocks whose
    /// index exists. The process stopped after writing their index and before releasing
    /// their entries; replaying those would store the spans twice.
    async fn committed_entries(
        &self,
        wal: &dyn WriteAheadLog,
    ) -> Result<HashSet<(Partition, u64)>, StoreError> {
        let mut committed = HashSet::new();
        for note in wal.block_notes().await? {
            let index = self.shared.layout.index(&note.tenant, &note.block_id);
            match self.shared.store.head(&index).await {
                Ok(_) => {
                    let partition = Partition {
                        tenant: note.tenant.clone(),
                        hour: note.hour,
                    };
                    committed.extend(note.seqs.iter().map(|s| (partition.clone(), *s)));
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(committed)
    }

    fn spawn_committer(&mut self) {
        let shared = self.shared.clone();
        let cancel = self.cancel.clone();
        self.tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(TICK) => {}
                    _ = shared.full.notified() => {}
                }
                // Failures are logged and counted; the spans stay buffered for the next tick.
                let _ = shared.commit(false).await;
            }
        }));
    }

    fn spawn_retention(&mut self) {
        if self.shared.retention.is_none() {
            return;
        }
        let shared = self.shared.clone();
        let cancel = self.cancel.clone();
        self.tasks.push(tokio::spawn(async move {
            loop {
                shared.apply_retention().await;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(RETENTION_EVERY) => {}
                }
            }
        }));
    }

    fn spawn_compaction(&mut self) {
        let Some(interval) = self.shared.compaction_interval else {
            return;
        };
        let shared = self.shared.clone();
        let cancel = self.cancel.clone();
        self.tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(interval) => {}
                }
                shared.compact().await;
            }
        }));
    }

    /// The next sequence number: the log's, or a local counter when there is no log.
    async fn record(&mut self, batch: &TraceBatch) -> Result<u64, ExportError> {
        match &self.shared.wal {
            Some(wal) => wal
                .append(batch)
                .await
                .map_err(|e| ExportError::retryable(format!("write-ahead log: {e}"))),
            None => {
                self.next_seq += 1;
                Ok(self.next_seq)
            }
        }
    }
}

/// Spans accepted and not yet in committed blocks, against `wal_max_bytes`.
struct Uncommitted {
    held: Arc<AtomicU64>,
    limit: u64,
}

impl Backlog for Uncommitted {
    fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    fn limit_bytes(&self) -> u64 {
        self.limit
    }
}

#[async_trait]
impl Exporter for TraceStoreExporter {
    async fn start(&mut self) -> Result<(), ComponentError> {
        self.replay()
            .await
            .map_err(|e| ComponentError::other(&self.shared.id, format!("replay: {e}")))?;
        self.spawn_committer();
        self.spawn_retention();
        self.spawn_compaction();
        Ok(())
    }

    async fn export(&mut self, batch: &TraceBatch) -> Result<(), ExportError> {
        // Staged before the log sees the batch (a span the store cannot take, or an invalid
        // tenant, is refused without being logged: retrying cannot fix it, and a refused
        // batch must never be replayed) and outside the writer's lock (queries keep reading).
        let encoded;
        let parts = match batch.wire_parts() {
            Some(parts) => parts,
            None => {
                encoded = [batch.encode_request()];
                &encoded[..]
            }
        };
        let staged = stage(parts, batch.size_hint() as u64)
            .map_err(|e| ExportError::permanent(e.to_string()))?;
        // Checked after staging: a batch the store can never take is refused as such,
        // not as one to retry.
        let buffered = self.shared.uncommitted.load(Ordering::Relaxed);
        // An empty store always takes a batch, so one oversized batch cannot wedge it.
        if buffered > 0 && buffered + batch.size_hint() as u64 > self.shared.max_uncommitted {
            return Err(ExportError::Retryable {
                message: format!(
                    "{buffered} bytes of spans wait for object storage (wal_max_bytes {})",
                    self.shared.max_uncommitted
                ),
                retry_after: Some(Duration::from_secs(5)),
            });
        }
        let seq = self.record(batch).await?;
        self.shared
            .writer
            .lock()
            .await
            .insert(staged, seq, Instant::now());
        // Encoding and uploading a full block takes seconds: the committer task does it,
        // and `wal_max_bytes` pushes back if it falls behind.
        self.shared.full.notify_one();
        self.shared.wait_for_committer().await;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ExportError> {
        self.shared
            .commit(true)
            .await
            .map_err(|e| ExportError::retryable(e.to_string()))
    }

    async fn shutdown(&mut self) {
        self.cancel.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        if let Err(error) = self.shared.commit(true).await {
            tracing::error!(exporter = %self.shared.id, %error, "blocks not committed at shutdown");
        }
    }

    async fn healthcheck(&mut self) -> Health {
        let buffered = self.shared.uncommitted.load(Ordering::Relaxed);
        if buffered > self.shared.max_uncommitted / 2 {
            return Health::Unhealthy(format!("{buffered} bytes of spans wait for object storage"));
        }
        Health::Healthy
    }

    fn durable(&self) -> bool {
        self.shared.wal.is_some()
    }

    /// The store decodes each batch itself when it converts it. Batches reach it as the
    /// bytes they arrived in where nothing before it reads spans: they wait in its queue in
    /// that form (a batch holding both its bytes and its decoded spans took 12-20 % more
    /// peak memory on the store benchmark), and its write-ahead log writes those bytes.
    fn reads_spans(&self) -> bool {
        false
    }

    fn backlog(&self) -> Option<Arc<dyn Backlog>> {
        Some(Arc::new(Uncommitted {
            held: self.shared.uncommitted.clone(),
            limit: self.shared.max_uncommitted,
        }))
    }

    fn query_source(&self) -> Option<QuerySource> {
        let live: Arc<dyn LiveView> = self.shared.clone();
        Some(QuerySource {
            reader: self.shared.reader.clone(),
            live: Some(live),
            indexed_attributes: self.shared.indexed_attributes.clone(),
        })
    }
}

impl Shared {
    /// Shared handles on the tenant's uncommitted spans; the search runs after the lock
    /// is released, so exports never wait for a query.
    async fn live_rows(&self, tenant: &str) -> Vec<Rows> {
        self.writer.lock().await.live_rows(tenant)
    }
}

#[async_trait]
impl LiveView for Shared {
    async fn trace(
        &self,
        tenant: &str,
        trace_id: &[u8],
    ) -> Vec<opentelemetry_proto::tonic::trace::v1::ResourceSpans> {
        let mut spans = live::rows_trace(&self.live_rows(tenant).await, trace_id);
        if !self.staged_of(tenant).is_empty() {
            match self.staging_reader.trace(tenant, trace_id).await {
                Ok(found) => spans.extend(found),
                Err(error) => staged_unreadable(&error),
            }
        }
        spans
    }

    async fn summaries(&self, tenant: &str, window: TimeWindow) -> Vec<TraceSummary> {
        let rows = self.live_rows(tenant).await;
        let indexed = self.indexed_attributes.clone();
        let mut found = off_thread(move || live::rows_summaries(&rows, window, &indexed)).await;
        for meta in self.staged_of(tenant) {
            match self.staging_reader.summaries(&meta, Some(window)).await {
                Ok(parts) => found.extend(parts),
                Err(error) => staged_unreadable(&error),
            }
        }
        found
    }

    async fn scan(
        &self,
        tenant: &str,
        window: TimeWindow,
        predicate: &SpanPredicate,
    ) -> Vec<[u8; 16]> {
        let rows = self.live_rows(tenant).await;
        let owned = predicate.clone();
        let mut ids = off_thread(move || live::rows_scan(&rows, window, &owned)).await;
        for meta in self.staged_of(tenant) {
            match self.staging_reader.scan(&meta, window, predicate).await {
                Ok(found) => ids.extend(found),
                Err(error) => staged_unreadable(&error),
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

impl Shared {
    /// The tenant's blocks waiting in staging.
    fn staged_of(&self, tenant: &str) -> Vec<BlockMeta> {
        let staged = self.staged.lock();
        staged
            .iter()
            .filter(|m| m.tenant == tenant)
            .cloned()
            .collect()
    }
}

fn staged_unreadable(error: &StoreError) {
    tracing::warn!(%error, "a block waiting for upload could not be read back");
}

/// Summarising or scanning a full buffer takes a while: keep it off the async threads.
async fn off_thread<T: Default + Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(out) => out,
        Err(error) => {
            tracing::warn!(%error, "live trace query failed");
            T::default()
        }
    }
}
