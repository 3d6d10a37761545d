//! The query engine: trace by id, search, tags and aggregates over one trace store and the
//! spans its exporter has not committed yet.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::stream::{self, StreamExt, TryStreamExt};
use metrics::counter;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use tokio_util::task::AbortOnDropHandle;

use super::config::QueryConfig;
use super::search::{self, GroupBy, GroupStats, SearchRequest, TraceStatus};
use crate::component::names::{
    QUERY_BLOCKS_INSPECTED, QUERY_BLOOM_FALSE_POSITIVES, QUERY_BYTES_READ, QUERY_CACHE_HITS,
};
use crate::store::index::BlockMeta;
use crate::store::live::QuerySource;
use crate::store::reader::ReadStats;
use crate::store::search_filter::{PartFilter, ValueColumn};
use crate::store::summary::{TraceSummary, merge_by_trace};
use crate::store::{SpanPredicate, StoreError, TimeWindow};

/// Blocks read at once by one query.
const BLOCK_CONCURRENCY: usize = 8;

/// Intrinsic tag names every store answers, besides its indexed attributes.
pub const INTRINSIC_TAGS: [&str; 3] = ["service.name", "name", "status"];

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query itself is wrong; `param` names the offending parameter.
    #[error("invalid parameter {param}: {message}")]
    BadRequest { param: String, message: String },
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl QueryError {
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            param: param.to_string(),
            message: message.into(),
        }
    }
}

/// Bounds that keep one query from reading the whole store.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    pub default_search_window: Duration,
    pub max_search_window: Duration,
    pub max_scan_window: Duration,
    pub default_limit: usize,
    pub max_limit: usize,
    pub max_tag_values: usize,
}

impl From<&QueryConfig> for QueryLimits {
    fn from(c: &QueryConfig) -> Self {
        Self {
            default_search_window: c.default_search_window.get(),
            max_search_window: c.max_search_window.get(),
            max_scan_window: c.max_scan_window.get(),
            default_limit: c.default_limit,
            max_limit: c.max_limit,
            max_tag_values: c.max_tag_values,
        }
    }
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self::from(&QueryConfig::default())
    }
}

/// Answers queries over one store; cheap to clone and share between requests.
#[derive(Clone)]
pub struct QueryEngine {
    source: QuerySource,
    limits: QueryLimits,
}

/// The current time in unix nanoseconds.
pub fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl QueryEngine {
    pub fn new(source: QuerySource, limits: QueryLimits) -> Self {
        Self { source, limits }
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Every span of one trace of `tenant`, committed or not, each span once; `None` when
    /// no span is known.
    pub async fn trace(
        &self,
        tenant: &str,
        trace_id: &[u8; 16],
        window: Option<TimeWindow>,
    ) -> Result<Option<Vec<ResourceSpans>>, QueryError> {
        // Live first: a block being committed is briefly in both places, never in neither.
        let mut parts = Vec::with_capacity(2);
        if let Some(live) = &self.source.live {
            parts.push(live.trace(tenant, trace_id).await);
        }
        let mut stats = ReadStats::default();
        let stored = self
            .source
            .reader
            .trace_in(tenant, trace_id, window, &mut stats)
            .await;
        record(&stats);
        parts.push(stored?);
        let merged = crate::store::live::merge_spans(parts);
        let empty = merged
            .iter()
            .all(|rs| rs.scope_spans.iter().all(|ss| ss.spans.is_empty()));
        Ok((!empty).then_some(merged))
    }

    /// The window a search covers: the given one, or the default ending now.
    pub fn search_window(&self, window: Option<TimeWindow>) -> Result<TimeWindow, QueryError> {
        let window = window.unwrap_or_else(|| {
            let end = now_unix_nano();
            TimeWindow {
                start_unix_nano: end
                    .saturating_sub(self.limits.default_search_window.as_nanos() as u64),
                end_unix_nano: end,
            }
        });
        if window.end_unix_nano < window.start_unix_nano {
            return Err(QueryError::bad("end", "end is before start"));
        }
        let width = window.end_unix_nano - window.start_unix_nano;
        let max = self.limits.max_search_window;
        if width > max.as_nanos() as u64 {
            return Err(QueryError::bad(
                "start",
                format!(
                    "the window is {}; searches cover at most {}",
                    humantime::format_duration(Duration::from_secs(width / 1_000_000_000)),
                    humantime::format_duration(max)
                ),
            ));
        }
        Ok(window)
    }

    /// Traces matching every filter of `request`, ordered and limited.
    pub async fn search(
        &self,
        tenant: &str,
        request: &SearchRequest,
    ) -> Result<Vec<TraceSummary>, QueryError> {
        let window = self.search_window(request.window)?;
        let limit = request
            .limit
            .unwrap_or(self.limits.default_limit)
            .min(self.limits.max_limit);
        let indexed = self.indexed();
        let scanned = self.scanned_ids(tenant, request, window, &indexed).await?;
        let traces = self.candidates(tenant, window, request).await?;
        let matching = traces
            .into_iter()
            .filter(|t| scanned.as_ref().is_none_or(|ids| ids.contains(&t.trace_id)))
            .filter(|t| request.matches(t, &indexed))
            .collect();
        Ok(search::order(matching, request.sort, limit))
    }

    /// Counts, error counts and duration percentiles per group over the traces matching
    /// `request` (its limit and order are ignored).
    pub async fn aggregate(
        &self,
        tenant: &str,
        request: &SearchRequest,
        by: GroupBy,
    ) -> Result<Vec<GroupStats>, QueryError> {
        let window = self.search_window(request.window)?;
        let indexed = self.indexed();
        let scanned = self.scanned_ids(tenant, request, window, &indexed).await?;
        let traces: Vec<TraceSummary> = self
            .candidates(tenant, window, request)
            .await?
            .into_iter()
            .filter(|t| scanned.as_ref().is_none_or(|ids| ids.contains(&t.trace_id)))
            .filter(|t| request.matches(t, &indexed))
            .collect();
        Ok(search::aggregate(&traces, by))
    }

    /// Tag names a search can filter on: the intrinsics and the indexed attributes.
    pub fn tag_names(&self) -> Vec<String> {
        let mut names: Vec<String> = INTRINSIC_TAGS.iter().map(|s| s.to_string()).collect();
        names.extend(self.indexed());
        names
    }

    /// The values seen for tag `name` in the window, sorted, at most `max_tag_values`.
    pub async fn tag_values(
        &self,
        tenant: &str,
        name: &str,
        window: Option<TimeWindow>,
    ) -> Result<Vec<String>, QueryError> {
        let indexed = self.indexed();
        if !INTRINSIC_TAGS.contains(&name) && !indexed.iter().any(|k| k == name) {
            return Err(QueryError::bad(
                "tag",
                format!(
                    "{name:?} is not indexed; searchable tags: {}",
                    self.tag_names().join(", ")
                ),
            ));
        }
        let window = self.search_window(window)?;
        let column = match name {
            "service.name" => ValueColumn::Services,
            "name" => ValueColumn::Operations(None),
            "status" => ValueColumn::Status,
            key => ValueColumn::Attribute(key.to_string()),
        };
        let values = self.values(tenant, window, &column).await?;
        Ok(values
            .into_iter()
            .take(self.limits.max_tag_values)
            .collect())
    }

    /// The span names of `service` seen in the window.
    pub async fn operations(
        &self,
        tenant: &str,
        service: &str,
        window: Option<TimeWindow>,
    ) -> Result<Vec<String>, QueryError> {
        let window = self.search_window(window)?;
        let column = ValueColumn::Operations(Some(service.to_string()));
        Ok(self
            .values(tenant, window, &column)
            .await?
            .into_iter()
            .collect())
    }

    /// Distinct values of one summary column in the window, the live buffers included,
    /// reading that column alone from each block.
    async fn values(
        &self,
        tenant: &str,
        window: TimeWindow,
        column: &ValueColumn,
    ) -> Result<BTreeSet<String>, QueryError> {
        let mut values = BTreeSet::new();
        if let Some(live) = &self.source.live {
            for t in live.summaries(tenant, window).await {
                match column {
                    ValueColumn::Services => values.extend(t.services),
                    ValueColumn::Status => {
                        values.insert(t.status);
                    }
                    ValueColumn::Operations(service) => values.extend(
                        t.operations
                            .into_iter()
                            .filter(|(s, _)| service.as_ref().is_none_or(|w| w == s))
                            .map(|(_, n)| n),
                    ),
                    ValueColumn::Attribute(key) => {
                        values.extend(t.attributes.get(key).into_iter().flatten().cloned())
                    }
                }
            }
        }
        let blocks = self.source.reader.blocks_in(tenant, Some(window)).await?;
        let parts: Vec<BTreeSet<String>> = per_block(blocks, |meta| {
            let (reader, column) = (self.source.reader.clone(), column.clone());
            async move {
                let mut stats = ReadStats::default();
                let found = reader
                    .column_values(&meta, window, &column, &mut stats)
                    .await?;
                Ok((found, stats))
            }
        })
        .await?;
        for found in parts {
            values.extend(found);
        }
        Ok(values)
    }

    /// The merged summaries a search must look at. When every matching trace must have a
    /// part passing one cheap test (an error, a service, a root), the blocks are first asked
    /// for the ids of such parts, reading one column, and only those traces are read in
    /// full; otherwise every trace overlapping the window is.
    async fn candidates(
        &self,
        tenant: &str,
        window: TimeWindow,
        request: &SearchRequest,
    ) -> Result<Vec<TraceSummary>, QueryError> {
        let seeds = seeds_of(request);
        if seeds.is_empty() {
            return self.summaries(tenant, window).await;
        }
        let live = match &self.source.live {
            Some(live) => live.summaries(tenant, window).await,
            None => Vec::new(),
        };
        let blocks = self.source.reader.blocks_in(tenant, Some(window)).await?;
        let tests = Arc::new(seeds.clone());
        let found: Vec<Vec<Vec<[u8; 16]>>> = per_block(blocks.iter().cloned(), |meta| {
            let (reader, tests) = (self.source.reader.clone(), tests.clone());
            async move {
                let mut stats = ReadStats::default();
                let found = reader
                    .part_ids_each(&meta, window, &tests, &mut stats)
                    .await?;
                Ok((found, stats))
            }
        })
        .await?;
        // A matching trace has, for every test, some part passing it.
        let mut passing: Vec<HashSet<[u8; 16]>> = seeds
            .iter()
            .map(|seed| {
                live.iter()
                    .filter(|t| seed.matches(t))
                    .map(|t| t.trace_id)
                    .collect()
            })
            .collect();
        for per_test in found {
            for (set, ids) in passing.iter_mut().zip(per_test) {
                set.extend(ids);
            }
        }
        passing.sort_by_key(HashSet::len);
        let mut sets = passing.into_iter();
        let mut ids = sets.next().unwrap_or_default();
        for other in sets {
            ids.retain(|id| other.contains(id));
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = Arc::new(ids);
        let every_part = Arc::new(PartFilter::Ids(ids.clone()));
        let parts: Vec<Vec<TraceSummary>> = per_block(blocks, |meta| {
            let (reader, every_part) = (self.source.reader.clone(), every_part.clone());
            async move {
                let mut stats = ReadStats::default();
                let found = reader
                    .summaries_where(&meta, window, &every_part, &mut stats)
                    .await?;
                Ok((found, stats))
            }
        })
        .await?;
        let mut all: Vec<TraceSummary> = live
            .into_iter()
            .filter(|t| ids.contains(&t.trace_id))
            .collect();
        for found in parts {
            all.extend(found);
        }
        Ok(merge_by_trace(all))
    }

    fn indexed(&self) -> Vec<String> {
        self.source.indexed_attributes.clone()
    }

    /// Every trace overlapping the window, one merged summary each.
    async fn summaries(
        &self,
        tenant: &str,
        window: TimeWindow,
    ) -> Result<Vec<TraceSummary>, QueryError> {
        // Live first, as for traces by id.
        let mut all = match &self.source.live {
            Some(live) => live.summaries(tenant, window).await,
            None => Vec::new(),
        };
        let blocks = self.source.reader.blocks_in(tenant, Some(window)).await?;
        let parts: Vec<Vec<TraceSummary>> = per_block(blocks, |meta| {
            let reader = self.source.reader.clone();
            async move {
                let mut stats = ReadStats::default();
                let found = reader
                    .summaries_counted(&meta, Some(window), &mut stats)
                    .await?;
                Ok((found, stats))
            }
        })
        .await?;
        for found in parts {
            all.extend(found);
        }
        Ok(merge_by_trace(all))
    }

    /// Trace ids matching every non-indexed tag filter, by scanning the span table; `None`
    /// when the request has no such filter.
    async fn scanned_ids(
        &self,
        tenant: &str,
        request: &SearchRequest,
        window: TimeWindow,
        indexed: &[String],
    ) -> Result<Option<HashSet<[u8; 16]>>, QueryError> {
        let tags: Vec<_> = request.scanned_tags(indexed).collect();
        if tags.is_empty() {
            return Ok(None);
        }
        let width = window.end_unix_nano.saturating_sub(window.start_unix_nano);
        if width > self.limits.max_scan_window.as_nanos() as u64 {
            return Err(QueryError::bad(
                "tags",
                format!(
                    "{} is not an indexed attribute, so the span table is scanned, which is allowed over at most {}; narrow start/end (indexed: {})",
                    tags[0].key,
                    humantime::format_duration(self.limits.max_scan_window),
                    indexed.join(", ")
                ),
            ));
        }
        if let Some(tag) = tags.iter().find(|t| t.negated) {
            return Err(QueryError::bad(
                "tags",
                format!(
                    "!= is only supported on indexed attributes, not on {}",
                    tag.key
                ),
            ));
        }
        let blocks = self.source.reader.blocks_in(tenant, Some(window)).await?;
        let mut found: Option<HashSet<[u8; 16]>> = None;
        for tag in tags {
            let predicate = SpanPredicate {
                key: tag.key.clone(),
                value: tag.value.clone(),
            };
            let ids = self.scan(tenant, &blocks, window, &predicate).await?;
            found = Some(match found {
                None => ids,
                Some(prev) => prev.intersection(&ids).copied().collect(),
            });
        }
        Ok(found)
    }

    async fn scan(
        &self,
        tenant: &str,
        blocks: &[BlockMeta],
        window: TimeWindow,
        predicate: &SpanPredicate,
    ) -> Result<HashSet<[u8; 16]>, QueryError> {
        let mut ids: HashSet<[u8; 16]> = match &self.source.live {
            Some(live) => live
                .scan(tenant, window, predicate)
                .await
                .into_iter()
                .collect(),
            None => HashSet::new(),
        };
        let parts: Vec<Vec<[u8; 16]>> = per_block(blocks.iter().cloned(), |meta| {
            let (reader, predicate) = (self.source.reader.clone(), predicate.clone());
            async move {
                let mut stats = ReadStats::default();
                let found = reader
                    .scan_counted(&meta, window, &predicate, &mut stats)
                    .await?;
                Ok((found, stats))
            }
        })
        .await?;
        for found in parts {
            ids.extend(found);
        }
        Ok(ids)
    }
}

/// Runs `read` over every block, a few at once, each as its own task so the decoding of
/// several blocks runs on several cores, and records what each read cost. A dropped query
/// aborts the reads it started.
async fn per_block<T, F, Fut>(
    blocks: impl IntoIterator<Item = BlockMeta>,
    read: F,
) -> Result<Vec<T>, QueryError>
where
    F: Fn(BlockMeta) -> Fut,
    Fut: std::future::Future<Output = Result<(T, ReadStats), StoreError>> + Send + 'static,
    T: Send + 'static,
{
    let parts: Vec<(T, ReadStats)> = stream::iter(blocks)
        .map(|meta| AbortOnDropHandle::new(tokio::spawn(read(meta))))
        .buffer_unordered(BLOCK_CONCURRENCY)
        .map(|joined| match joined {
            Ok(read) => read,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Task(format!("block read: {e}"))),
        })
        .try_collect()
        .await?;
    Ok(parts
        .into_iter()
        .map(|(found, stats)| {
            record(&stats);
            found
        })
        .collect())
}

/// Tests that, each, some part of every trace matching `request` passes.
fn seeds_of(request: &SearchRequest) -> Vec<PartFilter> {
    let mut seeds = Vec::new();
    if request.status == Some(TraceStatus::Error) {
        seeds.push(PartFilter::Error);
    }
    if let Some(name) = &request.root_name {
        seeds.push(PartFilter::RootName(name.clone()));
    }
    if let Some(service) = &request.root_service {
        seeds.push(PartFilter::RootService(service.clone()));
    }
    if let Some(service) = &request.service {
        seeds.push(PartFilter::Service(service.clone()));
    }
    seeds
}

fn record(stats: &ReadStats) {
    counter!(QUERY_BLOCKS_INSPECTED).increment(stats.blocks_inspected);
    counter!(QUERY_BYTES_READ).increment(stats.bytes_read);
    counter!(QUERY_BLOOM_FALSE_POSITIVES).increment(stats.bloom_false_positives);
    counter!(QUERY_CACHE_HITS).increment(stats.cache_hits);
}
