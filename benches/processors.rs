//! Throughput of the tenancy processors on realistic batches: prints attributes/s for the
//! sanitizer (every built-in detector on) and the attributes processor, and CPU µs per span
//! for tenant_quota + attributes + sanitizer in a row. Run with `cargo bench --bench processors`.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use serde::de::DeserializeOwned;
use spanline::component::{Dropped, Emitter, Processor, TraceBatch};
use spanline::processors::attributes::{AttributesConfig, AttributesProcessor};
use spanline::processors::sanitizer::{SanitizerConfig, SanitizerProcessor};
use spanline::processors::tenant_quota::{TenantQuota, TenantQuotaConfig};

/// Spans per batch, as a batch processor would hand on.
const SPANS_PER_BATCH: usize = 1000;
/// Span attributes per span (resource and event attributes come on top and are not counted).
const ATTRIBUTES_PER_SPAN: usize = 10;
/// One span in `SECRET_EVERY` carries a secret (5%).
const SECRET_EVERY: usize = 20;
const TENANTS: [&str; 4] = ["calm", "noisy", "acme", "globex"];
/// How long each measurement runs (after one warm-up batch) under `cargo bench`.
const MEASURE_FOR: Duration = Duration::from_secs(3);
/// Batches cloned ahead of a timed run, so cloning is never timed.
const PREPARED: usize = 8;

const SANITIZER_YAML: &str = r#"
detectors: [credit_card, email, jwt, bearer_token, ipv4, ipv6, aws_access_key]
blocked_values: ["(?i)password=\\S+"]
blocked_key_patterns: ["(?i)^(.*\\.)?(password|secret|api_key)$"]
db_statement: true
url_query: true
mask: "****"
summary: true
"#;

const ATTRIBUTES_YAML: &str = r#"
hash_salt: bench-salt
allowlist:
  resource:
    allowed_keys: ["service.*", "tenant.id", "deployment.environment", "k8s.*", "host.name"]
  span:
    allowed_keys: ["http.*", "url.*", "server.*", "db.system", "db.statement", "rpc.*", "error", "thread.*"]
    action: hash
  event:
    allowed_keys: ["exception.*"]
actions:
  - key: deployment.region
    value: eu-west-1
    action: insert
  - key: user.email
    action: delete
"#;

const TENANT_QUOTA_YAML: &str = r#"
action: refuse
defaults:
  rate_limit_spans: 1000000000
  rate_limit_bytes: 1000GiB
  max_spans_per_trace: 100000
  max_bytes_per_trace: 1GiB
  max_attributes_per_span: 128
  max_attribute_value_bytes: 4KiB
  max_events_per_span: 128
tenants:
  noisy: { rate_limit_spans: 500000000 }
max_traces: 100000
"#;

fn s(text: String) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(text)),
    })
}

fn int(n: i64) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::IntValue(n)),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value,
        ..Default::default()
    }
}

/// Ten attributes of an HTTP server or database client span; every `SECRET_EVERY`th span
/// leaks one secret (a card, an email, a JWT or a URL token, in turn).
fn attributes(i: usize) -> Vec<KeyValue> {
    let mut attrs = vec![
        kv("http.request.method", s("GET".into())),
        kv("http.route", s("/api/v1/orders/{id}".into())),
        kv("http.response.status_code", int(200 + (i % 3) as i64)),
        kv(
            "url.full",
            s(format!("https://shop.example/api/v1/orders/{i}")),
        ),
        kv("server.address", s("orders.svc.cluster.local".into())),
        kv("server.port", int(8080)),
        kv("db.system", s("postgresql".into())),
        kv(
            "db.statement",
            s("SELECT id, total FROM orders WHERE customer_id = $1".into()),
        ),
        kv("thread.name", s(format!("worker-{}", i % 16))),
        kv("user.id", s(format!("u-{:08}", i * 7919 % 100_000_000))),
    ];
    if i.is_multiple_of(SECRET_EVERY) {
        let secret = match (i / SECRET_EVERY) % 4 {
            0 => kv("payment.note", s("paid with 4111 1111 1111 1111".into())),
            1 => kv("user.email", s("jane.doe@shop.example".into())),
            2 => kv(
                "http.request.header.authorization",
                s("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl".into()),
            ),
            _ => kv(
                "url.full",
                s(format!("https://shop.example/reset?token=t{i}&page=2")),
            ),
        };
        attrs[9] = secret;
    }
    debug_assert_eq!(attrs.len(), ATTRIBUTES_PER_SPAN);
    attrs
}

fn span(i: usize) -> Span {
    let mut trace_id = vec![9u8; 16];
    // Ten spans per trace, so per-trace limits track realistic trace counts.
    trace_id[..8].copy_from_slice(&((i / 10) as u64).to_be_bytes());
    let events = if i.is_multiple_of(10) {
        vec![Event {
            name: "exception".into(),
            attributes: vec![kv("exception.type", s("TimeoutError".into()))],
            ..Default::default()
        }]
    } else {
        Vec::new()
    };
    Span {
        trace_id,
        span_id: (i as u64).to_be_bytes().to_vec(),
        name: "GET /api/v1/orders/{id}".into(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_020_000_000,
        attributes: attributes(i),
        events,
        ..Default::default()
    }
}

/// One batch: `SPANS_PER_BATCH` spans spread over the tenants' resources.
fn batch(offset: usize) -> TraceBatch {
    let per_tenant = SPANS_PER_BATCH / TENANTS.len();
    let resource_spans = TENANTS
        .iter()
        .enumerate()
        .map(|(t, tenant)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("orders".into())),
                    kv("tenant.id", s(tenant.to_string())),
                    kv("host.name", s(format!("node-{t}"))),
                    kv("k8s.pod.name", s(format!("orders-{t}-7d9f"))),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..per_tenant)
                    .map(|i| span(offset + t * per_tenant + i))
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    TraceBatch::measured(resource_spans)
}

fn config<T: DeserializeOwned>(yaml: &str) -> T {
    serde_yaml::from_str(yaml).expect("bench config parses")
}

/// CPU time this thread has used, so other processes on the machine do not skew figures.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Spans processed, wall time and thread CPU time of one measurement.
struct Measured {
    spans: usize,
    wall: Duration,
    cpu: Duration,
}

impl Measured {
    fn per_sec(&self, per_span: usize, time: Duration) -> f64 {
        (self.spans * per_span) as f64 / time.as_secs_f64()
    }
}

/// Runs `chain` over fresh batches for `MEASURE_FOR`, timing only the processors' work.
async fn measure(chain: &mut [Box<dyn Processor>]) -> Measured {
    // `cargo test --all-targets` runs this without `--bench`: one round proves it works.
    let measure_for = if std::env::args().any(|a| a == "--bench") {
        MEASURE_FOR
    } else {
        Duration::ZERO
    };
    let template = batch(0);
    let mut measured = Measured {
        spans: 0,
        wall: Duration::ZERO,
        cpu: Duration::ZERO,
    };
    let mut warm = true;
    while warm || measured.wall < measure_for {
        let prepared: Vec<TraceBatch> = (0..PREPARED).map(|_| template.clone()).collect();
        for input in prepared {
            let spans = input.span_count();
            let (wall, cpu) = (Instant::now(), thread_cpu());
            let outputs = run_chain(chain, input).await;
            let (wall, cpu) = (wall.elapsed(), thread_cpu() - cpu);
            drop(outputs);
            if !warm {
                measured.spans += spans;
                measured.wall += wall;
                measured.cpu += cpu;
            }
            warm = false;
        }
    }
    measured
}

/// Passes `input` through every processor in turn, as the pipeline task does.
async fn run_chain(chain: &mut [Box<dyn Processor>], input: TraceBatch) -> Vec<TraceBatch> {
    let mut batches = vec![input];
    for processor in chain.iter_mut() {
        let mut next = Vec::new();
        for batch in batches {
            let (mut out, mut dropped) = (Emitter::default(), Dropped::default());
            processor
                .process(batch, &mut out, &mut dropped)
                .await
                .expect("nothing is over quota in the bench");
            next.extend(out.drain());
        }
        batches = next;
    }
    batches
}

fn sanitizer() -> Box<dyn Processor> {
    Box::new(
        SanitizerProcessor::new(&config::<SanitizerConfig>(SANITIZER_YAML), "sanitizer")
            .expect("sanitizer"),
    )
}

fn attributes_processor() -> Box<dyn Processor> {
    Box::new(
        AttributesProcessor::new(&config::<AttributesConfig>(ATTRIBUTES_YAML), "attributes")
            .expect("attributes"),
    )
}

fn tenant_quota() -> Box<dyn Processor> {
    Box::new(TenantQuota::new(&config::<TenantQuotaConfig>(
        TENANT_QUOTA_YAML,
    )))
}

fn main() {
    // Metrics are recorded as in production (a Prometheus recorder), not into a no-op.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    metrics::set_global_recorder(recorder).expect("the only recorder");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "batches of {SPANS_PER_BATCH} spans x {ATTRIBUTES_PER_SPAN} span attributes, 1 in {SECRET_EVERY} spans with a secret, {} tenants; one thread",
        TENANTS.len()
    );
    runtime.block_on(async {
        let m = measure(&mut [sanitizer()]).await;
        println!(
            "sanitizer (all 7 detectors, db_statement, url_query): {:.2} M attributes/s per core (CPU), {:.2} M/s wall, {:.3} µs CPU per span",
            m.per_sec(ATTRIBUTES_PER_SPAN, m.cpu) / 1e6,
            m.per_sec(ATTRIBUTES_PER_SPAN, m.wall) / 1e6,
            m.cpu.as_secs_f64() * 1e6 / m.spans as f64,
        );
        let m = measure(&mut [attributes_processor()]).await;
        println!(
            "attributes (allowlist with hash, 2 actions): {:.2} M attributes/s per core (CPU), {:.2} M/s wall, {:.3} µs CPU per span",
            m.per_sec(ATTRIBUTES_PER_SPAN, m.cpu) / 1e6,
            m.per_sec(ATTRIBUTES_PER_SPAN, m.wall) / 1e6,
            m.cpu.as_secs_f64() * 1e6 / m.spans as f64,
        );
        let m = measure(&mut [tenant_quota()]).await;
        println!(
            "tenant_quota alone: {:.3} µs CPU per span",
            m.cpu.as_secs_f64() * 1e6 / m.spans as f64,
        );
        let m = measure(&mut [tenant_quota(), attributes_processor(), sanitizer()]).await;
        println!(
            "tenant_quota + attributes + sanitizer: {:.3} µs CPU per span ({:.3} µs wall), {:.0} spans/s per core",
            m.cpu.as_secs_f64() * 1e6 / m.spans as f64,
            m.wall.as_secs_f64() * 1e6 / m.spans as f64,
            m.spans as f64 / m.cpu.as_secs_f64(),
        );
    });
}
