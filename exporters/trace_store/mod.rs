//! The `trace_store` exporter: writes spans into the Parquet trace store (`crate::store`).

#[cfg(test)]
mod azure_tests;
mod config;
mod exporter;
#[cfg(test)]
mod live_tests;
#[cfg(test)]
mod outside_tests;
#[cfg(test)]
mod s3_tests;
#[cfg(test)]
mod test_server;
#[cfg(test)]
mod tests;
mod wal_log;

pub use config::{CompactionConfig, Compression, TenantOverrides, TraceStoreConfig};
pub use exporter::TraceStoreExporter;
pub use wal_log::FileWal;

use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;
use tokio::sync::Mutex;

use crate::component::{BuildContext, ComponentError, Exporter, ExporterFactory};
use crate::store::WriteAheadLog;
use crate::store::layout::Layout;
use crate::store::location::Location;
use crate::store::reader::StoreReader;
use crate::store::retention::RetentionPolicy;
use crate::store::writer::BlockWriter;

/// Builds `trace_store` exporters.
pub struct TraceStoreExporterFactory;

impl ExporterFactory for TraceStoreExporterFactory {
    type Config = TraceStoreConfig;
    const TYPE: &'static str = "trace_store";
    const EXAMPLE_YAML: &'static str = "trace_store:
  url: file://./spanline-data
  wal_dir: ./spanline-data/wal
  wal_max_bytes: 2GiB
  max_block_bytes: 128MiB
  max_buffer_bytes: 256MiB
  max_block_age: 5m
  row_group_spans: 250000
  compression: zstd
  indexed_attributes: [http.route, http.status_code, http.method, db.system, deployment.environment]
  bloom_false_positive_rate: 0.01
  retention: 14d
  tenants:
    acme: { retention: 30d }
  compaction: { enabled: true, interval: 10m }
";

    fn build(
        &self,
        config: TraceStoreConfig,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Exporter>, ComponentError> {
        // The log is opened (and recovered) at build so a damaged or locked `wal_dir` stops
        // startup with its path; `start` then replays what it holds into new blocks.
        let wal = FileWal::open(Path::new(&config.wal_dir), config.wal_max_bytes.bytes()).map_err(
            |e| ComponentError::other(&ctx.id, format!("wal_dir {}: {e}", config.wal_dir)),
        )?;
        Ok(Box::new(build_exporter(
            &config,
            &ctx.id,
            Some(Arc::new(wal)),
        )?))
    }
}

/// Builds the exporter over `wal` (the write-ahead log under `wal_dir`; without one, as in
/// some tests, the exporter is not durable and says so through `Exporter::durable`).
pub fn build_exporter(
    config: &TraceStoreConfig,
    id: &str,
    wal: Option<Arc<dyn WriteAheadLog>>,
) -> Result<TraceStoreExporter, ComponentError> {
    let location = Location::parse(&config.url).map_err(|e| ComponentError::other(id, e))?;
    // Opening a local store creates its directory: the one IO done at build.
    let (store, layout) = location
        .open(&config.url, &config.options)
        .map_err(|e| ComponentError::other(id, e.to_string()))?;
    Ok(exporter_on(config, id, wal, store, layout))
}

/// Builds the exporter over an already opened store (`config.url` is not used).
pub fn exporter_on(
    config: &TraceStoreConfig,
    id: &str,
    wal: Option<Arc<dyn WriteAheadLog>>,
    store: Arc<dyn ObjectStore>,
    layout: Layout,
) -> TraceStoreExporter {
    let writer = BlockWriter::new(config.writer());
    let staging: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    TraceStoreExporter::new(exporter::Shared {
        id: id.to_string(),
        reader: StoreReader::new(store.clone(), layout.clone()),
        staging: staging.clone(),
        staging_reader: StoreReader::new(staging, layout.clone()),
        staged: Default::default(),
        store,
        layout,
        indexed_attributes: writer.config().indexed_attributes.clone(),
        uncommitted: writer.uncommitted_counter(),
        writer: Mutex::new(writer),
        wal,
        max_uncommitted: config.wal_max_bytes.bytes(),
        retention: retention_policy(config),
        backoff: Default::default(),
        full: Default::default(),
        sealed: Default::default(),
        compaction_interval: config
            .compaction
            .enabled
            .then(|| config.compaction.interval.get()),
    })
}

/// `None` when traces are kept forever.
fn retention_policy(config: &TraceStoreConfig) -> Option<RetentionPolicy> {
    let mut tenants = std::collections::BTreeMap::new();
    for (tenant, overrides) in &config.tenants {
        if let Some(retention) = overrides.retention {
            // 0 means forever: a very long retention never expires anything.
            let keep = if retention.is_zero() {
                std::time::Duration::MAX / 4
            } else {
                retention.get()
            };
            tenants.insert(tenant.clone(), keep);
        }
    }
    if config.retention.is_zero() && tenants.is_empty() {
        return None;
    }
    let default = if config.retention.is_zero() {
        std::time::Duration::MAX / 4
    } else {
        config.retention.get()
    };
    Some(RetentionPolicy { default, tenants })
}
