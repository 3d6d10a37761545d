//! What a search asks for, and how a trace summary is matched, ordered and aggregated.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::store::TimeWindow;
use crate::store::summary::TraceSummary;

/// A trace's status as search sees it: error if any span failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceStatus {
    Error,
    Ok,
    Unset,
}

impl TraceStatus {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "error" => Some(Self::Error),
            "ok" => Some(Self::Ok),
            "unset" => Some(Self::Unset),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Ok => "ok",
            Self::Unset => "unset",
        }
    }
}

/// The order of search results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Newest first (Tempo's and Jaeger's order).
    #[default]
    StartDesc,
    /// Slowest first: "the slowest traces in the last 15 minutes".
    DurationDesc,
}

/// An attribute filter; `negated` keeps traces where no value equals `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFilter {
    pub key: String,
    pub value: String,
    pub negated: bool,
}

/// One search. Every filter given must hold; absent filters match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchRequest {
    /// Time window the traces must overlap; the configured default window when absent.
    pub window: Option<TimeWindow>,
    /// Some span of the trace belongs to this service.
    pub service: Option<String>,
    /// Traces whose service set must not contain this one.
    pub not_service: Option<String>,
    /// The trace's root span belongs to this service.
    pub root_service: Option<String>,
    /// Some span has this name (of `service`, when that is given too).
    pub operation: Option<String>,
    pub not_operation: Option<String>,
    /// The root span has this name.
    pub root_name: Option<String>,
    pub status: Option<TraceStatus>,
    pub min_duration: Option<Duration>,
    pub max_duration: Option<Duration>,
    /// `key=value` filters: indexed attributes are answered by the trace summaries, others
    /// by a bounded scan of the span table.
    pub tags: Vec<TagFilter>,
    pub limit: Option<usize>,
    pub sort: SortOrder,
}

impl SearchRequest {
    /// Whether a merged trace summary satisfies every filter except non-indexed tags.
    pub fn matches(&self, t: &TraceSummary, indexed: &[String]) -> bool {
        let duration = t.duration_nanos();
        let service_ok = match (&self.service, &self.operation) {
            (Some(s), Some(op)) => t.operations.contains(&(s.clone(), op.clone())),
            (Some(s), None) => t.services.contains(s),
            (None, Some(op)) => t.operations.iter().any(|(_, name)| name == op),
            (None, None) => true,
        };
        service_ok
            && self
                .not_service
                .as_ref()
                .is_none_or(|s| !t.services.contains(s))
            && self
                .not_operation
                .as_ref()
                .is_none_or(|op| !t.operations.iter().any(|(_, name)| name == op))
            && self
                .root_service
                .as_ref()
                .is_none_or(|s| &t.root_service == s)
            && self.root_name.as_ref().is_none_or(|n| &t.root_name == n)
            && self.status.is_none_or(|s| t.status == s.as_str())
            && self
                .min_duration
                .is_none_or(|d| duration >= d.as_nanos() as u64)
            && self
                .max_duration
                .is_none_or(|d| duration <= d.as_nanos() as u64)
            && self.indexed_tags(indexed).all(|tag| tag_matches(t, tag))
    }

    /// The tag filters the trace summaries can answer.
    pub fn indexed_tags<'a>(
        &'a self,
        indexed: &'a [String],
    ) -> impl Iterator<Item = &'a TagFilter> {
        self.tags.iter().filter(|t| indexed.contains(&t.key))
    }

    /// The tag filters that need a scan of the span table.
    pub fn scanned_tags<'a>(
        &'a self,
        indexed: &'a [String],
    ) -> impl Iterator<Item = &'a TagFilter> {
        self.tags.iter().filter(|t| !indexed.contains(&t.key))
    }
}

fn tag_matches(t: &TraceSummary, tag: &TagFilter) -> bool {
    let present = t
        .attributes
        .get(&tag.key)
        .is_some_and(|values| values.contains(&tag.value));
    present != tag.negated
}

/// Orders matching traces and keeps the first `limit`.
pub fn order(mut traces: Vec<TraceSummary>, sort: SortOrder, limit: usize) -> Vec<TraceSummary> {
    match sort {
        SortOrder::StartDesc => traces.sort_by(|a, b| {
            b.start_unix_nano
                .cmp(&a.start_unix_nano)
                .then(a.trace_id.cmp(&b.trace_id))
        }),
        SortOrder::DurationDesc => traces.sort_by(|a, b| {
            b.duration_nanos()
                .cmp(&a.duration_nanos())
                .then(a.trace_id.cmp(&b.trace_id))
        }),
    }
    traces.truncate(limit);
    traces
}

/// How an aggregate groups traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupBy {
    /// Every service a trace touches (a trace counts once for each); an error trace counts
    /// for the services whose own spans failed.
    #[default]
    Service,
    /// The service of the root span.
    RootService,
    /// The root span's service and operation.
    Operation,
}

impl GroupBy {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "service" => Some(Self::Service),
            "root_service" | "rootService" => Some(Self::RootService),
            "operation" | "root_operation" | "rootName" => Some(Self::Operation),
            _ => None,
        }
    }
}

/// Per-group counts and latency percentiles over a window.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupStats {
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    pub traces: u64,
    pub error_traces: u64,
    pub p50_duration_nanos: u64,
    pub p99_duration_nanos: u64,
}

/// Groups traces, counts them and their errors, and takes exact duration percentiles;
/// groups with the most error traces come first.
pub fn aggregate(traces: &[TraceSummary], by: GroupBy) -> Vec<GroupStats> {
    // (service, operation) -> (error traces, durations)
    let mut groups: BTreeMap<(String, Option<String>), (u64, Vec<u64>)> = BTreeMap::new();
    for t in traces {
        let mut add = |key: (String, Option<String>), error: bool| {
            let entry = groups.entry(key).or_default();
            entry.0 += u64::from(error);
            entry.1.push(t.duration_nanos());
        };
        match by {
            GroupBy::Service => {
                for service in &t.services {
                    add((service.clone(), None), t.error_services.contains(service));
                }
            }
            GroupBy::RootService => add((t.root_service.clone(), None), t.status == "error"),
            GroupBy::Operation => add(
                (t.root_service.clone(), Some(t.root_name.clone())),
                t.status == "error",
            ),
        }
    }
    let mut out: Vec<GroupStats> = groups
        .into_iter()
        .map(|((service, operation), (errors, mut durations))| {
            durations.sort_unstable();
            GroupStats {
                service,
                operation,
                traces: durations.len() as u64,
                error_traces: errors,
                p50_duration_nanos: percentile(&durations, 50),
                p99_duration_nanos: percentile(&durations, 99),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.error_traces
            .cmp(&a.error_traces)
            .then(b.traces.cmp(&a.traces))
            .then(a.service.cmp(&b.service))
    });
    out
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(id: u8, services: &[&str], errors: &[&str], start: u64, dur: u64) -> TraceSummary {
        let mut t = TraceSummary {
            trace_id: [id; 16],
            root_service: services[0].to_string(),
            root_name: format!("GET /{id}"),
            has_root: true,
            start_unix_nano: start,
            end_unix_nano: start + dur,
            status: if errors.is_empty() { "ok" } else { "error" }.to_string(),
            span_count: services.len() as u32,
            error_count: errors.len() as u32,
            ..Default::default()
        };
        for s in services {
            t.services.insert(s.to_string());
            t.operations.insert((s.to_string(), format!("op-{s}")));
        }
        for s in errors {
            t.error_services.insert(s.to_string());
        }
        t
    }

    #[test]
    fn service_and_operation_together_mean_one_span_of_that_service() {
        let t = summary(1, &["web", "db"], &[], 0, 10);
        let mut req = SearchRequest {
            service: Some("web".into()),
            operation: Some("op-web".into()),
            ..Default::default()
        };
        assert!(req.matches(&t, &[]));
        req.operation = Some("op-db".into());
        assert!(!req.matches(&t, &[]), "op-db is a span of db, not of web");
    }

    #[test]
    fn indexed_tags_match_values_and_negation() {
        let mut t = summary(1, &["web"], &[], 0, 10);
        t.attributes
            .insert("http.route".into(), ["/a".to_string()].into());
        let indexed = vec!["http.route".to_string()];
        let tag = |value: &str, negated| SearchRequest {
            tags: vec![TagFilter {
                key: "http.route".into(),
                value: value.into(),
                negated,
            }],
            ..Default::default()
        };
        assert!(tag("/a", false).matches(&t, &indexed));
        assert!(!tag("/b", false).matches(&t, &indexed));
        assert!(tag("/b", true).matches(&t, &indexed));
        assert!(!tag("/a", true).matches(&t, &indexed));
    }

    #[test]
    fn order_sorts_newest_or_slowest_first_and_limits() {
        let traces = vec![
            summary(1, &["a"], &[], 100, 5),
            summary(2, &["a"], &[], 300, 1),
            summary(3, &["a"], &[], 200, 9),
        ];
        let ids = |v: Vec<TraceSummary>| v.iter().map(|t| t.trace_id[0]).collect::<Vec<_>>();
        assert_eq!(
            ids(order(traces.clone(), SortOrder::StartDesc, 10)),
            [2, 3, 1]
        );
        assert_eq!(ids(order(traces, SortOrder::DurationDesc, 2)), [3, 1]);
    }

    #[test]
    fn aggregate_by_service_counts_each_touched_service_and_its_own_errors() {
        let traces = vec![
            summary(1, &["web", "pay"], &["pay"], 0, 10),
            summary(2, &["web", "pay"], &[], 0, 20),
            summary(3, &["web"], &["web"], 0, 30),
        ];
        let stats = aggregate(&traces, GroupBy::Service);
        let pay = stats.iter().find(|s| s.service == "pay").unwrap();
        assert_eq!((pay.traces, pay.error_traces), (2, 1));
        assert_eq!((pay.p50_duration_nanos, pay.p99_duration_nanos), (10, 20));
        let web = stats.iter().find(|s| s.service == "web").unwrap();
        assert_eq!((web.traces, web.error_traces), (3, 1));
        assert_eq!((web.p50_duration_nanos, web.p99_duration_nanos), (20, 30));
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50), 50);
        assert_eq!(percentile(&values, 99), 99);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 50), 0);
    }
}
