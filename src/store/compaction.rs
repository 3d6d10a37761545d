//! Compaction: merges the small blocks of a closed hour partition into blocks near the
//! target size. The merged block's index names the blocks it replaces, so readers skip
//! them from the moment it exists; the inputs are deleted afterwards, and a run after a
//! crash finishes any deletion left undone.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::time::Instant;

use super::StoreError;
use super::index::BlockMeta;
use super::layout::Layout;
use super::reader::StoreReader;
use super::writer::{BlockWriter, WriterConfig, write_block};

/// What one compaction run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactionReport {
    /// Blocks written by merging.
    pub written: u64,
    /// Input blocks deleted (including those left over by an interrupted run).
    pub deleted: u64,
    /// OTLP bytes of the spans rewritten.
    pub raw_bytes: u64,
}

/// Compacts every closed partition of every tenant. A partition is closed once its hour
/// ended more than `grace` ago (late spans still arrive shortly after the hour).
pub async fn compact(
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
    config: &WriterConfig,
    grace: Duration,
    now_unix_secs: u64,
) -> Result<CompactionReport, StoreError> {
    let reader = StoreReader::new(store.clone(), layout.clone());
    let mut report = CompactionReport::default();
    for tenant in reader.tenants().await? {
        let all = reader.all_blocks(&tenant).await?;
        let replaced: HashSet<String> = all.iter().flat_map(|m| m.compacted_from.clone()).collect();
        let mut by_hour: BTreeMap<u64, Vec<BlockMeta>> = BTreeMap::new();
        for meta in all {
            if replaced.contains(&meta.block_id) {
                delete_block(store, layout, &meta).await?;
                report.deleted += 1;
            } else {
                by_hour.entry(meta.partition_hour).or_default().push(meta);
            }
        }
        for (hour, blocks) in by_hour {
            let closed = (hour + 1) * 3600 + grace.as_secs() <= now_unix_secs;
            if closed {
                compact_partition(&reader, store, layout, config, blocks, &mut report).await?;
            }
        }
    }
    Ok(report)
}

/// Groups the partition's small blocks (under half the target) into runs whose total stays
/// under the target; each run of two or more becomes one block.
fn plan(blocks: Vec<BlockMeta>, target: u64) -> Vec<Vec<BlockMeta>> {
    let mut runs: Vec<Vec<BlockMeta>> = Vec::new();
    let mut current: Vec<BlockMeta> = Vec::new();
    let mut size = 0;
    for meta in blocks.into_iter().filter(|m| m.raw_bytes < target / 2) {
        if size + meta.raw_bytes > target && !current.is_empty() {
            runs.push(std::mem::take(&mut current));
            size = 0;
        }
        size += meta.raw_bytes;
        current.push(meta);
    }
    runs.push(current);
    runs.retain(|run| run.len() >= 2);
    runs
}

async fn compact_partition(
    reader: &StoreReader,
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
    config: &WriterConfig,
    blocks: Vec<BlockMeta>,
    report: &mut CompactionReport,
) -> Result<(), StoreError> {
    for run in plan(blocks, config.max_block_bytes) {
        let mut writer = BlockWriter::new(config.clone());
        let now = Instant::now();
        for meta in &run {
            writer.add(&reader.block_spans(meta).await?, 0, now)?;
        }
        let millis = run
            .iter()
            .map(|m| m.max_end_unix_nano / 1_000_000)
            .max()
            .unwrap_or(0);
        for mut block in writer.seal_due(now, true, millis) {
            block.compacted_from = run.iter().map(|m| m.block_id.clone()).collect();
            let meta = write_block(store, layout, config, block)
                .await
                .map_err(|failed| failed.0)?;
            report.written += 1;
            report.raw_bytes += meta.raw_bytes;
        }
        for meta in &run {
            delete_block(store, layout, meta).await?;
            report.deleted += 1;
        }
    }
    Ok(())
}

/// Deletes a block: its index first (so it is never half visible), then its files.
async fn delete_block(
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
    meta: &BlockMeta,
) -> Result<(), StoreError> {
    let index = layout.index(&meta.tenant, &meta.block_id);
    for path in [
        index,
        Path::from(meta.spans_path.as_str()),
        Path::from(meta.traces_path.as_str()),
    ] {
        match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
