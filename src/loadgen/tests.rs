//! Tests of the trace generator, the request pool and whole runs against in-test servers.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use parking_lot::Mutex;
use prost::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::net::TcpListener;

use super::generate::{self, GenParams, GenSpan};
use super::pool::{Encoding, Pool, PoolParams};
use super::report::{Counters, progress_line};
use super::send::{Outcome, traces_uri};
use super::*;

const NOW: u64 = 1_764_000_000_000_000_000;

fn gen_params(spans_per_trace: usize, error_rate: f64) -> GenParams {
    GenParams {
        spans_per_trace,
        error_rate,
        now_nanos: NOW,
    }
}

fn traces(count: usize, params: &GenParams) -> Vec<Vec<GenSpan>> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..count)
        .map(|_| generate::trace(&mut rng, params))
        .collect()
}

fn pool_params(encoding: Encoding, precompress: bool) -> PoolParams {
    PoolParams {
        size: 8,
        batch_spans: 500,
        tenants: 3,
        encoding,
        precompress,
        seed: 3,
        generator: gen_params(12, 0.01),
    }
}

fn is_error(span: &Span) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == status::StatusCode::Error as i32)
}

fn attribute<'a>(
    attributes: &'a [opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

#[test]
fn traces_are_trees_with_valid_parents_nested_in_time() {
    for trace in traces(300, &gen_params(12, 0.05)) {
        assert_eq!(trace.len(), 12);
        let root = &trace[0].span;
        assert!(root.parent_span_id.is_empty(), "the first span is the root");
        assert_eq!(root.kind, span::SpanKind::Server as i32);
        let mut by_id: HashMap<&[u8], &Span> = HashMap::new();
        for generated in &trace {
            let span = &generated.span;
            assert_eq!(span.trace_id, root.trace_id);
            assert!(span.start_time_unix_nano < span.end_time_unix_nano);
            if !span.parent_span_id.is_empty() {
                let parent = by_id
                    .get(span.parent_span_id.as_slice())
                    .expect("parent comes before child");
                assert!(span.start_time_unix_nano >= parent.start_time_unix_nano);
                assert!(span.end_time_unix_nano <= parent.end_time_unix_nano);
            }
            assert!(
                by_id.insert(&span.span_id, span).is_none(),
                "span ids are unique"
            );
        }
        assert_eq!(
            trace
                .iter()
                .filter(|s| s.span.parent_span_id.is_empty())
                .count(),
            1
        );
    }
}

#[test]
fn traces_have_http_pairs_across_services_and_db_calls() {
    let all: Vec<GenSpan> = traces(100, &gen_params(12, 0.0))
        .into_iter()
        .flatten()
        .collect();
    let by_id: HashMap<&[u8], &GenSpan> =
        all.iter().map(|s| (s.span.span_id.as_slice(), s)).collect();
    let mut cross_service_servers = 0;
    let mut db_spans = 0;
    for generated in &all {
        let span = &generated.span;
        if span.kind == span::SpanKind::Server as i32 && !span.parent_span_id.is_empty() {
            let client = by_id[span.parent_span_id.as_slice()];
            assert_eq!(
                client.span.kind,
                span::SpanKind::Client as i32,
                "a server span's parent is a client span"
            );
            assert_ne!(client.service, generated.service);
            assert!(attribute(&client.span.attributes, "url.full").is_some());
            assert!(attribute(&span.attributes, "http.route").is_some());
            cross_service_servers += 1;
        }
        if let Some(any_value::Value::StringValue(_)) = attribute(&span.attributes, "db.statement")
        {
            assert!(attribute(&span.attributes, "db.system").is_some());
            db_spans += 1;
        }
    }
    assert!(cross_service_servers > 100, "got {cross_service_servers}");
    assert!(db_spans > 100, "got {db_spans}");
}

#[test]
fn error_rate_is_roughly_honoured_and_errors_reach_the_root() {
    let all = traces(3000, &gen_params(12, 0.1));
    let mut failed_traces = 0;
    for trace in &all {
        let exceptions: Vec<&Span> = trace
            .iter()
            .map(|s| &s.span)
            .filter(|s| s.events.iter().any(|e| e.name == "exception"))
            .collect();
        if exceptions.is_empty() {
            assert!(trace.iter().all(|s| !is_error(&s.span)));
            continue;
        }
        failed_traces += 1;
        assert_eq!(exceptions.len(), 1);
        assert!(is_error(&trace[0].span), "the root carries the error");
        let mut current = exceptions[0];
        while !current.parent_span_id.is_empty() {
            assert!(is_error(current));
            current = &trace
                .iter()
                .find(|s| s.span.span_id == current.parent_span_id)
                .expect("parent exists")
                .span;
        }
    }
    let rate = failed_traces as f64 / all.len() as f64;
    assert!((0.08..0.12).contains(&rate), "error rate {rate}");
    assert!(
        traces(500, &gen_params(12, 0.0))
            .iter()
            .flatten()
            .all(|s| !is_error(&s.span))
    );
}

#[test]
fn latency_has_a_long_tail() {
    let all = traces(3000, &gen_params(4, 0.0));
    let durations: Vec<u64> = all
        .iter()
        .map(|t| t[0].span.end_time_unix_nano - t[0].span.start_time_unix_nano)
        .collect();
    let over_one_second =
        durations.iter().filter(|d| **d > 1_000_000_000).count() as f64 / durations.len() as f64;
    let under_100ms =
        durations.iter().filter(|d| **d < 100_000_000).count() as f64 / durations.len() as f64;
    assert!(
        (0.01..0.06).contains(&over_one_second),
        "share over 1s: {over_one_second}"
    );
    assert!(under_100ms > 0.5, "share under 100ms: {under_100ms}");
}

#[test]
fn pooled_requests_hold_exactly_the_batch_with_tenant_on_every_resource() {
    let pool = Pool::build(&pool_params(Encoding::Protobuf, false));
    for seq in 0..8 {
        let (entry, pass) = pool.get(seq);
        assert_eq!(pass, 0);
        let request =
            ExportTraceServiceRequest::decode(entry.body.clone()).expect("pool bodies decode");
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        assert_eq!(spans, 500);
        assert_eq!(entry.spans, 500);
        let tenant = entry.tenant.clone().expect("tenants configured");
        assert_eq!(tenant, format!("tenant-{}", seq % 3));
        for resource_spans in &request.resource_spans {
            let resource = resource_spans.resource.as_ref().expect("resource set");
            for key in [
                "service.name",
                "service.version",
                "host.name",
                "deployment.environment",
                "k8s.pod.name",
            ] {
                assert!(
                    attribute(&resource.attributes, key).is_some(),
                    "missing {key}"
                );
            }
            assert_eq!(
                attribute(&resource.attributes, "tenant.id"),
                Some(&any_value::Value::StringValue(tenant.clone()))
            );
        }
    }
    assert_eq!(
        pool.get(9).1,
        1,
        "sequence 9 is on the second pass over 8 requests"
    );
}

#[test]
fn encoded_spans_are_450_to_600_bytes() {
    let pool = Pool::build(&pool_params(Encoding::Protobuf, false));
    let size = pool.bytes_per_span();
    assert!((450.0..=600.0).contains(&size), "{size} bytes per span");
    let json = Pool::build(&pool_params(Encoding::Json, false)).bytes_per_span();
    let gzipped = Pool::build(&pool_params(Encoding::Protobuf, true)).bytes_per_span();
    assert!(
        json > size && gzipped < size / 2.0,
        "json {json}, gzip {gzipped}"
    );
}

/// Spans of one request keyed by (trace id, span id), with their times.
fn spans_of(request: &ExportTraceServiceRequest) -> Vec<Span> {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect()
}

fn check_rendered_pass(original: &[Span], rendered: &[Span], shift: u64) {
    assert_eq!(original.len(), rendered.len());
    let mut mapping: HashMap<&[u8], &[u8]> = HashMap::new();
    let mut span_ids: HashMap<&[u8], &[u8]> = HashMap::new();
    for (before, after) in original.iter().zip(rendered) {
        assert_ne!(before.span_id, after.span_id, "span ids change too");
        span_ids.insert(&before.span_id, &after.span_id);
        assert_ne!(
            before.trace_id, after.trace_id,
            "trace ids change on a later pass"
        );
        let mapped = *mapping.entry(&before.trace_id).or_insert(&after.trace_id);
        assert_eq!(
            mapped,
            after.trace_id.as_slice(),
            "spans of one trace keep one id"
        );
        assert_eq!(
            after.start_time_unix_nano,
            before.start_time_unix_nano + shift
        );
        assert_eq!(after.end_time_unix_nano, before.end_time_unix_nano + shift);
        for (event_before, event_after) in before.events.iter().zip(&after.events) {
            assert_eq!(
                event_after.time_unix_nano,
                event_before.time_unix_nano + shift
            );
        }
    }
    // A child's new parent id is its parent's new span id: the tree is unchanged.
    let mut parents = 0;
    for (before, after) in original.iter().zip(rendered) {
        if let Some(parent) = span_ids.get(before.parent_span_id.as_slice()) {
            assert_eq!(after.parent_span_id.as_slice(), *parent);
            parents += 1;
        }
    }
    assert!(parents > 0, "the pool's traces have parent links");
}

#[test]
fn later_passes_rewrite_trace_ids_and_timestamps_in_protobuf() {
    let pool = Pool::build(&pool_params(Encoding::Protobuf, false));
    let (entry, _) = pool.get(0);
    assert!(entry.patch_count() > 1000);
    let original =
        spans_of(&ExportTraceServiceRequest::decode(entry.body.clone()).expect("decodes"));
    let rendered = entry.render(5, 1_500_000_000);
    let rendered =
        spans_of(&ExportTraceServiceRequest::decode(rendered).expect("patched body decodes"));
    check_rendered_pass(&original, &rendered, 1_500_000_000);
}

#[test]
fn later_passes_rewrite_trace_ids_and_timestamps_in_json() {
    let pool = Pool::build(&pool_params(Encoding::Json, false));
    let (entry, _) = pool.get(1);
    let original: ExportTraceServiceRequest =
        serde_json::from_slice(&entry.body).expect("json decodes");
    let rendered: ExportTraceServiceRequest =
        serde_json::from_slice(&entry.render(2, 42)).expect("patched json decodes");
    check_rendered_pass(&spans_of(&original), &spans_of(&rendered), 42);
}

#[test]
fn precompressed_bodies_are_resent_unchanged() {
    let pool = Pool::build(&pool_params(Encoding::Protobuf, true));
    let (entry, _) = pool.get(0);
    assert_eq!(entry.patch_count(), 0);
    assert_eq!(entry.render(3, 99), entry.body);
}

#[test]
fn validation_reports_every_problem() {
    let mut args = LoadgenArgs::new("127.0.0.1:4317");
    args.batch_spans = 0;
    args.concurrency = 0;
    args.error_rate = 1.5;
    args.tenants = 1000;
    args.json = true;
    let message = args.validate().expect_err("invalid").to_string();
    for flag in [
        "--endpoint",
        "--batch-spans",
        "--concurrency",
        "--error-rate",
        "--tenants",
        "--json",
    ] {
        assert!(message.contains(flag), "{flag} missing from {message}");
    }
    assert!(LoadgenArgs::new("http://127.0.0.1:4317").validate().is_ok());
}

#[test]
fn http_endpoint_gets_the_traces_path_unless_it_has_one() {
    assert_eq!(
        traces_uri("http://127.0.0.1:4318")
            .expect("valid")
            .to_string(),
        "http://127.0.0.1:4318/v1/traces"
    );
    assert_eq!(
        traces_uri("http://h:1/custom").expect("valid").to_string(),
        "http://h:1/custom"
    );
    assert!(traces_uri("https://h:1").is_err());
}

#[test]
fn counters_split_partial_success_and_keep_the_first_error() {
    let counters = Counters::default();
    counters.record(500, Outcome::Acked { rejected: 20 });
    counters.record(500, Outcome::Refused);
    counters.record(500, Outcome::Failed("first".into()));
    counters.record(500, Outcome::Failed("second".into()));
    let totals = counters.snapshot();
    assert_eq!(
        (
            totals.acked,
            totals.rejected,
            totals.refused,
            totals.failed,
            totals.requests
        ),
        (480, 20, 500, 1000, 4)
    );
    assert_eq!(counters.first_error().as_deref(), Some("first"));
    let line = progress_line(
        Duration::from_secs(3),
        totals,
        Default::default(),
        Duration::from_secs(1),
    );
    assert!(
        line.contains("acked 480") && line.contains("480 acked"),
        "{line}"
    );
}

/// What a test server does with each request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Accept,
    Refuse,
    /// Accept, but report this many spans rejected per request.
    Reject(i64),
}

/// What a test server saw.
#[derive(Default)]
struct Received {
    spans: AtomicU64,
    requests: AtomicU64,
    /// Requests whose header tenant differs from a resource's `tenant.id`.
    tenant_mismatches: AtomicU64,
    span_keys: Mutex<HashSet<(Vec<u8>, Vec<u8>)>>,
}

impl Received {
    fn observe(&self, request: &ExportTraceServiceRequest, header_tenant: Option<&str>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut keys = self.span_keys.lock();
        for resource_spans in &request.resource_spans {
            let attributes = resource_spans
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or_default();
            let tenant = match attribute(attributes, "tenant.id") {
                Some(any_value::Value::StringValue(tenant)) => Some(tenant.as_str()),
                _ => None,
            };
            if tenant != header_tenant {
                self.tenant_mismatches.fetch_add(1, Ordering::Relaxed);
            }
            for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                self.spans.fetch_add(1, Ordering::Relaxed);
                keys.insert((span.trace_id.clone(), span.span_id.clone()));
            }
        }
    }
}

struct GrpcServer {
    mode: Mode,
    received: Arc<Received>,
}

#[tonic::async_trait]
impl TraceService for GrpcServer {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if self.mode == Mode::Refuse {
            return Err(tonic::Status::resource_exhausted("pipeline full"));
        }
        let tenant = request
            .metadata()
            .get("x-scope-orgid")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.received.observe(request.get_ref(), tenant.as_deref());
        Ok(tonic::Response::new(response_for(self.mode)))
    }
}

fn response_for(mode: Mode) -> ExportTraceServiceResponse {
    match mode {
        Mode::Reject(rejected_spans) => ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans,
                error_message: "too many attributes".into(),
            }),
        },
        _ => ExportTraceServiceResponse::default(),
    }
}

async fn start_grpc(mode: Mode) -> (SocketAddr, Arc<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Arc::new(Received::default());
    let service = TraceServiceServer::new(GrpcServer {
        mode,
        received: Arc::clone(&received),
    })
    .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    (addr, received)
}

async fn http_traces(
    State((mode, received)): State<(Mode, Arc<Received>)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if mode == Mode::Refuse {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response();
    }
    let mut raw = body.to_vec();
    if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut plain = Vec::new();
        if flate2::read::GzDecoder::new(body.as_ref())
            .read_to_end(&mut plain)
            .is_err()
        {
            return (StatusCode::BAD_REQUEST, "bad gzip").into_response();
        }
        raw = plain;
    }
    let json = headers
        .get("content-type")
        .is_some_and(|v| v == "application/json");
    let request = if json {
        serde_json::from_slice::<ExportTraceServiceRequest>(&raw).map_err(|e| e.to_string())
    } else {
        ExportTraceServiceRequest::decode(raw.as_slice()).map_err(|e| e.to_string())
    };
    let request = match request {
        Ok(request) => request,
        Err(error) => return (StatusCode::BAD_REQUEST, error).into_response(),
    };
    let tenant = headers.get("x-scope-orgid").and_then(|v| v.to_str().ok());
    received.observe(&request, tenant);
    let response = response_for(mode);
    if json {
        (
            [("content-type", "application/json")],
            serde_json::to_vec(&response).unwrap_or_default(),
        )
            .into_response()
    } else {
        (
            [("content-type", "application/x-protobuf")],
            response.encode_to_vec(),
        )
            .into_response()
    }
}

async fn start_http(mode: Mode) -> (SocketAddr, Arc<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Arc::new(Received::default());
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(http_traces))
        .with_state((mode, Arc::clone(&received)));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

fn short_run(addr: SocketAddr, protocol: Protocol) -> LoadgenArgs {
    let mut args = LoadgenArgs::new(format!("http://{addr}"));
    args.protocol = protocol;
    args.duration = HumanDuration::from_millis(1000);
    args.batch_spans = 100;
    args.tenants = 3;
    args
}

/// Every span the server counted was acknowledged and nothing else, and traces never repeat.
fn assert_all_acked(report: &LoadgenReport, received: &Received) {
    let spans = received.spans.load(Ordering::Relaxed);
    assert!(report.spans_acked > 0, "{report}");
    assert_eq!(report.spans_acked, spans, "{report}");
    assert_eq!(report.spans_sent, spans);
    assert_eq!(report.requests, received.requests.load(Ordering::Relaxed));
    assert_eq!(
        (report.spans_failed, report.spans_refused),
        (0, 0),
        "{report}"
    );
    assert_eq!(received.tenant_mismatches.load(Ordering::Relaxed), 0);
    if report.unique_trace_ids {
        assert_eq!(
            received.span_keys.lock().len() as u64,
            spans,
            "no span repeats across passes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_run_acknowledges_what_the_server_received() {
    let (addr, received) = start_grpc(Mode::Accept).await;
    let report = run(short_run(addr, Protocol::Grpc)).await.expect("run");
    assert!(report.unique_trace_ids);
    assert!(
        report.requests > 64,
        "more than one pass over the pool: {report}"
    );
    assert_all_acked(&report, &received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_gzip_run_acknowledges_what_the_server_received() {
    let (addr, received) = start_grpc(Mode::Accept).await;
    let mut args = short_run(addr, Protocol::Grpc);
    args.gzip = true;
    let report = run(args).await.expect("run");
    assert!(
        report.unique_trace_ids,
        "tonic compresses each patched body"
    );
    assert_all_acked(&report, &received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_run_acknowledges_what_the_server_received() {
    let (addr, received) = start_http(Mode::Accept).await;
    let report = run(short_run(addr, Protocol::Http)).await.expect("run");
    assert_all_acked(&report, &received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_and_gzip_runs_acknowledge_what_the_server_received() {
    let (addr, received) = start_http(Mode::Accept).await;
    let mut args = short_run(addr, Protocol::Http);
    args.json = true;
    let report = run(args).await.expect("run");
    assert!(report.unique_trace_ids);
    assert_all_acked(&report, &received);

    let (addr, received) = start_http(Mode::Accept).await;
    let mut args = short_run(addr, Protocol::Http);
    args.gzip = true;
    let report = run(args).await.expect("run");
    assert!(!report.unique_trace_ids, "pre-compressed bodies repeat");
    assert_all_acked(&report, &received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_as_refused_not_failed() {
    let (grpc, _) = start_grpc(Mode::Refuse).await;
    let (http, _) = start_http(Mode::Refuse).await;
    for (addr, protocol) in [(grpc, Protocol::Grpc), (http, Protocol::Http)] {
        let mut args = short_run(addr, protocol);
        args.duration = HumanDuration::from_millis(300);
        let report = run(args).await.expect("run");
        assert!(report.spans_refused > 0, "{report}");
        assert_eq!(report.spans_refused, report.spans_sent, "{report}");
        assert_eq!(report.spans_acked + report.spans_failed, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_success_counts_rejected_spans() {
    let (addr, received) = start_grpc(Mode::Reject(10)).await;
    let mut args = short_run(addr, Protocol::Grpc);
    args.duration = HumanDuration::from_millis(300);
    let report = run(args).await.expect("run");
    assert_eq!(report.spans_rejected, report.requests * 10, "{report}");
    assert_eq!(
        report.spans_acked + report.spans_rejected,
        received.spans.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_paces_requests() {
    let (addr, received) = start_grpc(Mode::Accept).await;
    let mut args = short_run(addr, Protocol::Grpc);
    args.rate = 2000;
    let report = run(args).await.expect("run");
    // 100-span requests every 50 ms for one second: 20 requests, give or take the edges.
    assert!((1600..=2400).contains(&report.spans_acked), "{report}");
    assert_all_acked(&report, &received);
}

#[tokio::test]
async fn unreachable_grpc_endpoint_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let error = run(short_run(addr, Protocol::Grpc))
        .await
        .expect_err("nothing listens");
    assert!(error.to_string().contains("cannot connect"), "{error}");
}

#[tokio::test]
async fn unreachable_http_endpoint_counts_failures_with_the_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let mut args = short_run(addr, Protocol::Http);
    args.duration = HumanDuration::from_millis(200);
    let report = run(args).await.expect("run");
    assert_eq!(report.spans_failed, report.spans_sent);
    assert!(report.spans_failed > 0);
    assert!(
        report.first_error.is_some() && report.to_string().contains("first error"),
        "{report}"
    );
}
