//! The block index object: what a reader needs to skip a block without opening it.

use super::bloom::Bloom;
use super::convert::{SpanRow, hex};
use super::layout::Partition;
use super::schema::FORMAT_VERSION;
use super::summary::trace_runs;

/// Trace-id bounds of one row group of the span file (hex, inclusive).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowGroupBounds {
    pub min_trace_id: String,
    pub max_trace_id: String,
    pub rows: u64,
}

/// `{root}/index/tenant={t}/{block}.json`: written after both Parquet files.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BlockMeta {
    pub format_version: u32,
    pub block_id: String,
    pub tenant: String,
    /// Hours since the epoch of the block's partition.
    pub partition_hour: u64,
    /// `date=YYYY-MM-DD/hour=HH`, for humans and retention.
    pub partition: String,
    pub min_start_unix_nano: u64,
    pub max_end_unix_nano: u64,
    pub min_trace_id: String,
    pub max_trace_id: String,
    pub span_count: u64,
    pub trace_count: u64,
    /// Approximate OTLP protobuf bytes of the spans (uncompressed).
    pub raw_bytes: u64,
    pub spans_bytes: u64,
    pub traces_bytes: u64,
    pub spans_path: String,
    pub traces_path: String,
    pub row_groups: Vec<RowGroupBounds>,
    pub bloom: Bloom,
    /// Blocks this one replaces (written by compaction): readers skip them from the moment
    /// this index exists, so a crash before their deletion shows no duplicates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compacted_from: Vec<String>,
}

impl BlockMeta {
    /// Describes a block of rows sorted by trace id; sizes and paths are filled in later.
    pub fn describe(
        block_id: &str,
        partition: &Partition,
        rows: &[&SpanRow],
        row_group_spans: usize,
        fpp: f64,
    ) -> Self {
        let traces = trace_runs(rows).count();
        let mut bloom = Bloom::new(traces, fpp);
        for run in trace_runs(rows) {
            bloom.insert(&run[0].span.trace_id);
        }
        let mut row_groups = Vec::new();
        for chunk in rows.chunks(row_group_spans.max(1)) {
            row_groups.push(RowGroupBounds {
                min_trace_id: hex(&chunk[0].span.trace_id),
                max_trace_id: hex(&chunk[chunk.len() - 1].span.trace_id),
                rows: chunk.len() as u64,
            });
        }
        let first_last = |f: fn(&SpanRow) -> u64| rows.iter().copied().map(f);
        Self {
            format_version: FORMAT_VERSION,
            block_id: block_id.to_string(),
            tenant: partition.tenant.clone(),
            partition_hour: partition.hour,
            partition: partition.date_hour(),
            min_start_unix_nano: first_last(|r| r.span.start_time_unix_nano)
                .min()
                .unwrap_or(0),
            max_end_unix_nano: first_last(|r| r.span.end_time_unix_nano).max().unwrap_or(0),
            min_trace_id: rows
                .first()
                .map(|r| hex(&r.span.trace_id))
                .unwrap_or_default(),
            max_trace_id: rows
                .last()
                .map(|r| hex(&r.span.trace_id))
                .unwrap_or_default(),
            span_count: rows.len() as u64,
            trace_count: traces as u64,
            raw_bytes: 0,
            spans_bytes: 0,
            traces_bytes: 0,
            spans_path: String::new(),
            traces_path: String::new(),
            row_groups,
            bloom,
            compacted_from: Vec::new(),
        }
    }

    /// Whether the block may hold `trace_id` (range check, then the bloom filter).
    pub fn may_contain(&self, trace_id: &[u8]) -> bool {
        let id = hex(trace_id);
        id >= self.min_trace_id && id <= self.max_trace_id && self.bloom.may_contain(trace_id)
    }

    /// Indexes of the row groups whose trace-id range covers `trace_id`.
    pub fn row_groups_for(&self, trace_id: &[u8]) -> Vec<usize> {
        let id = hex(trace_id);
        let mut out = Vec::new();
        for (i, rg) in self.row_groups.iter().enumerate() {
            if id >= rg.min_trace_id && id <= rg.max_trace_id {
                out.push(i);
            }
        }
        out
    }
}
