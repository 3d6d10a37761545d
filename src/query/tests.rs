//! The query engine against a generated store, checked against a brute-force reading of
//! what was generated.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::engine::{QueryEngine, QueryLimits};
use super::search::{GroupBy, SearchRequest, SortOrder, TagFilter, TraceStatus};
use crate::store::TimeWindow;
use crate::store::layout::Layout;
use crate::store::live::QuerySource;
use crate::store::reader::StoreReader;
use crate::store::writer::{BlockWriter, WriterConfig, write_block};

/// 2026-11-27T16:00:00Z: generated traces straddle this hour boundary.
pub(crate) const BOUNDARY: u64 = 1_795_795_200_000_000_000;
pub(crate) const SECOND: u64 = 1_000_000_000;
const SERVICES: [&str; 4] = ["web", "cart", "pay", "db"];
const ROUTES: [&str; 3] = ["/checkout", "/cart", "/home"];

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// One generated span and the service it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct GenSpan {
    pub service: &'static str,
    pub span: Span,
}

/// One generated trace, kept for brute-force answers.
#[derive(Debug, Clone)]
pub(crate) struct GenTrace {
    pub id: [u8; 16],
    pub tenant: &'static str,
    pub spans: Vec<GenSpan>,
}

impl GenTrace {
    fn start(&self) -> u64 {
        self.spans
            .iter()
            .map(|s| s.span.start_time_unix_nano)
            .min()
            .unwrap()
    }
    fn end(&self) -> u64 {
        self.spans
            .iter()
            .map(|s| s.span.end_time_unix_nano)
            .max()
            .unwrap()
    }
    fn duration(&self) -> u64 {
        self.end() - self.start()
    }
    fn is_error(s: &GenSpan) -> bool {
        s.span.status.as_ref().is_some_and(|st| st.code == 2)
    }
    pub(crate) fn status(&self) -> TraceStatus {
        if self.spans.iter().any(Self::is_error) {
            return TraceStatus::Error;
        }
        match self.spans[0].span.status.as_ref().map(|s| s.code) {
            Some(1) => TraceStatus::Ok,
            _ => TraceStatus::Unset,
        }
    }
    fn route(&self) -> String {
        attr(&self.spans[0].span, "http.route").unwrap_or_default()
    }
    fn overlaps(&self, w: TimeWindow) -> bool {
        self.end() >= w.start_unix_nano && self.start() <= w.end_unix_nano
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == key).map(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            Some(any_value::Value::IntValue(i)) => i.to_string(),
            _ => String::new(),
        }
    })
}

fn span(rng: &mut StdRng, trace: [u8; 16], parent: &[u8], name: String, start: u64) -> Span {
    let duration = rng.random_range(1_000_000..3_000_000_000u64);
    let code = match rng.random_range(0..10) {
        0 => 2,
        1..=4 => 1,
        _ => 0,
    };
    Span {
        trace_id: trace.to_vec(),
        span_id: rng.random::<[u8; 8]>().to_vec(),
        parent_span_id: parent.to_vec(),
        name,
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + duration,
        status: Some(Status {
            code,
            message: if code == 2 {
                "boom".into()
            } else {
                String::new()
            },
        }),
        ..Default::default()
    }
}

/// `n` traces over two tenants, starting from 40 minutes before the boundary to 40 after.
pub(crate) fn generate(n: usize, seed: u64) -> Vec<GenTrace> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut traces = Vec::new();
    for i in 0..n {
        let id: [u8; 16] = rng.random();
        let start = BOUNDARY - 2400 * SECOND + (i as u64 * 4800 * SECOND) / n as u64;
        let route = ROUTES[rng.random_range(0..ROUTES.len())];
        let mut root = span(&mut rng, id, &[], format!("GET {route}"), start);
        if i == n / 2 {
            // One trace surely straddles the hour boundary.
            root.start_time_unix_nano = BOUNDARY - 1_000_000;
            root.end_time_unix_nano = BOUNDARY + 2 * SECOND;
        }
        root.attributes.push(kv(
            "http.route",
            any_value::Value::StringValue(route.into()),
        ));
        root.attributes.push(kv(
            "user.id",
            any_value::Value::IntValue(rng.random_range(1..20)),
        ));
        let root_id = root.span_id.clone();
        let mut spans = vec![GenSpan {
            service: SERVICES[0],
            span: root,
        }];
        for k in 0..rng.random_range(1..6) {
            let service = SERVICES[rng.random_range(1..SERVICES.len())];
            let offset = rng.random_range(0..2 * SECOND);
            let name = format!("op-{service}-{k}");
            let child = span(&mut rng, id, &root_id, name, start + offset);
            spans.push(GenSpan {
                service,
                span: child,
            });
        }
        let tenant = if i % 3 == 0 { "globex" } else { "acme" };
        traces.push(GenTrace { id, tenant, spans });
    }
    traces
}

/// OTLP batches of the given spans, one `ResourceSpans` per (tenant, service).
fn batches(spans: &[(&'static str, GenSpan)]) -> Vec<ResourceSpans> {
    let mut groups: BTreeMap<(&str, &str), Vec<Span>> = BTreeMap::new();
    for (tenant, s) in spans {
        groups
            .entry((tenant, s.service))
            .or_default()
            .push(s.span.clone());
    }
    groups
        .into_iter()
        .map(|((tenant, service), spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv(
                        "service.name",
                        any_value::Value::StringValue(service.into()),
                    ),
                    kv("tenant.id", any_value::Value::StringValue(tenant.into())),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect()
}

fn indexed() -> Vec<String> {
    vec!["http.route".to_string()]
}

/// Writes every trace in two rounds (each trace's spans split between them), so traces
/// straddle blocks as well as the hour boundary.
pub(crate) async fn store_of(traces: &[GenTrace]) -> QuerySource {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layout = Layout::default();
    let config = WriterConfig {
        row_group_spans: 64,
        indexed_attributes: indexed(),
        ..Default::default()
    };
    let mut writer = BlockWriter::new(config);
    for round in 0..2 {
        let part: Vec<(&'static str, GenSpan)> = traces
            .iter()
            .flat_map(|t| {
                t.spans
                    .iter()
                    .enumerate()
                    .filter(move |(i, _)| i % 2 == round)
                    .map(move |(_, s)| (t.tenant, s.clone()))
            })
            .collect();
        writer
            .add(&batches(&part), round as u64 + 1, Instant::now())
            .unwrap();
        let millis = 1_795_795_200_000 + round as u64;
        for block in writer.seal_due(Instant::now(), true, millis) {
            let id = block.id.clone();
            write_block(&store, &layout, writer.config(), block)
                .await
                .unwrap();
            writer.committed(&id);
        }
    }
    QuerySource {
        reader: StoreReader::new(store, layout),
        live: None,
        indexed_attributes: indexed(),
    }
}

fn engine(source: QuerySource) -> QueryEngine {
    let limits = QueryLimits {
        max_limit: 10_000,
        ..QueryLimits::default()
    };
    QueryEngine::new(source, limits)
}

fn whole() -> TimeWindow {
    TimeWindow {
        start_unix_nano: BOUNDARY - 3600 * SECOND,
        end_unix_nano: BOUNDARY + 3600 * SECOND,
    }
}

fn expected(
    traces: &[GenTrace],
    tenant: &str,
    keep: impl Fn(&GenTrace) -> bool,
) -> BTreeSet<[u8; 16]> {
    traces
        .iter()
        .filter(|t| t.tenant == tenant && keep(t))
        .map(|t| t.id)
        .collect()
}

async fn found(engine: &QueryEngine, tenant: &str, request: &SearchRequest) -> BTreeSet<[u8; 16]> {
    let request = SearchRequest {
        limit: Some(10_000),
        ..request.clone()
    };
    let got = engine.search(tenant, &request).await.unwrap();
    let ids: BTreeSet<[u8; 16]> = got.iter().map(|t| t.trace_id).collect();
    assert_eq!(ids.len(), got.len(), "a trace is listed twice");
    ids
}

#[tokio::test]
async fn every_filter_and_combination_returns_exactly_the_brute_force_answer() {
    let traces = generate(240, 7);
    let engine = engine(store_of(&traces).await);
    let w = whole();
    let half = TimeWindow {
        start_unix_nano: BOUNDARY - 600 * SECOND,
        end_unix_nano: BOUNDARY + 300 * SECOND,
    };
    let base = SearchRequest {
        window: Some(w),
        ..Default::default()
    };
    type Case = (SearchRequest, Box<dyn Fn(&GenTrace) -> bool>);
    let cases: Vec<Case> = vec![
        (base.clone(), Box::new(|_| true)),
        (
            SearchRequest {
                window: Some(half),
                ..base.clone()
            },
            Box::new(move |t| t.overlaps(half)),
        ),
        (
            SearchRequest {
                service: Some("pay".into()),
                ..base.clone()
            },
            Box::new(|t| t.spans.iter().any(|s| s.service == "pay")),
        ),
        (
            SearchRequest {
                root_service: Some("web".into()),
                ..base.clone()
            },
            Box::new(|_| true),
        ),
        (
            SearchRequest {
                operation: Some("op-db-2".into()),
                ..base.clone()
            },
            Box::new(|t| t.spans.iter().any(|s| s.span.name == "op-db-2")),
        ),
        (
            SearchRequest {
                service: Some("cart".into()),
                operation: Some("op-cart-1".into()),
                ..base.clone()
            },
            Box::new(|t| {
                t.spans
                    .iter()
                    .any(|s| s.service == "cart" && s.span.name == "op-cart-1")
            }),
        ),
        (
            SearchRequest {
                status: Some(TraceStatus::Error),
                ..base.clone()
            },
            Box::new(|t| t.status() == TraceStatus::Error),
        ),
        (
            SearchRequest {
                status: Some(TraceStatus::Ok),
                ..base.clone()
            },
            Box::new(|t| t.status() == TraceStatus::Ok),
        ),
        (
            SearchRequest {
                status: Some(TraceStatus::Unset),
                ..base.clone()
            },
            Box::new(|t| t.status() == TraceStatus::Unset),
        ),
        (
            SearchRequest {
                min_duration: Some(Duration::from_secs(2)),
                ..base.clone()
            },
            Box::new(|t| t.duration() >= 2 * SECOND),
        ),
        (
            SearchRequest {
                max_duration: Some(Duration::from_millis(1500)),
                ..base.clone()
            },
            Box::new(|t| t.duration() <= 1_500_000_000),
        ),
        (
            SearchRequest {
                tags: vec![TagFilter {
                    key: "http.route".into(),
                    value: "/checkout".into(),
                    negated: false,
                }],
                ..base.clone()
            },
            Box::new(|t| t.route() == "/checkout"),
        ),
        (
            SearchRequest {
                window: Some(half),
                service: Some("pay".into()),
                status: Some(TraceStatus::Error),
                min_duration: Some(Duration::from_secs(1)),
                tags: vec![TagFilter {
                    key: "http.route".into(),
                    value: "/cart".into(),
                    negated: true,
                }],
                ..base.clone()
            },
            Box::new(move |t| {
                t.overlaps(half)
                    && t.spans.iter().any(|s| s.service == "pay")
                    && t.status() == TraceStatus::Error
                    && t.duration() >= SECOND
                    && t.route() != "/cart"
            }),
        ),
    ];
    for (i, (request, keep)) in cases.iter().enumerate() {
        for tenant in ["acme", "globex"] {
            let want = expected(&traces, tenant, keep);
            let got = found(&engine, tenant, request).await;
            assert_eq!(got, want, "case {i} for {tenant}: {request:?}");
        }
    }
}

#[tokio::test]
async fn the_three_incident_queries_are_one_call_each() {
    let traces = generate(240, 11);
    let engine = engine(store_of(&traces).await);
    let window = TimeWindow {
        start_unix_nano: BOUNDARY - 900 * SECOND,
        end_unix_nano: BOUNDARY,
    };
    // The slowest traces in a window, slowest first.
    let slowest = engine
        .search(
            "acme",
            &SearchRequest {
                window: Some(window),
                sort: SortOrder::DurationDesc,
                limit: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut want: Vec<&GenTrace> = traces
        .iter()
        .filter(|t| t.tenant == "acme" && t.overlaps(window))
        .collect();
    want.sort_by_key(|t| std::cmp::Reverse(t.duration()));
    let want: Vec<[u8; 16]> = want.iter().take(5).map(|t| t.id).collect();
    let got: Vec<[u8; 16]> = slowest.iter().map(|t| t.trace_id).collect();
    assert_eq!(got, want);

    // Error traces grouped by service, against a brute-force count.
    let groups = engine
        .aggregate(
            "acme",
            &SearchRequest {
                window: Some(window),
                ..Default::default()
            },
            GroupBy::Service,
        )
        .await
        .unwrap();
    let in_window: Vec<&GenTrace> = traces
        .iter()
        .filter(|t| t.tenant == "acme" && t.overlaps(window))
        .collect();
    for service in SERVICES {
        let touching: Vec<&&GenTrace> = in_window
            .iter()
            .filter(|t| t.spans.iter().any(|s| s.service == service))
            .collect();
        let errors = touching
            .iter()
            .filter(|t| {
                t.spans
                    .iter()
                    .any(|s| s.service == service && GenTrace::is_error(s))
            })
            .count() as u64;
        let mut durations: Vec<u64> = touching.iter().map(|t| t.duration()).collect();
        durations.sort_unstable();
        let group = groups.iter().find(|g| g.service == service).unwrap();
        assert_eq!(group.traces, touching.len() as u64, "{service}");
        assert_eq!(group.error_traces, errors, "{service}");
        let rank = |p: usize| durations[(p * durations.len()).div_ceil(100).max(1) - 1];
        assert_eq!(group.p50_duration_nanos, rank(50), "{service}");
        assert_eq!(group.p99_duration_nanos, rank(99), "{service}");
    }

    // All traces of one user around a time, by an attribute that is not indexed.
    let user = "7";
    let around = TimeWindow {
        start_unix_nano: BOUNDARY - 1800 * SECOND,
        end_unix_nano: BOUNDARY + 1800 * SECOND,
    };
    let request = SearchRequest {
        window: Some(around),
        tags: vec![TagFilter {
            key: "user.id".into(),
            value: user.into(),
            negated: false,
        }],
        ..Default::default()
    };
    let got = found(&engine, "acme", &request).await;
    let want = expected(&traces, "acme", |t| {
        t.spans.iter().any(|s| {
            attr(&s.span, "user.id").as_deref() == Some(user)
                && (around.start_unix_nano..=around.end_unix_nano)
                    .contains(&s.span.start_time_unix_nano)
        })
    });
    assert!(
        !want.is_empty(),
        "the generator should give user {user} traces"
    );
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_scan_beyond_the_cap_is_refused_naming_the_parameter() {
    let traces = generate(20, 3);
    let engine = engine(store_of(&traces).await);
    let request = SearchRequest {
        window: Some(whole()),
        tags: vec![TagFilter {
            key: "user.id".into(),
            value: "1".into(),
            negated: false,
        }],
        ..Default::default()
    };
    let error = engine
        .search("acme", &request)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("invalid parameter tags: user.id is not an indexed attribute"),
        "{error}"
    );
}

#[tokio::test]
async fn traces_come_back_whole_across_blocks_and_the_hour_boundary() {
    let traces = generate(60, 5);
    let engine = engine(store_of(&traces).await);
    let straddling = traces
        .iter()
        .filter(|t| t.start() < BOUNDARY && t.end() > BOUNDARY)
        .count();
    assert!(straddling > 0, "some trace should straddle the hour");
    for t in &traces {
        let spans = engine.trace(t.tenant, &t.id, None).await.unwrap().unwrap();
        let mut got: Vec<Vec<u8>> = spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| s.span_id.clone())
            .collect();
        got.sort();
        let mut want: Vec<Vec<u8>> = t.spans.iter().map(|s| s.span.span_id.clone()).collect();
        want.sort();
        assert_eq!(got, want);
    }
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_traces() {
    let traces = generate(60, 9);
    let engine = engine(store_of(&traces).await);
    let request = SearchRequest {
        window: Some(whole()),
        ..Default::default()
    };
    let acme = found(&engine, "acme", &request).await;
    let globex: HashSet<[u8; 16]> = traces
        .iter()
        .filter(|t| t.tenant == "globex")
        .map(|t| t.id)
        .collect();
    assert!(acme.iter().all(|id| !globex.contains(id)));
    // Knowing another tenant's trace id is not enough to read it.
    for id in &globex {
        assert!(engine.trace("acme", id, None).await.unwrap().is_none());
        assert!(engine.trace("globex", id, None).await.unwrap().is_some());
    }
    let values = engine
        .tag_values("acme", "service.name", Some(whole()))
        .await
        .unwrap();
    assert_eq!(values, ["cart", "db", "pay", "web"]);
}
