//! Spans not yet in a committed block (open buffers, blocks still uploading), made
//! queryable, and what a query engine needs to read one trace store.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

use super::convert::{Origin, SpanRow};
use super::reader::StoreReader;
use super::summary::{TraceSummary, fixed_id, summarise};
use super::writer::Rows;
use super::{SpanPredicate, TimeWindow};

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
    let rows = chunks
        .iter()
        .flat_map(|c| c.iter())
        .filter(|r| r.span.trace_id == trace_id);
    group_by_origin(rows)
}

fn group_by_origin<'a>(rows: impl Iterator<Item = &'a SpanRow>) -> Vec<ResourceSpans> {
    let mut out: Vec<ResourceSpans> = Vec::new();
    // Rows of one batch share their origin, so the pointer identifies the group.
    let mut groups: HashMap<*const Origin, usize> = HashMap::new();
    for row in rows {
        let index = *groups.entry(Arc::as_ptr(&row.origin)).or_insert_with(|| {
            out.push(ResourceSpans {
                resource: Some(row.origin.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(row.origin.scope.clone()),
                    ..Default::default()
                }],
                ..Default::default()
            });
            out.len() - 1
        });
        out[index].scope_spans[0].spans.push(row.span.clone());
    }
    out
}

/// One summary per trace among `chunks` that overlaps `window`.
pub fn rows_summaries(
    chunks: &[Rows],
    window: TimeWindow,
    indexed: &[String],
) -> Vec<TraceSummary> {
    let mut traces: HashMap<&[u8], Vec<&SpanRow>> = HashMap::new();
    for row in chunks.iter().flat_map(|c| c.iter()) {
        traces.entry(&row.span.trace_id).or_default().push(row);
    }
    let mut out: Vec<TraceSummary> = traces
        .into_values()
        .map(|run| summarise(&run, indexed))
        .filter(|t| window.overlaps(t.start_unix_nano, t.end_unix_nano))
        .collect();
    out.sort_by_key(|t| (t.start_unix_nano, t.trace_id));
    out
}

/// Distinct trace ids of spans in `chunks` starting in `window` and matching `predicate`
/// on their own or their resource's attributes.
pub fn rows_scan(chunks: &[Rows], window: TimeWindow, predicate: &SpanPredicate) -> Vec<[u8; 16]> {
    let mut ids = BTreeSet::new();
    for row in chunks.iter().flat_map(|c| c.iter()) {
        let span = &row.span;
        if window.contains(span.start_time_unix_nano)
            && (predicate.matches(&span.attributes)
                || predicate.matches(&row.origin.resource.attributes))
        {
            ids.insert(fixed_id(&span.trace_id));
        }
    }
    ids.into_iter().collect()
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
