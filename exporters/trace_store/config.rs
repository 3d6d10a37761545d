//! The trace_store exporter's configuration (Tempo's names where the concept exists).

use std::collections::BTreeMap;

use crate::component::tenant::validate_tenant_id;
use crate::component::{ByteSize, ComponentConfig, HumanDuration, Problems};
use crate::store::location::Location;
use crate::store::writer::WriterConfig;

/// How Parquet pages are compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    None,
}

/// Per-tenant overrides.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantOverrides {
    /// Duration: how long this tenant's traces are kept; unset uses `retention`.
    pub retention: Option<HumanDuration>,
}

/// Merging small blocks of closed partitions.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionConfig {
    /// Bool: merge the small blocks of closed hour partitions into blocks near
    /// `max_block_bytes`.
    pub enabled: bool,
    /// Duration: time between compaction runs.
    pub interval: HumanDuration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: HumanDuration::from_secs(600),
        }
    }
}

/// Writes every span into the Parquet trace store on object storage.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceStoreConfig {
    /// URL: file:///abs/dir, file://./relative/dir (to the working directory), memory://,
    /// s3://bucket/prefix, gs://bucket/prefix or az://container/prefix.
    pub url: String,
    /// Key → value passed to the object store client (endpoint, region, allow_http, ...);
    /// credentials come from the environment (AWS_ACCESS_KEY_ID, ...), not from here.
    pub options: BTreeMap<String, String>,
    /// Path: directory of the write-ahead log.
    pub wal_dir: String,
    /// Bytes: the most accepted-but-uncommitted span data held; beyond it exports are
    /// refused as retryable so backpressure reaches the senders.
    pub wal_max_bytes: ByteSize,
    /// Bytes: a block is cut once its spans' OTLP size reaches this (uncompressed).
    pub max_block_bytes: ByteSize,
    /// Bytes: the OTLP size of all open blocks together (every tenant and hour); above it
    /// the largest is cut early, so memory stays bounded however many tenants write.
    pub max_buffer_bytes: ByteSize,
    /// Duration: a block is cut once its oldest span has waited this long.
    pub max_block_age: HumanDuration,
    /// Spans per Parquet row group of the span table.
    pub row_group_spans: usize,
    /// zstd | none.
    pub compression: Compression,
    /// Attribute keys whose values the trace summary table keeps for search.
    pub indexed_attributes: Vec<String>,
    /// Ratio: false-positive rate of each block's trace-id bloom filter (0 < x < 1).
    pub bloom_false_positive_rate: f64,
    /// Duration: how long traces are kept; 0 keeps them forever.
    pub retention: HumanDuration,
    /// Tenant id → overrides.
    pub tenants: BTreeMap<String, TenantOverrides>,
    /// Merging small blocks.
    pub compaction: CompactionConfig,
}

impl Default for TraceStoreConfig {
    fn default() -> Self {
        Self {
            url: "file://./spanline-data".to_string(),
            options: BTreeMap::new(),
            wal_dir: "./spanline-data/wal".to_string(),
            wal_max_bytes: ByteSize(2 << 30),
            max_block_bytes: ByteSize::mib(128),
            max_buffer_bytes: ByteSize::mib(256),
            max_block_age: HumanDuration::from_secs(300),
            row_group_spans: 250_000,
            compression: Compression::Zstd,
            indexed_attributes: [
                "http.route",
                "http.status_code",
                "http.method",
                "db.system",
                "deployment.environment",
            ]
            .map(String::from)
            .to_vec(),
            bloom_false_positive_rate: 0.01,
            retention: HumanDuration::from_secs(14 * 86_400),
            tenants: BTreeMap::new(),
            compaction: CompactionConfig::default(),
        }
    }
}

impl ComponentConfig for TraceStoreConfig {
    fn validate(&self, problems: &mut Problems) {
        self.validate_location(problems);
        if self.max_block_bytes.bytes() < 1 << 20 {
            problems.error(
                "max_block_bytes",
                format!("must be at least 1MiB, got {}", self.max_block_bytes),
            );
        }
        if self.wal_max_bytes.bytes() < self.max_block_bytes.bytes() {
            problems.error(
                "wal_max_bytes",
                format!(
                    "must be at least max_block_bytes ({}), got {}",
                    self.max_block_bytes, self.wal_max_bytes
                ),
            );
        }
        if self.max_buffer_bytes.bytes() < 1 << 20 {
            problems.error(
                "max_buffer_bytes",
                format!("must be at least 1MiB, got {}", self.max_buffer_bytes),
            );
        }
        if self.max_block_age.is_zero() {
            problems.error("max_block_age", "must be greater than 0");
        }
        if self.row_group_spans == 0 {
            problems.error("row_group_spans", "must be greater than 0, got 0");
        }
        let fpp = self.bloom_false_positive_rate;
        if !(fpp > 0.0 && fpp < 1.0) {
            problems.error(
                "bloom_false_positive_rate",
                format!("must be between 0 and 1 (exclusive), got {fpp}"),
            );
        }
        for (i, key) in self.indexed_attributes.iter().enumerate() {
            if key.is_empty() {
                problems.error(format!("indexed_attributes[{i}]"), "must not be empty");
            }
        }
        self.validate_tenants(problems);
        if self.compaction.enabled && self.compaction.interval.is_zero() {
            problems.error("compaction::interval", "must be greater than 0");
        }
    }
}

impl TraceStoreConfig {
    fn validate_location(&self, problems: &mut Problems) {
        match Location::parse(&self.url) {
            Err(message) => problems.error("url", format!("{message}, got {:?}", self.url)),
            Ok(location) => {
                for key in self.options.keys() {
                    if location.unknown_option(key) {
                        problems.error(
                            format!("options::{key}"),
                            "is not an option of this store (S3: endpoint, region, allow_http, ...; GCS: service_account, base_url, ...; Azure: account_name, endpoint, use_emulator, ...; file:// and memory:// take none)",
                        );
                    }
                }
            }
        }
        if self.wal_dir.is_empty() {
            problems.error("wal_dir", "is required: a local directory");
        }
    }

    fn validate_tenants(&self, problems: &mut Problems) {
        for (tenant, overrides) in &self.tenants {
            if let Err(message) = validate_tenant_id(tenant) {
                problems.error(format!("tenants::{tenant}"), message);
            }
            if overrides.retention.is_some_and(|r| r.is_zero()) && !self.retention.is_zero() {
                problems.warning(
                    format!("tenants::{tenant}::retention"),
                    "0 keeps this tenant's traces forever",
                );
            }
        }
    }

    /// The block writer's settings.
    pub fn writer(&self) -> WriterConfig {
        WriterConfig {
            max_block_bytes: self.max_block_bytes.bytes(),
            max_buffer_bytes: self.max_buffer_bytes.bytes(),
            max_block_age: self.max_block_age.get(),
            row_group_spans: self.row_group_spans,
            zstd_level: match self.compression {
                Compression::Zstd => Some(3),
                Compression::None => None,
            },
            indexed_attributes: self.indexed_attributes.clone(),
            bloom_false_positive_rate: self.bloom_false_positive_rate,
        }
    }
}
