//! Component tests for the tail sampler, on a paused tokio clock.

use std::collections::HashMap;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use tokio::time::{Instant, advance};

use super::policy::{PolicySet, Verdict};
use super::trace::{Piece, Trace};
use super::{TailSampler, TailSamplingConfig, TailSamplingProcessorFactory};
use crate::component::tenant::TENANT_ATTRIBUTE;
use crate::component::{
    AnyValue, ComponentConfig, Dropped, Emitter, FlushReason, KeyValue, Problems, Processor,
    ProcessorFactory, Resource, ResourceSpans, ScopeSpans, Span, Status, TraceBatch, any_value,
};

const MS: u64 = 1_000_000;

/// Trace `n`'s id: its low 56 bits, the randomness probabilistic sampling reads, are spread
/// like a real random id's.
fn trace_id(n: u32) -> Vec<u8> {
    let mut id = vec![0xab; 16];
    let spread = n.wrapping_mul(0x9e37_79b9).rotate_left(7);
    id[8..12].copy_from_slice(&spread.to_be_bytes());
    id[12..].copy_from_slice(&n.to_be_bytes());
    id
}

/// A span of trace `t`; `parent` 0 makes it a root.
fn span(t: u32, id: u8, parent: u8, start_ms: u64, end_ms: u64) -> Span {
    Span {
        trace_id: trace_id(t),
        span_id: vec![id; 8],
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            vec![parent; 8]
        },
        name: format!("s{t}-{id}"),
        start_time_unix_nano: start_ms * MS,
        end_time_unix_nano: end_ms * MS,
        ..Default::default()
    }
}

fn error(mut s: Span) -> Span {
    s.status = Some(Status {
        code: StatusCode::Error as i32,
        ..Default::default()
    });
    s
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn with_attr(mut s: Span, key: &str, value: any_value::Value) -> Span {
    s.attributes.push(kv(key, value));
    s
}

fn group(spans: Vec<Span>, tenant: Option<&str>) -> ResourceSpans {
    let attributes = tenant
        .map(|t| {
            vec![kv(
                TENANT_ATTRIBUTE,
                any_value::Value::StringValue(t.into()),
            )]
        })
        .unwrap_or_default();
    ResourceSpans {
        resource: Some(Resource {
            attributes,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        schema_url: String::new(),
    }
}

fn batch(spans: Vec<Span>) -> TraceBatch {
    TraceBatch::measured(vec![group(spans, None)])
}

fn config(yaml: &str) -> TailSamplingConfig {
    let config: TailSamplingConfig = serde_yaml::from_str(yaml).expect("test config should parse");
    let mut problems = Problems::new();
    config.validate(&mut problems);
    assert!(!problems.has_errors(), "{:?}", problems.into_vec());
    config
}

/// A trace built from one group of spans, for policy tests.
fn trace_of(spans: Vec<Span>, tenant: Option<&str>) -> Trace {
    let id = super::trace::trace_id_of(&spans[0]);
    let mut trace = Trace::new(id, Instant::now(), 0);
    trace.add(Piece::new(id, group(spans, tenant)), Instant::now());
    trace.decode();
    trace
}

fn verdict(policies_yaml: &str, trace: &Trace) -> Verdict {
    let config = config(policies_yaml);
    let mut set = PolicySet::build(&config.policies, 1).expect("policies should compile");
    set.decide(trace, Instant::now()).verdict
}

struct Harness {
    sampler: TailSampler,
    metrics: PrometheusHandle,
    out: Vec<Span>,
    dropped: HashMap<&'static str, u64>,
    sent: u64,
}

impl Harness {
    fn new(yaml: &str) -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        let config = config(yaml);
        let sampler = metrics::with_local_recorder(&recorder, || {
            TailSampler::new(&config, "tail_sampling", "traces")
        })
        .expect("sampler should build");
        Self {
            sampler,
            metrics,
            out: Vec::new(),
            dropped: HashMap::new(),
            sent: 0,
        }
    }

    fn take(&mut self, mut out: Emitter, mut dropped: Dropped) {
        for batch in out.drain() {
            for rs in batch.into_resource_spans() {
                for ss in rs.scope_spans {
                    self.out.extend(ss.spans);
                }
            }
        }
        for (reason, n) in dropped.drain() {
            *self.dropped.entry(reason).or_default() += n;
        }
    }

    async fn send(&mut self, spans: Vec<Span>) {
        self.send_batch(batch(spans)).await;
    }

    async fn send_batch(&mut self, batch: TraceBatch) {
        self.sent += batch.span_count() as u64;
        let (mut out, mut dropped) = (Emitter::default(), Dropped::default());
        self.sampler
            .process(batch, &mut out, &mut dropped)
            .await
            .expect("tail sampling never refuses");
        self.take(out, dropped);
        settle().await;
    }

    async fn flush(&mut self, reason: FlushReason) {
        settle().await;
        let (mut out, mut dropped) = (Emitter::default(), Dropped::default());
        self.sampler.flush(reason, &mut out, &mut dropped).await;
        self.take(out, dropped);
    }

    async fn wait(&mut self, d: Duration) {
        advance(d).await;
        self.flush(FlushReason::Wakeup).await;
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.out.iter().map(|s| s.name.clone()).collect();
        names.sort();
        names
    }

    fn drops(&self, reason: &str) -> u64 {
        self.dropped.get(reason).copied().unwrap_or(0)
    }

    /// Every span that went in came out or was dropped with a reason, exactly once.
    fn assert_accounted(&self) {
        let dropped: u64 = self.dropped.values().sum();
        assert_eq!(
            self.out.len() as u64 + dropped,
            self.sent,
            "out {} dropped {:?}",
            self.out.len(),
            self.dropped
        );
    }
}

/// Lets the shard tasks run until they are idle.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

const KEEP_ALL: &str = "policies: [{name: all, type: always_sample}]\n";
const ERRORS: &str =
    "policies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]\n";

#[test]
fn example_yaml_parses_and_validates() {
    let yaml = TailSamplingProcessorFactory::EXAMPLE_YAML;
    let value: serde_yaml::Value = serde_yaml::from_str(yaml).expect("example should be yaml");
    let inner = serde_yaml::to_string(&value["tail_sampling"]).expect("section should serialise");
    let config = config(&inner);
    assert_eq!(config.policies.len(), 5);
    assert_eq!(config.decision_wait.get(), Duration::from_secs(10));
}

#[test]
fn validation_names_every_bad_policy_by_path() {
    let config: TailSamplingConfig = serde_yaml::from_str(
        "policies:
  - {name: a, type: latency, latency: {threshold_ms: -5}}
  - {name: b, type: probabilistic, probabilistic: {sampling_percentage: 150}}
  - {name: c, type: and, and: {and_sub_policy: []}}
  - {name: d, type: bogus}
  - {name: e, type: tenant, tenant: {tenants: [x], policies: [{name: f, type: span_count, span_count: {min_spans: 0}}]}}
  - {name: a, type: status_code, status_code: {status_codes: [FAILED]}, latency: {threshold_ms: 1}}
",
    )
    .expect("config should parse");
    let mut problems = Problems::new();
    config.validate(&mut problems);
    let paths: Vec<String> = problems.into_vec().into_iter().map(|p| p.path).collect();
    for want in [
        "policies[0]::latency::threshold_ms",
        "policies[1]::probabilistic::sampling_percentage",
        "policies[2]::and::and_sub_policy",
        "policies[3]::type",
        "policies[4]::tenant::policies[0]::span_count::min_spans",
        "policies[5]::status_code::status_codes[0]",
        "policies[5]::latency",
        "policies[5]::name",
    ] {
        assert!(
            paths.iter().any(|p| p == want),
            "missing {want} in {paths:?}"
        );
    }
}

#[test]
fn unknown_keys_are_refused() {
    let result: Result<TailSamplingConfig, _> = serde_yaml::from_str("decision_wiat: 1s\n");
    assert!(result.is_err());
}

#[tokio::test(start_paused = true)]
async fn status_code_latency_and_attributes_select_traces() {
    let ok = trace_of(vec![span(1, 1, 0, 0, 50)], None);
    let failed = trace_of(
        vec![span(2, 1, 0, 0, 50), error(span(2, 2, 1, 10, 20))],
        None,
    );
    assert_eq!(verdict(ERRORS, &ok), Verdict::NotSampled);
    assert_eq!(verdict(ERRORS, &failed), Verdict::Sampled);

    let latency = "policies: [{name: slow, type: latency, latency: {threshold_ms: 100, upper_threshold_ms: 1000}}]\n";
    // Duration is the last end minus the first start across spans, not one span's length.
    let spread = trace_of(vec![span(3, 1, 0, 0, 60), span(3, 2, 1, 90, 150)], None);
    assert_eq!(verdict(latency, &spread), Verdict::Sampled);
    assert_eq!(verdict(latency, &ok), Verdict::NotSampled);
    assert_eq!(
        verdict(latency, &trace_of(vec![span(4, 1, 0, 0, 5000)], None)),
        Verdict::NotSampled
    );

    let route = |v: &str| {
        trace_of(
            vec![with_attr(
                span(5, 1, 0, 0, 1),
                "http.route",
                any_value::Value::StringValue(v.into()),
            )],
            None,
        )
    };
    let exact = "policies: [{name: r, type: string_attribute, string_attribute: {key: http.route, values: [/pay]}}]\n";
    let regex = "policies: [{name: r, type: string_attribute, string_attribute: {key: http.route, values: ['/api/.*'], enabled_regex_matching: true}}]\n";
    let invert = "policies: [{name: r, type: string_attribute, string_attribute: {key: http.route, values: [/healthz], invert_match: true}}]\n";
    assert_eq!(verdict(exact, &route("/pay")), Verdict::Sampled);
    assert_eq!(verdict(exact, &route("/payment")), Verdict::NotSampled);
    assert_eq!(verdict(regex, &route("/api/v1")), Verdict::Sampled);
    assert_eq!(verdict(regex, &route("/x/api/v1")), Verdict::NotSampled);
    assert_eq!(verdict(invert, &route("/healthz")), Verdict::NotSampled);
    assert_eq!(verdict(invert, &route("/pay")), Verdict::Sampled);

    let numeric = "policies: [{name: n, type: numeric_attribute, numeric_attribute: {key: http.status_code, min_value: 500, max_value: 599}}]\n";
    let code = |c: i64| {
        trace_of(
            vec![with_attr(
                span(6, 1, 0, 0, 1),
                "http.status_code",
                any_value::Value::IntValue(c),
            )],
            None,
        )
    };
    assert_eq!(verdict(numeric, &code(503)), Verdict::Sampled);
    assert_eq!(verdict(numeric, &code(200)), Verdict::NotSampled);

    let boolean = "policies: [{name: b, type: boolean_attribute, boolean_attribute: {key: debug, value: true}}]\n";
    let flag = |b: bool| {
        trace_of(
            vec![with_attr(
                span(7, 1, 0, 0, 1),
                "debug",
                any_value::Value::BoolValue(b),
            )],
            None,
        )
    };
    assert_eq!(verdict(boolean, &flag(true)), Verdict::Sampled);
    assert_eq!(verdict(boolean, &flag(false)), Verdict::NotSampled);
}

#[tokio::test(start_paused = true)]
async fn span_count_trace_state_and_tenant_policies() {
    let counts =
        "policies: [{name: c, type: span_count, span_count: {min_spans: 2, max_spans: 3}}]\n";
    let n = |k: u8| trace_of((1..=k).map(|i| span(1, i, 0, 0, 1)).collect(), None);
    assert_eq!(verdict(counts, &n(1)), Verdict::NotSampled);
    assert_eq!(verdict(counts, &n(3)), Verdict::Sampled);
    assert_eq!(verdict(counts, &n(4)), Verdict::NotSampled);

    let state =
        "policies: [{name: t, type: trace_state, trace_state: {key: vendor, values: [keep]}}]\n";
    let mut s = span(2, 1, 0, 0, 1);
    s.trace_state = "other=1,vendor=keep".into();
    assert_eq!(verdict(state, &trace_of(vec![s], None)), Verdict::Sampled);
    assert_eq!(
        verdict(state, &trace_of(vec![span(2, 1, 0, 0, 1)], None)),
        Verdict::NotSampled
    );

    let tenant = "policies: [{name: p, type: tenant, tenant: {tenants: [premium], policies: [{name: slow, type: latency, latency: {threshold_ms: 300}}]}}]\n";
    let slow = |t: &str| trace_of(vec![span(3, 1, 0, 0, 400)], Some(t));
    assert_eq!(verdict(tenant, &slow("premium")), Verdict::Sampled);
    assert_eq!(verdict(tenant, &slow("basic")), Verdict::NotSampled);
}

#[tokio::test(start_paused = true)]
async fn combinators_and_drop_precedence() {
    let and = "policies: [{name: a, type: and, and: {and_sub_policy: [
        {name: e, type: status_code, status_code: {status_codes: [ERROR]}},
        {name: s, type: latency, latency: {threshold_ms: 100}}]}}]\n";
    let slow_error = trace_of(vec![error(span(1, 1, 0, 0, 200))], None);
    let fast_error = trace_of(vec![error(span(1, 1, 0, 0, 20))], None);
    assert_eq!(verdict(and, &slow_error), Verdict::Sampled);
    assert_eq!(verdict(and, &fast_error), Verdict::NotSampled);

    let not = "policies: [{name: n, type: not, not: {not_sub_policy: {name: e, type: status_code, status_code: {status_codes: [ERROR]}}}}]\n";
    assert_eq!(verdict(not, &fast_error), Verdict::NotSampled);
    assert_eq!(
        verdict(not, &trace_of(vec![span(2, 1, 0, 0, 1)], None)),
        Verdict::Sampled
    );

    // A drop wins over any sample, whatever the order of the policies.
    let drop_last = "policies:
  - {name: all, type: always_sample}
  - {name: no-health, type: drop, drop: {drop_sub_policy: [{name: h, type: string_attribute, string_attribute: {key: http.route, values: [/healthz]}}]}}
";
    let health = trace_of(
        vec![with_attr(
            span(3, 1, 0, 0, 1),
            "http.route",
            any_value::Value::StringValue("/healthz".into()),
        )],
        None,
    );
    assert_eq!(verdict(drop_last, &health), Verdict::Dropped);
    assert_eq!(verdict(drop_last, &fast_error), Verdict::Sampled);
}

#[tokio::test(start_paused = true)]
async fn probabilistic_is_consistent_and_close_to_its_share() {
    let yaml = "policies: [{name: p, type: probabilistic, probabilistic: {sampling_percentage: 10, hash_salt: s1}}]\n";
    let config = config(yaml);
    let mut one = PolicySet::build(&config.policies, 1).expect("compiles");
    let mut two = PolicySet::build(&config.policies, 4).expect("compiles");
    let mut kept = 0;
    for t in 0..5000 {
        let trace = trace_of(vec![span(t, 1, 0, 0, 1)], None);
        let a = one.decide(&trace, Instant::now());
        let b = two.decide(&trace, Instant::now());
        assert_eq!(a.verdict, b.verdict, "instances disagree on trace {t}");
        if a.verdict == Verdict::Sampled {
            kept += 1;
            assert_eq!(a.adjusted_count, Some(10.0));
        }
    }
    assert!((400..600).contains(&kept), "kept {kept} of 5000 at 10%");
}

/// A span of trace `t` whose id ends in `randomness` (the trace id's low 56 bits).
fn span_with_randomness(t: u32, id: u8, randomness: u64) -> Span {
    let mut s = span(t, id, 0, 0, 1);
    s.trace_id[8..].copy_from_slice(&randomness.to_be_bytes());
    s.trace_id[8] = t as u8;
    s
}

#[tokio::test(start_paused = true)]
async fn unsalted_probabilistic_keeps_by_trace_id_randomness() {
    let yaml =
        "policies: [{name: p, type: probabilistic, probabilistic: {sampling_percentage: 10}}]\n";
    let config = config(yaml);
    let mut one = PolicySet::build(&config.policies, 1).expect("compiles");
    let mut two = PolicySet::build(&config.policies, 4).expect("compiles");
    let threshold = super::tracestate::threshold_for(0.1);
    let mut kept = 0;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for t in 0..5000 {
        // splitmix64: well-spread randomness, the same on every run.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = (state ^ (state >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let randomness = (z ^ (z >> 31)) >> 8;
        let trace = trace_of(vec![span_with_randomness(t, 1, randomness)], None);
        let a = one.decide(&trace, Instant::now());
        let b = two.decide(&trace, Instant::now());
        assert_eq!(a, b, "instances disagree on trace {t}");
        assert_eq!(a.verdict == Verdict::Sampled, randomness >= threshold);
        if a.verdict == Verdict::Sampled {
            kept += 1;
            assert_eq!(a.threshold, Some(threshold));
        }
    }
    assert!((400..600).contains(&kept), "kept {kept} of 5000 at 10%");
}

#[tokio::test(start_paused = true)]
async fn a_probabilistic_decision_is_recorded_in_the_tracestate() {
    let half =
        "policies: [{name: half, type: probabilistic, probabilistic: {sampling_percentage: 50}}]\n";
    let mut h = Harness::new(&format!("num_shards: 2\n{half}"));
    let mut root = span_with_randomness(1, 1, 0xc0 << 48);
    root.trace_state = "vendor=x".into();
    let mut child = span_with_randomness(1, 2, 0xc0 << 48);
    child.trace_state = "ot=th:c;rv:f0000000000000".into();
    let dropped = span_with_randomness(2, 1, 0x7f << 48);
    h.send(vec![root, child, dropped]).await;
    h.wait(Duration::from_secs(3)).await;
    h.send(vec![span_with_randomness(1, 3, 0xc0 << 48)]).await;
    h.flush(FlushReason::Wakeup).await;
    let states: HashMap<String, String> = h
        .out
        .iter()
        .map(|s| (s.name.clone(), s.trace_state.clone()))
        .collect();
    assert_eq!(states.len(), 3, "{states:?}");
    assert_eq!(states["s1-1"], "ot=th:8,vendor=x");
    // An upstream threshold above ours (25% before this stage) stays.
    assert_eq!(states["s1-2"], "ot=th:c;rv:f0000000000000");
    // A late span follows the decision with the same marks.
    assert_eq!(states["s1-3"], "ot=th:8");
    let ot = states["s1-1"]
        .split(',')
        .find_map(|m| m.strip_prefix("ot="));
    let th = ot.and_then(|v| v.split(';').find_map(|k| k.strip_prefix("th:")));
    let threshold = th.and_then(super::tracestate::parse_threshold);
    assert_eq!(threshold, Some(super::tracestate::threshold_for(0.5)));
    let adjusted = h.out[0]
        .attributes
        .iter()
        .find(|kv| kv.key == "sampling.adjusted_count")
        .and_then(|kv| kv.value.clone());
    assert_eq!(
        adjusted,
        Some(AnyValue {
            value: Some(any_value::Value::DoubleValue(2.0))
        })
    );
    assert_eq!(h.drops("not_sampled"), 1);
    h.assert_accounted();
}

#[tokio::test(start_paused = true)]
async fn rate_limiting_refills_over_time() {
    let yaml =
        "policies: [{name: r, type: rate_limiting, rate_limiting: {spans_per_second: 10}}]\n";
    let config = config(yaml);
    let mut set = PolicySet::build(&config.policies, 1).expect("compiles");
    let trace = trace_of((1..=4).map(|i| span(1, i, 0, 0, 1)).collect(), None);
    let decide = |set: &mut PolicySet| set.decide(&trace, Instant::now()).verdict;
    assert_eq!(decide(&mut set), Verdict::Sampled);
    assert_eq!(decide(&mut set), Verdict::Sampled);
    assert_eq!(decide(&mut set), Verdict::NotSampled);
    advance(Duration::from_millis(500)).await;
    assert_eq!(decide(&mut set), Verdict::Sampled);
}

#[tokio::test(start_paused = true)]
async fn root_decides_after_decision_wait_after_root() {
    let mut h = Harness::new(&format!("num_shards: 2\n{KEEP_ALL}"));
    h.send(vec![span(1, 2, 1, 0, 5)]).await;
    h.send(vec![span(1, 1, 0, 0, 10)]).await;
    h.wait(Duration::from_millis(1900)).await;
    assert!(h.out.is_empty(), "decided before decision_wait_after_root");
    h.wait(Duration::from_millis(200)).await;
    assert_eq!(h.names(), ["s1-1", "s1-2"]);
    let policy = h.out[0]
        .attributes
        .iter()
        .find(|kv| kv.key == "sampling.policy");
    assert_eq!(
        policy.and_then(|kv| kv.value.clone()),
        Some(AnyValue {
            value: Some(any_value::Value::StringValue("all".into()))
        })
    );
    h.assert_accounted();
}

#[tokio::test(start_paused = true)]
async fn inactivity_decides_after_decision_wait() {
    let mut h = Harness::new(&format!("num_shards: 1\n{KEEP_ALL}"));
    h.send(vec![span(1, 2, 1, 0, 5)]).await;
    h.wait(Duration::from_secs(6)).await;
    h.send(vec![span(1, 3, 1, 0, 5)]).await;
    // 10s after the first span, but only 4s after the last one: not yet.
    h.wait(Duration::from_secs(4)).await;
    assert!(h.out.is_empty());
    h.wait(Duration::from_secs(6)).await;
    assert_eq!(h.names(), ["s1-2", "s1-3"]);
    h.assert_accounted();
}

#[tokio::test(start_paused = true)]
async fn max_trace_age_decides_a_trace_that_never_goes_quiet() {
    let mut h = Harness::new(&format!("num_shards: 1\nmax_trace_age: 30s\n{KEEP_ALL}"));
    for i in 0..7u8 {
        h.send(vec![span(1, i + 2, 1, 0, 5)]).await;
        h.wait(Duration::from_secs(5)).await;
    }
    // First span at 0s, last at 30s: max age reached at 30s, before any inactivity.
    assert_eq!(h.out.len(), 7);
    h.assert_accounted();
}

#[tokio::test(start_paused = true)]
async fn late_spans_follow_the_cached_decision() {
    let mut h = Harness::new(&format!("num_shards: 2\n{ERRORS}"));
    h.send(vec![error(span(1, 1, 0, 0, 10)), span(2, 1, 0, 0, 10)])
        .await;
    h.wait(Duration::from_secs(3)).await;
    assert_eq!(h.names(), ["s1-1"]);
    assert_eq!(h.drops("not_sampled"), 1);
    h.send(vec![span(1, 5, 1, 0, 1), span(2, 5, 1, 0, 1)]).await;
    h.flush(FlushReason::Wakeup).await;
    assert_eq!(h.names(), ["s1-1", "s1-5"]);
    assert_eq!(h.drops("not_sampled"), 2);
    let text = h.metrics.render();
    assert!(text.contains("spanline_tail_sampling_late_spans_total{processor=\"tail_sampling\",pipeline=\"traces\",decision=\"sampled\"} 1"), "{text}");
    h.assert_accounted();
}

#[tokio::test(start_paused = true)]
async fn decision_cache_lookups_and_policy_evaluations_are_counted() {
    let mut h = Harness::new(&format!("num_shards: 2\n{ERRORS}"));
    h.send(vec![error(span(1, 1, 0, 0, 10)), span(2, 1, 0, 0, 10)])
        .await;
    // A second piece of a buffered trace does not look in the caches.
    h.send(vec![span(1, 2, 1, 0, 5)]).await;
    h.wait(Duration::from_secs(3)).await;
    h.send(vec![
        span(1, 5, 1, 0, 1),
        span(2, 5, 1, 0, 1),
        span(3, 1, 0, 0, 1),
    ])
    .await;
    h.flush(FlushReason::Wakeup).await;
    let text = h.metrics.render();
    let lookups = |cache: &str, result: &str| {
        format!(
            "spanline_tail_sampling_decision_cache_lookups_total{{processor=\"tail_sampling\",pipeline=\"traces\",cache=\"{cache}\",result=\"{result}\"}}"
        )
    };
    // New traces 1, 2 and 3 miss both caches; late trace 1 hits the sampled cache and late
    // trace 2 misses it, then hits the not-sampled cache.
    assert!(
        text.contains(&format!("{} 1\n", lookups("sampled", "hit"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} 4\n", lookups("sampled", "miss"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} 1\n", lookups("not_sampled", "hit"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} 3\n", lookups("not_sampled", "miss"))),
        "{text}"
    );
    let evaluations = "spanline_tail_sampling_policy_evaluation_seconds_count{processor=\"tail_sampling\",pipeline=\"traces\"} 2\n";
    assert!(text.contains(evaluations), "{text}");
    h.flush(FlushReason::Shutdown).await;
    h.assert_accounted();
}

#[tokio::test(start_paused = true)]
async fn shutdown_decides_every_buffered_trace() {
    let mut h = Harness::new(&format!("num_shards: 3\n{KEEP_ALL}"));
    h.send((1..=30).map(|t| span(t, 2, 1, 0, 1)).collect())
        .await;
    h.flush(FlushReason::Shutdown).await;
    assert_eq!(h.out.len(), 30);
    h.assert_accounted();
    h.sampler.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_can_drop_pending_traces() {
    let mut h = Harness::new(&format!(
        "num_shards: 2\ndrop_pending_traces_on_shutdown: true\n{KEEP_ALL}"
    ));
    h.send((1..=10).map(|t| span(t, 2, 1, 0, 1)).collect())
        .await;
    h.flush(FlushReason::Shutdown).await;
    assert!(h.out.is_empty());
    assert_eq!(h.drops("shutdown"), 10);
    h.assert_accounted();
}

/// A padded span so that traces take real room in the budget.
fn heavy(t: u32, id: u8) -> Span {
    with_attr(
        span(t, id, if id == 1 { 0 } else { 1 }, 0, 1),
        "payload",
        any_value::Value::StringValue("x".repeat(900)),
    )
}

const FLOOD: &str = "num_shards: 2\nmemory_limit: 1MiB\nmax_trace_bytes: 64KiB\npolicies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
  - {name: some, type: probabilistic, probabilistic: {sampling_percentage: 20}}
";

/// Sends ~10MiB of spans (10× the budget) within one decision window; one trace in 20 has
/// an error. `collect` says whether the pipeline takes decided spans between batches.
async fn flood(h: &mut Harness, collect: bool) -> Vec<String> {
    let limit = 1024 * 1024;
    let mut error_spans = Vec::new();
    for round in 0..100u32 {
        let mut spans = Vec::new();
        for k in 0..10u32 {
            let t = round * 10 + k;
            let failing = t % 20 == 0;
            for id in 1..=10u8 {
                let s = heavy(t, id);
                spans.push(if failing && id == 3 { error(s) } else { s });
            }
            if failing {
                error_spans.push(format!("s{t}-3"));
            }
        }
        h.send(spans).await;
        if collect {
            h.flush(FlushReason::Wakeup).await;
        }
        let peak = h.sampler.peak_accounted_bytes();
        assert!(peak <= limit, "peak {peak} over {limit}");
    }
    h.flush(FlushReason::Shutdown).await;
    assert!(h.sampler.peak_accounted_bytes() <= limit);
    h.assert_accounted();
    error_spans
}

fn assert_kept(h: &Harness, spans: &[String]) {
    let names = h.names();
    for wanted in spans {
        assert!(
            names.binary_search(wanted).is_ok(),
            "error span {wanted} was lost"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_flood_is_decided_early_within_the_budget() {
    let mut h = Harness::new(FLOOD);
    let errors = flood(&mut h, true).await;
    assert_kept(&h, &errors);
    let text = h.metrics.render();
    assert!(text.contains("reason=\"memory_pressure\"}"), "{text}");
    assert_eq!(h.drops("memory_pressure"), 0, "{:?}", h.dropped);
}

#[tokio::test(start_paused = true)]
async fn a_flood_into_a_stalled_pipeline_sheds_the_least_valuable_spans() {
    let mut h = Harness::new(FLOOD);
    let errors = flood(&mut h, false).await;
    assert!(
        h.drops("memory_pressure") > 0,
        "a flood this size must shed: {:?}",
        h.dropped
    );
    assert_kept(&h, &errors);
}

#[tokio::test(start_paused = true)]
async fn a_huge_trace_is_decided_at_max_trace_bytes_and_its_rest_follows() {
    let mut h = Harness::new(&format!("num_shards: 1\nmax_trace_bytes: 8KiB\n{KEEP_ALL}"));
    for id in 1..=20u8 {
        h.send(vec![heavy(1, id)]).await;
    }
    h.flush(FlushReason::Wakeup).await;
    // Decided once it passed 8KiB (~9 spans); the rest passed straight through.
    assert_eq!(h.out.len(), 20);
    let text = h.metrics.render();
    assert!(text.contains("reason=\"max_trace_bytes\"} 1"), "{text}");
    h.assert_accounted();
}

/// Sum of every `decisions_total` series: how many traces were decided.
fn decisions(h: &Harness) -> u64 {
    let mut total = 0;
    for line in h.metrics.render().lines() {
        if line.starts_with("spanline_tail_sampling_decisions_total{") {
            total += line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

const PROPERTY_POLICIES: &str = "policies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
  - {name: some, type: probabilistic, probabilistic: {sampling_percentage: 30}}
  - {name: no-debug, type: drop, drop: {drop_sub_policy: [{name: d, type: boolean_attribute, boolean_attribute: {key: debug, value: true}}]}}
";

/// Plays `ops` (trace, error, debug, milliseconds to wait after) through a sampler, with
/// spans padded by `pad` bytes; the pipeline collects only after waits of `collect_from` ms
/// or more, so shorter waits model a pipeline that has stalled.
async fn play(
    yaml: &str,
    ops: &[(u32, bool, bool, u16)],
    pad: usize,
    collect_from: u16,
) -> (Harness, HashMap<u32, Vec<Span>>) {
    let mut h = Harness::new(yaml);
    let mut sent: HashMap<u32, Vec<Span>> = HashMap::new();
    for (t, failing, debug, wait) in ops {
        let spans = sent.entry(*t).or_default();
        let id = spans.len() as u8 + 1;
        let mut s = with_attr(
            span(*t, id, if id == 1 { 0 } else { 1 }, 0, 1),
            "payload",
            any_value::Value::StringValue("x".repeat(pad)),
        );
        if *failing {
            s = error(s);
        }
        if *debug {
            s = with_attr(s, "debug", any_value::Value::BoolValue(true));
        }
        spans.push(s.clone());
        h.send(vec![s]).await;
        advance(Duration::from_millis(u64::from(*wait))).await;
        if *wait >= collect_from {
            h.flush(FlushReason::Wakeup).await;
        }
    }
    h.flush(FlushReason::Shutdown).await;
    (h, sent)
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a test runtime should build")
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Every trace is decided once and all of its spans share the decision, late ones too.
    #[test]
    fn every_trace_is_decided_once_and_all_its_spans_follow(
        ops in proptest::collection::vec((0u32..25, proptest::bool::weighted(0.1), proptest::bool::weighted(0.05), 0u16..3000), 1..120)
    ) {
        let yaml = format!("num_shards: 3\n{PROPERTY_POLICIES}");
        let (h, sent) = paused_runtime().block_on(play(&yaml, &ops, 100, 0));
        h.assert_accounted();
        proptest::prop_assert_eq!(decisions(&h), sent.len() as u64);
        for (t, spans) in &sent {
            let out = h.out.iter().filter(|s| s.trace_id == trace_id(*t)).count();
            proptest::prop_assert!(out == 0 || out == spans.len(), "trace {} split: {} of {} out", t, out, spans.len());
            let first_error = spans.iter().position(|s| s.status.is_some());
            let debug = spans.iter().any(|s| s.attributes.iter().any(|kv| kv.key == "debug"));
            // An error in the first span is seen by the first decision, so the trace is kept
            // unless a drop policy matched.
            if first_error == Some(0) && !debug {
                proptest::prop_assert_eq!(out, spans.len());
            }
        }
    }

    /// Under a budget far too small for the traffic, accounted bytes never pass it and
    /// every span still ends in one counted outcome.
    #[test]
    fn buffered_bytes_never_exceed_the_budget(
        ops in proptest::collection::vec((0u32..400, proptest::bool::weighted(0.1), proptest::bool::ANY, 0u16..50), 1..300)
    ) {
        let yaml = format!("num_shards: 2\nmemory_limit: 1MiB\nmax_trace_bytes: 256KiB\n{PROPERTY_POLICIES}");
        let (h, _) = paused_runtime().block_on(play(&yaml, &ops, 12_000, 40));
        proptest::prop_assert!(h.sampler.peak_accounted_bytes() > 0);
        h.assert_accounted();
        proptest::prop_assert!(h.sampler.peak_accounted_bytes() <= 1024 * 1024);
    }
}

#[tokio::test(start_paused = true)]
async fn decided_output_makes_the_flush_due_and_wakes_the_pipeline() {
    let mut h = Harness::new(&format!("num_shards: 1\n{KEEP_ALL}"));
    let wakeup = h.sampler.wakeup().expect("the sampler has a wakeup");
    h.send(vec![span(1, 1, 0, 0, 1)]).await;
    assert_eq!(h.sampler.next_flush(), None);
    let woken = wakeup.notified();
    advance(Duration::from_secs(3)).await;
    settle().await;
    tokio::time::timeout(Duration::from_millis(1), woken)
        .await
        .expect("the shard should wake the pipeline");
    // The host flushes only when `next_flush` is at or before its own earlier reading.
    let due = h.sampler.next_flush().expect("output is waiting");
    assert!(due <= Instant::now());
    h.flush(FlushReason::Wakeup).await;
    assert_eq!(h.out.len(), 1);
    assert_eq!(h.sampler.next_flush(), None);
}

#[tokio::test(start_paused = true)]
async fn a_tenant_over_its_share_has_its_own_traces_decided_early() {
    let mut h = Harness::new(&format!(
        "num_shards: 1\nmemory_limit: 8MiB\ntenants: {{acme: {{memory_limit: 1MiB}}}}\n{KEEP_ALL}"
    ));
    for t in 0..40u32 {
        let acme: Vec<Span> = (1..=40u8).map(|i| heavy(t, i)).collect();
        h.send_batch(TraceBatch::measured(vec![group(acme, Some("acme"))]))
            .await;
        // Another tenant's trace stays buffered: the share applies only to acme.
        h.send(vec![heavy(5000 + t, 1)]).await;
    }
    h.flush(FlushReason::Wakeup).await;
    let text = h.metrics.render();
    assert!(text.contains("reason=\"tenant_share\"}"), "{text}");
    assert!(text.contains("reason=\"memory_pressure\"} 0"), "{text}");
    let others_out = h.out.iter().filter(|s| s.name.starts_with("s50")).count();
    assert_eq!(
        others_out, 0,
        "the other tenant's traces must wait for their deadline"
    );
    assert!(
        h.out.len() >= 10 * 40,
        "acme's older traces should be decided early: {} out, {:?}",
        h.out.len(),
        h.dropped
    );
    h.flush(FlushReason::Shutdown).await;
    h.assert_accounted();
}

const COMPOSITE: &str = "policies:
  - name: c
    type: composite
    composite:
      max_total_spans_per_second: 10
      policy_order: [errors, rest]
      composite_sub_policy:
        - {name: rest, type: always_sample}
        - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
      rate_allocation:
        - {policy: errors, percent: 60}
        - {policy: rest, percent: 40}
";

#[tokio::test(start_paused = true)]
async fn composite_gives_each_sub_policy_its_share_of_the_rate() {
    let config = config(COMPOSITE);
    let mut set = PolicySet::build(&config.policies, 1).expect("compiles");
    let failing = trace_of((1..=3).map(|i| error(span(1, i, 0, 0, 1))).collect(), None);
    let plain = trace_of((1..=3).map(|i| span(2, i, 0, 0, 1)).collect(), None);
    let mut decide = |t: &Trace| set.decide(t, Instant::now()).verdict;
    // errors: 6 spans/s; rest: 4 spans/s; three-span traces.
    assert_eq!(decide(&failing), Verdict::Sampled);
    assert_eq!(decide(&failing), Verdict::Sampled);
    // The errors share is spent: the third error trace falls through to `rest`.
    assert_eq!(decide(&failing), Verdict::Sampled);
    assert_eq!(decide(&plain), Verdict::NotSampled);
    assert_eq!(decide(&failing), Verdict::NotSampled);
}

#[test]
fn composite_rates_must_add_up_and_name_sub_policies() {
    let bad = COMPOSITE.replace("percent: 40", "percent: 50").replace(
        "policy_order: [errors, rest]",
        "policy_order: [errors, other]",
    );
    let config: TailSamplingConfig = serde_yaml::from_str(&bad).expect("config should parse");
    let mut problems = Problems::new();
    config.validate(&mut problems);
    let paths: Vec<String> = problems.into_vec().into_iter().map(|p| p.path).collect();
    assert!(
        paths.contains(&"policies[0]::composite::rate_allocation".to_string()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"policies[0]::composite::policy_order[1]".to_string()),
        "{paths:?}"
    );
}
