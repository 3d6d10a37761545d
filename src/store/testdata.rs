//! Realistic synthetic spans for the store's and the exporter's tests.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub fn s(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_string()))
}

pub fn i(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

const SERVICES: [(&str, &[&str]); 4] = [
    (
        "frontend",
        &["GET /", "GET /product/{id}", "POST /cart/checkout"],
    ),
    ("checkout", &["POST /api/checkout", "POST /api/orders"]),
    ("cart", &["GET /api/cart", "POST /api/cart/items"]),
    ("payment", &["POST /api/charge"]),
];

fn resource(service: usize, tenant: Option<&str>) -> Resource {
    let mut attributes = vec![
        s("service.name", SERVICES[service].0),
        s("service.version", "1.4.2"),
        s(
            "host.name",
            &format!("node-{service}.eu-west-1.compute.internal"),
        ),
        s("deployment.environment", "production"),
        s(
            "k8s.pod.name",
            &format!("{}-7d9f8b6c4-x2k{service}", SERVICES[service].0),
        ),
        s("telemetry.sdk.language", "rust"),
    ];
    if let Some(tenant) = tenant {
        attributes.push(s("tenant.id", tenant));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// One span of a trace: HTTP server attributes, sometimes a DB call, an event, an error.
fn span(rng: &mut StdRng, trace_id: &[u8; 16], parent: &[u8], service: usize, start: u64) -> Span {
    let span_id: [u8; 8] = rng.random();
    let route = SERVICES[service].1[rng.random_range(0..SERVICES[service].1.len())];
    let duration = rng.random_range(100_000..80_000_000u64);
    let error = rng.random_bool(0.05);
    let mut attributes = vec![
        s("http.route", route),
        s("http.method", route.split(' ').next().unwrap_or("GET")),
        i("http.status_code", if error { 500 } else { 200 }),
        s("url.scheme", "http"),
        s("net.peer.name", "10.0.3.17"),
    ];
    let mut events = Vec::new();
    if rng.random_bool(0.3) {
        attributes.push(s("db.system", "postgresql"));
        attributes.push(s("db.statement", "SELECT * FROM orders WHERE user_id = $1"));
    }
    if error {
        events.push(span::Event {
            time_unix_nano: start + duration / 2,
            name: "exception".into(),
            attributes: vec![
                s("exception.type", "TimeoutError"),
                s("exception.message", "upstream timed out after 30s"),
            ],
            dropped_attributes_count: 0,
        });
    }
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent.to_vec(),
        name: route.to_string(),
        kind: if parent.is_empty() { 2 } else { 3 },
        start_time_unix_nano: start,
        end_time_unix_nano: start + duration,
        attributes,
        events,
        status: error.then(|| Status {
            code: 2,
            message: "upstream timed out".into(),
        }),
        ..Default::default()
    }
}

/// `traces` traces of `spans_per_trace` spans each, starting near `start_unix_nano`,
/// grouped one `ResourceSpans` per service as an SDK would send them.
pub fn batch(
    seed: u64,
    traces: usize,
    spans_per_trace: usize,
    tenant: Option<&str>,
    start_unix_nano: u64,
) -> Vec<ResourceSpans> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
    for t in 0..traces {
        let trace_id: [u8; 16] = rng.random();
        let start = start_unix_nano + t as u64 * 1_000_000;
        let root = span(&mut rng, &trace_id, &[], 0, start);
        let root_id = root.span_id.clone();
        by_service[0].push(root);
        for n in 1..spans_per_trace {
            let service = 1 + n % (SERVICES.len() - 1);
            let child = span(
                &mut rng,
                &trace_id,
                &root_id,
                service,
                start + n as u64 * 1000,
            );
            by_service[service].push(child);
        }
    }
    let mut out = Vec::new();
    for (service, spans) in by_service.into_iter().enumerate() {
        if spans.is_empty() {
            continue;
        }
        out.push(ResourceSpans {
            resource: Some(resource(service, tenant)),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry-instrumentation-http".into(),
                    version: "0.52.0".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        });
    }
    out
}

/// A span carrying every kind of attribute value, a link and dropped counts.
pub fn exotic_span(trace_id: [u8; 16], start: u64) -> Span {
    let array = ArrayValue {
        values: vec![
            AnyValue {
                value: Some(any_value::Value::StringValue("a".into())),
            },
            AnyValue {
                value: Some(any_value::Value::IntValue(7)),
            },
        ],
    };
    let kvlist = KeyValueList {
        values: vec![s("inner", "x"), i("n", -3)],
    };
    Span {
        trace_id: trace_id.to_vec(),
        span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
        trace_state: "vendor=abc".into(),
        flags: 0x101,
        name: "exotic".into(),
        kind: 5,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1,
        attributes: vec![
            kv("bool", any_value::Value::BoolValue(true)),
            kv("double", any_value::Value::DoubleValue(0.1 + 0.2)),
            kv("int", any_value::Value::IntValue(i64::MIN)),
            kv("bytes", any_value::Value::BytesValue(vec![0, 255, 16])),
            kv("array", any_value::Value::ArrayValue(array)),
            kv("kvlist", any_value::Value::KvlistValue(kvlist)),
            KeyValue {
                key: "empty".into(),
                value: None,
                ..Default::default()
            },
            s("http.status_code", "404"),
        ],
        dropped_attributes_count: 3,
        events: vec![span::Event {
            time_unix_nano: start,
            name: "e".into(),
            attributes: vec![i("k", 1)],
            dropped_attributes_count: 1,
        }],
        dropped_events_count: 2,
        links: vec![span::Link {
            trace_id: vec![9; 16],
            span_id: vec![8; 8],
            trace_state: "x=y".into(),
            attributes: vec![s("link.kind", "follows")],
            dropped_attributes_count: 4,
            flags: 1,
        }],
        dropped_links_count: 5,
        status: Some(Status {
            code: 1,
            message: String::new(),
        }),
        ..Default::default()
    }
}

/// Flattens resource spans into (resource, scope, span) triples sorted by span id, so two
/// groupings of the same spans compare equal.
pub fn flatten(batches: &[ResourceSpans]) -> Vec<(Resource, InstrumentationScope, Span)> {
    let mut out = Vec::new();
    for rs in batches {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                out.push((
                    rs.resource.clone().unwrap_or_default(),
                    ss.scope.clone().unwrap_or_default(),
                    span.clone(),
                ));
            }
        }
    }
    out.sort_by(|a, b| (&a.2.trace_id, &a.2.span_id).cmp(&(&b.2.trace_id, &b.2.span_id)));
    out
}
