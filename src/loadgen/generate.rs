//! Synthetic traces that look like a small web shop: HTTP hops between services, DB calls, events, errors.

use opentelemetry_proto::tonic::trace::v1::{Span, Status, span, status};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::topology::{FRONTEND, SERVICES, int_value, kv_int, kv_str};

/// The knobs of the generator.
#[derive(Debug, Clone)]
pub struct GenParams {
    pub spans_per_trace: usize,
    pub error_rate: f64,
    /// Unix time in nanoseconds that generated traces end near.
    pub now_nanos: u64,
}

/// One generated span and the service it belongs to.
#[derive(Debug, Clone)]
pub struct GenSpan {
    pub service: usize,
    pub span: Span,
}

/// Where a span that may receive children sits: its index in the trace and its service.
#[derive(Clone, Copy)]
struct Parent {
    index: usize,
    service: usize,
}

/// Generates one trace of exactly `spans_per_trace` spans, parents before children.
pub fn trace(rng: &mut StdRng, params: &GenParams) -> Vec<GenSpan> {
    let trace_id: [u8; 16] = rng.random();
    let mut spans = Vec::with_capacity(params.spans_per_trace);
    let duration = root_duration_nanos(rng);
    let start = params
        .now_nanos
        .saturating_sub(duration + rng.random_range(0..1_000_000_000));
    let route = *SERVICES[FRONTEND].routes.choose(rng).unwrap_or(&"GET /");
    let root = server_span(rng, &trace_id, &[], FRONTEND, route, start, duration);
    spans.push(GenSpan {
        service: FRONTEND,
        span: root,
    });
    let mut parents = vec![Parent {
        index: 0,
        service: FRONTEND,
    }];
    while spans.len() < params.spans_per_trace {
        let remaining = params.spans_per_trace - spans.len();
        // Deeper parents are favoured so trees are not all flat fans under the root.
        let pick = if rng.random_bool(0.6) {
            parents.len() - 1
        } else {
            rng.random_range(0..parents.len())
        };
        let parent = parents[pick];
        let service = &SERVICES[parent.service];
        let call_http = remaining >= 2
            && !service.callees.is_empty()
            && (service.db.is_none() || rng.random_bool(0.55));
        if call_http {
            let callee = *service.callees.choose(rng).unwrap_or(&FRONTEND);
            add_http_call(rng, &mut spans, parent, callee);
            parents.push(Parent {
                index: spans.len() - 1,
                service: callee,
            });
        } else if let Some(db) = service.db {
            let span = db_span(rng, &spans[parent.index].span, db);
            spans.push(GenSpan {
                service: parent.service,
                span,
            });
        } else {
            let span = internal_span(rng, &spans[parent.index].span);
            spans.push(GenSpan {
                service: parent.service,
                span,
            });
        }
    }
    if rng.random_bool(params.error_rate.clamp(0.0, 1.0)) {
        inject_error(rng, &mut spans);
    }
    spans
}

/// Root durations are log-normal: median about 60 ms, roughly 2-3 % of traces over 1 s.
fn root_duration_nanos(rng: &mut StdRng) -> u64 {
    let median_ms: f64 = 60.0;
    let sigma = 1.4;
    let ms = (median_ms.ln() + sigma * standard_normal(rng)).exp();
    (ms.clamp(0.2, 60_000.0) * 1e6) as u64
}

/// Box-Muller: one standard normal sample.
fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A child interval inside the parent's: `(start, duration)`.
fn child_window(rng: &mut StdRng, parent: &Span, min_share: f64, max_share: f64) -> (u64, u64) {
    let parent_duration = parent.end_time_unix_nano - parent.start_time_unix_nano;
    let duration = (parent_duration as f64 * rng.random_range(min_share..max_share)) as u64;
    let slack = parent_duration - duration;
    let offset = if slack == 0 {
        0
    } else {
        rng.random_range(0..=slack)
    };
    (parent.start_time_unix_nano + offset, duration.max(1))
}

/// Appends an HTTP CLIENT span under `parent` and the callee's SERVER span under it.
fn add_http_call(rng: &mut StdRng, spans: &mut Vec<GenSpan>, parent: Parent, callee: usize) {
    let route = *SERVICES[callee].routes.choose(rng).unwrap_or(&"GET /");
    let (method, path) = route.split_once(' ').unwrap_or(("GET", route));
    let (start, duration) = child_window(rng, &spans[parent.index].span, 0.1, 0.8);
    let parent_span = &spans[parent.index].span;
    let mut client = base_span(
        rng,
        &parent_span.trace_id,
        &parent_span.span_id,
        method.to_string(),
        span::SpanKind::Client,
        start,
        duration,
    );
    let host = SERVICES[callee].name;
    client.attributes.splice(
        0..0,
        [
            kv_str("http.method", method),
            kv_str(
                "url.full",
                &format!(
                    "http://{host}.shop.svc.cluster.local:8080{}",
                    concrete_path(rng, path)
                ),
            ),
            kv_str("server.address", &format!("{host}.shop.svc.cluster.local")),
            kv_int("server.port", 8080),
            kv_int("http.status_code", 200),
            kv_str("network.protocol.version", "1.1"),
            kv_int("http.response.body.size", rng.random_range(120..48_000)),
            kv_str("http.request.header.x-request-id", &request_id(rng)),
        ],
    );
    let (server_start, server_duration) = child_window(rng, &client, 0.85, 0.98);
    let server = server_span(
        rng,
        &client.trace_id.clone(),
        &client.span_id.clone(),
        callee,
        route,
        server_start,
        server_duration,
    );
    spans.push(GenSpan {
        service: parent.service,
        span: client,
    });
    spans.push(GenSpan {
        service: callee,
        span: server,
    });
}

/// A SERVER span for `route` served by `service`.
fn server_span(
    rng: &mut StdRng,
    trace_id: &[u8],
    parent_id: &[u8],
    service: usize,
    route: &str,
    start: u64,
    duration: u64,
) -> Span {
    let (method, path) = route.split_once(' ').unwrap_or(("GET", route));
    let mut span = base_span(
        rng,
        trace_id,
        parent_id,
        route.to_string(),
        span::SpanKind::Server,
        start,
        duration,
    );
    span.attributes.splice(
        0..0,
        [
            kv_str("http.method", method),
            kv_str("http.route", path),
            kv_str(
                "url.full",
                &format!(
                    "http://{}:8080{}",
                    SERVICES[service].name,
                    concrete_path(rng, path)
                ),
            ),
            kv_int("http.status_code", 200),
            kv_str(
                "user_agent.original",
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/128.0 Safari/537.36",
            ),
            kv_str(
                "client.address",
                &format!(
                    "10.{}.{}.{}",
                    rng.random_range(0..=255),
                    rng.random_range(0..=255),
                    rng.random_range(1..=254)
                ),
            ),
            kv_str("url.scheme", "http"),
            kv_str(
                "server.address",
                &format!("{}.shop.svc.cluster.local", SERVICES[service].name),
            ),
            kv_int("server.port", 8080),
            kv_str("network.protocol.version", "1.1"),
            kv_int("http.response.body.size", rng.random_range(120..48_000)),
            kv_str("http.request.header.x-request-id", &request_id(rng)),
        ],
    );
    if rng.random_bool(0.3) {
        span.events.push(span::Event {
            time_unix_nano: start + duration / 10,
            name: "request.validated".to_string(),
            attributes: vec![kv_int("request.body.size", rng.random_range(64..16_384))],
            dropped_attributes_count: 0,
        });
    }
    span
}

/// A DB CLIENT span under `parent`.
fn db_span(rng: &mut StdRng, parent: &Span, db: (&str, &str, &[&str])) -> Span {
    let (system, name, statements) = db;
    let statement = *statements.choose(rng).unwrap_or(&"SELECT 1");
    let operation = statement.split(' ').next().unwrap_or("QUERY");
    let (start, duration) = child_window(rng, parent, 0.02, 0.4);
    let mut span = base_span(
        rng,
        &parent.trace_id,
        &parent.span_id,
        format!("{operation} {name}"),
        span::SpanKind::Client,
        start,
        duration,
    );
    span.attributes.splice(
        0..0,
        [
            kv_str("db.system", system),
            kv_str("db.name", name),
            kv_str("db.statement", statement),
            kv_str(
                "server.address",
                &format!("{system}-primary.data.svc.cluster.local"),
            ),
            kv_int("server.port", if system == "redis" { 6379 } else { 5432 }),
            kv_str("db.operation", operation),
            kv_str("db.user", "shop_app"),
            kv_str(
                "network.peer.address",
                &format!(
                    "10.96.{}.{}",
                    rng.random_range(0..=255),
                    rng.random_range(1..=254)
                ),
            ),
        ],
    );
    span
}

/// An INTERNAL span for in-process work.
fn internal_span(rng: &mut StdRng, parent: &Span) -> Span {
    let names = [
        "render template",
        "validate request",
        "compute price",
        "serialize response",
    ];
    let name = *names.choose(rng).unwrap_or(&"work");
    let (start, duration) = child_window(rng, parent, 0.05, 0.5);
    let mut span = base_span(
        rng,
        &parent.trace_id,
        &parent.span_id,
        name.to_string(),
        span::SpanKind::Internal,
        start,
        duration,
    );
    span.attributes.splice(
        0..0,
        [
            kv_str("code.function", "handle"),
            kv_str("code.namespace", "shop::handlers"),
        ],
    );
    span
}

fn base_span(
    rng: &mut StdRng,
    trace_id: &[u8],
    parent_id: &[u8],
    name: String,
    kind: span::SpanKind,
    start: u64,
    duration: u64,
) -> Span {
    let span_id: [u8; 8] = rng.random();
    let worker = rng.random_range(0..16);
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent_id.to_vec(),
        flags: 0x101,
        name,
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + duration,
        // Kind-specific attributes are put in front of these by the callers.
        attributes: vec![
            kv_str("thread.name", &format!("tokio-runtime-worker-{worker}")),
            kv_int("thread.id", 40 + worker),
        ],
        ..Span::default()
    }
}

/// Marks a random span ERROR with an exception event, and every ancestor ERROR too.
fn inject_error(rng: &mut StdRng, spans: &mut [GenSpan]) {
    let failing = rng.random_range(0..spans.len());
    let span = &mut spans[failing].span;
    span.events.push(span::Event {
        time_unix_nano: span.end_time_unix_nano,
        name: "exception".to_string(),
        attributes: vec![
            kv_str("exception.type", "UpstreamTimeout"),
            kv_str("exception.message", "deadline exceeded after 800ms waiting for upstream"),
            kv_str("exception.stacktrace", "UpstreamTimeout: deadline exceeded\n  at shop::client::call (client.rs:88)\n  at shop::handlers::handle (handlers.rs:41)"),
        ],
        dropped_attributes_count: 0,
    });
    let mut index = failing;
    loop {
        mark_error(&mut spans[index].span);
        let parent_id = spans[index].span.parent_span_id.clone();
        match spans[..index]
            .iter()
            .position(|s| s.span.span_id == parent_id)
        {
            Some(parent) => index = parent,
            None => break,
        }
    }
}

fn mark_error(span: &mut Span) {
    span.status = Some(Status {
        code: status::StatusCode::Error as i32,
        message: "upstream request failed".to_string(),
    });
    for attribute in &mut span.attributes {
        if attribute.key == "http.status_code" {
            attribute.value = Some(int_value(500));
        }
    }
}

/// A UUID-shaped request id, as load balancers attach.
fn request_id(rng: &mut StdRng) -> String {
    let bits: u128 = rng.random();
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Replaces `{param}` segments with concrete values, as a real URL has.
fn concrete_path(rng: &mut StdRng, path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    for segment in path.split('/').skip(1) {
        out.push('/');
        if segment.starts_with('{') {
            out.push_str(&rng.random_range(10_000..99_999).to_string());
        } else {
            out.push_str(segment);
        }
    }
    out
}
