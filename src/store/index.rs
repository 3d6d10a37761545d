//! The block index object: what a reader needs to skip a block without opening it.

use super::bloom::Bloom;
use super::convert::hex;
use super::layout::Partition;
use super::schema::FORMAT_VERSION;

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
    /// Describes a block from the trace id of each of its spans, in the span table's order
    /// (sorted), and the time its spans cover; sizes and paths are filled in later.
    pub fn describe(
        block_id: &str,
        partition: &Partition,
        span_trace_ids: &[[u8; 16]],
        (min_start_unix_nano, max_end_unix_nano): (u64, u64),
        row_group_spans: usize,
        fpp: f64,
    ) -> Self {
        let distinct = || span_trace_ids.chunk_by(|a, b| a == b).map(|run| &run[0]);
        let traces = distinct().count();
        let mut bloom = Bloom::new(traces, fpp);
        for id in distinct() {
            bloom.insert(id);
        }
        let row_groups = span_trace_ids
            .chunks(row_group_spans.max(1))
            .map(|chunk| RowGroupBounds {
                min_trace_id: hex(&chunk[0]),
                max_trace_id: hex(&chunk[chunk.len() - 1]),
                rows: chunk.len() as u64,
            })
            .collect();
        Self {
            format_version: FORMAT_VERSION,
            block_id: block_id.to_string(),
            tenant: partition.tenant.clone(),
            partition_hour: partition.hour,
            partition: partition.date_hour(),
            min_start_unix_nano,
            max_end_unix_nano,
            min_trace_id: span_trace_ids.first().map(|id| hex(id)).unwrap_or_default(),
            max_trace_id: span_trace_ids.last().map(|id| hex(id)).unwrap_or_default(),
            span_count: span_trace_ids.len() as u64,
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
