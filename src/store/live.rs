//! Spans not yet in a committed block (open buffers, blocks still uploading), made
//! queryable, and what a query engine needs to read one trace store.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use super::StoreError;
use super::chunk::Chunk;
use super::convert::view_text;
use super::reader::StoreReader;
use super::summary::{TraceSummary, fixed_id, merge_by_trace};
use super::writer::Rows;
use super::{SpanPredicate, TimeWindow};
use crate::component::wire::view::ValueView;

/// Uncommitted spans of a store. A span may be both here and in the store for a moment
/// (its block's index is written before the writer forgets it), so callers read the live
/// view *before* the store and merge: `merge_spans` for traces, `TraceSummary::merge` per
/// trace id for summaries (counts of a trace caught in that moment may be summed twice).
#[async_trait::async_trait]
pub trait LiveView: Send + Sync {
    /// The spans of one trace of `tenant` not yet in a committed block.
    async fn trace(&self, tenant: &str, trace_id: &[u8]) -> Vec<ResourceSpans>;
    /// Summaries of the uncommitted traces of `tenant` overlapping `window` (one per trace).
    async fn summaries(&self, tenant: &str, window: TimeWindow) -> Vec<TraceSummary>;
    /// Trace ids of uncommitted spans matching `predicate` with start time in `window`.
    async fn scan(
        &self,
        tenant: &str,
        window: TimeWindow,
        predicate: &SpanPredicate,
    ) -> Vec<[u8; 16]>;
}

/// What a query engine needs to read one trace store.
#[derive(Clone)]
pub struct QuerySource {
    pub reader: StoreReader,
    pub live: Option<Arc<dyn LiveView>>,
    /// Attribute keys whose values the summaries keep (searchable without a span scan).
    pub indexed_attributes: Vec<String>,
}

/// The spans of one trace among `chunks`, grouped by resource and scope.
pub fn rows_trace(chunks: &[Rows], trace_id: &[u8]) -> Vec<ResourceSpans> {
    let mut out = Vec::new();
    for chunk in chunks {
        // A chunk without the trace answers at once (its spans are sorted by trace id).
        match chunk.trace(trace_id) {
            Ok(groups) => out.extend(groups),
            Err(error) => tracing::warn!(%error, "uncommitted spans could not be read back"),
        }
    }
    out
}

/// One summary per trace among `chunks` that overlaps `window`, keeping the values of the
/// `indexed` attributes. Made from the spans on every call: summaries kept per batch cost
/// intake half as much memory again as the spans' bytes, for searches that may never come.
pub fn rows_summaries(
    chunks: &[Rows],
    window: TimeWindow,
    indexed: &[String],
) -> Vec<TraceSummary> {
    let mut parts = Vec::new();
    for chunk in chunks {
        match chunk.summaries(indexed) {
            Ok(summaries) => parts.extend(summaries),
            Err(error) => tracing::warn!(%error, "uncommitted spans could not be summarised"),
        }
    }
    let mut out: Vec<TraceSummary> = merge_by_trace(parts)
        .into_iter()
        .filter(|t| window.overlaps(t.start_unix_nano, t.end_unix_nano))
        .collect();
    out.sort_by_key(|t| (t.start_unix_nano, t.trace_id));
    out
}

/// Distinct trace ids of spans in `chunks` starting in `window` and matching `predicate`
/// on their own or their resource's attributes. Read in place from the buffered requests:
/// a search of uncommitted spans builds no columns.
pub fn rows_scan(chunks: &[Rows], window: TimeWindow, predicate: &SpanPredicate) -> Vec<[u8; 16]> {
    let mut ids = BTreeSet::new();
    for chunk in chunks {
        if let Err(error) = scan_chunk(chunk, window, predicate, &mut ids) {
            tracing::warn!(%error, "uncommitted spans could not be searched");
        }
    }
    ids.into_iter().collect()
}

fn scan_chunk(
    chunk: &Chunk,
    window: TimeWindow,
    predicate: &SpanPredicate,
    ids: &mut BTreeSet<[u8; 16]>,
) -> Result<(), StoreError> {
    // The value compared in its text form, as the span table stores it.
    let matches = |key: &str, value: ValueView<'_>| {
        key == predicate.key
            && match value {
                ValueView::Text(text) => text == predicate.value,
                other => view_text(other) == predicate.value,
            }
    };
    let origins = chunk.origins()?;
    for i in 0..chunk.len() {
        let row = chunk.row(&origins, i)?;
        if !window.contains(row.span.start) {
            continue;
        }
        let mut hit = row.origin.resource.iter().any(|&(k, v)| matches(k, v));
        if !hit {
            row.span.for_each_attribute(|k, v| hit |= matches(k, v))?;
        }
        if hit {
            ids.insert(fixed_id(row.span.trace_id));
        }
    }
    Ok(())
}

/// Merges trace reads from several sources (the live view, blocks that overlap after a
/// compaction or a write-ahead-log replay), keeping the first copy of each span, keyed by
/// (trace id, span id). Resource and scope groups are kept as they come.
pub fn merge_spans(parts: Vec<Vec<ResourceSpans>>) -> Vec<ResourceSpans> {
    let mut seen: HashSet<(Vec<u8>, Vec<u8>)> = HashSet::new();
    let mut out = Vec::new();
    for mut rs in parts.into_iter().flatten() {
        for ss in &mut rs.scope_spans {
            ss.spans
                .retain(|s| seen.insert((s.trace_id.clone(), s.span_id.clone())));
        }
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
        if !rs.scope_spans.is_empty() {
            out.push(rs);
        }
    }
    out
}
