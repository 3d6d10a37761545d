//! Component tests for `tenant_quota` on a paused clock: buckets, tenants, traces, truncation.

use std::future::Future;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use prost::Message;

use super::config::{Action, LimitOverrides, Limits, TenantQuotaConfig};
use super::{REASON_QUOTA, REASON_TRACE_TOO_LARGE, TenantQuota, TenantQuotaProcessorFactory};
use crate::component::tenant::{TENANT_ATTRIBUTE, tenant_of};
use crate::component::{
    AnyValue, BuildContext, ByteSize, Dropped, Emitter, HumanDuration, KeyValue, ProcessError,
    Processor, ProcessorFactory, Refusal, RefusalReason, Resource, ResourceSpans, ScopeSpans, Span,
    TraceBatch, any_value, names,
};

/// Runs a test on a paused current-thread runtime with a local metrics recorder.
fn run<F: Future<Output = ()>>(test: impl FnOnce(PrometheusHandle) -> F) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(test(handle)));
}

/// The value of one counter series whose labels include `labels`, 0 when absent.
fn counter(handle: &PrometheusHandle, name: &str, labels: &[(&str, &str)]) -> u64 {
    for line in handle.render().lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(rest) = series.strip_prefix(name) else {
            continue;
        };
        if rest.starts_with('{')
            && labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        {
            return value.parse::<f64>().unwrap() as u64;
        }
    }
    0
}

fn refused(handle: &PrometheusHandle, tenant: &str, reason: &str) -> u64 {
    counter(
        handle,
        names::TENANT_REFUSED_SPANS,
        &[("tenant", tenant), ("reason", reason)],
    )
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn spans(trace: u8, n: usize) -> Vec<Span> {
    (0..n)
        .map(|i| Span {
            trace_id: vec![trace; 16],
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: format!("span {i}"),
            ..Default::default()
        })
        .collect()
}

fn resource(tenant: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![text("service.name", "svc"), text(TENANT_ATTRIBUTE, tenant)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn batch(resources: Vec<ResourceSpans>) -> TraceBatch {
    TraceBatch::measured(resources)
}

fn of(tenant: &str, n: usize) -> TraceBatch {
    batch(vec![resource(tenant, spans(1, n))])
}

/// What one `process` call produced.
struct Outcome {
    refusal: Option<Refusal>,
    out: Vec<TraceBatch>,
    dropped: Vec<(&'static str, u64)>,
}

impl Outcome {
    fn passed(&self) -> usize {
        self.out.iter().map(TraceBatch::span_count).sum()
    }

    fn tenants(&self) -> Vec<String> {
        let mut tenants = Vec::new();
        for batch in &self.out {
            for rs in batch.resource_spans() {
                tenants.push(tenant_of(rs.resource.as_ref()).unwrap().to_string());
            }
        }
        tenants
    }

    fn dropped(&self, reason: &str) -> u64 {
        self.dropped
            .iter()
            .filter(|(r, _)| *r == reason)
            .map(|(_, n)| n)
            .sum()
    }
}

async fn process(quota: &mut TenantQuota, batch: TraceBatch) -> Outcome {
    let mut out = Emitter::default();
    let mut dropped = Dropped::default();
    let refusal = match quota.process(batch, &mut out, &mut dropped).await {
        Ok(()) => None,
        Err(ProcessError::Refused(refusal)) => Some(refusal),
        Err(other) => panic!("unexpected error {other}"),
    };
    Outcome {
        refusal,
        out: out.drain().collect(),
        dropped: dropped.drain().collect(),
    }
}

fn rate(spans: u64, burst: u64) -> Limits {
    Limits {
        rate_limit_spans: spans,
        burst_size_spans: burst,
        ..Default::default()
    }
}

/// `calm` on the defaults (1000 spans/s), `noisy` held to 10 spans/s with a burst of 10.
fn two_tenants(action: Action) -> TenantQuotaConfig {
    let noisy = LimitOverrides {
        rate_limit_spans: Some(10),
        burst_size_spans: Some(10),
        ..Default::default()
    };
    TenantQuotaConfig {
        action,
        defaults: rate(1000, 0),
        tenants: [("noisy".to_string(), noisy)].into(),
        ..Default::default()
    }
}

fn problems(config: &TenantQuotaConfig) -> Vec<String> {
    crate::testing::problems_of(config)
}

// ---------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------

#[test]
fn example_yaml_parses_validates_and_merges_overrides() {
    let yaml = TenantQuotaProcessorFactory::EXAMPLE_YAML;
    let section: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    let config: TenantQuotaConfig =
        serde_yaml::from_value(section["tenant_quota"].clone()).unwrap();
    assert!(problems(&config).is_empty(), "{:?}", problems(&config));
    assert_eq!(config.defaults.rate_limit_bytes, ByteSize::mib(50));
    assert_eq!(config.trace_window, HumanDuration::from_secs(30));
    let noisy = config.tenants["noisy"].apply(&config.defaults);
    assert_eq!(noisy.rate_limit_spans, 20_000);
    assert_eq!(noisy.max_spans_per_trace, 10_000, "inherited from defaults");
    let empty: TenantQuotaConfig = serde_yaml::from_str("{}").unwrap();
    assert_eq!(empty.action, Action::Refuse);
    assert_eq!(empty.defaults, Limits::default());
}

#[test]
fn the_factory_builds_a_working_processor_from_its_example() {
    run(|_| async move {
        let section: serde_yaml::Value =
            serde_yaml::from_str(TenantQuotaProcessorFactory::EXAMPLE_YAML).unwrap();
        let config = serde_yaml::from_value(section["tenant_quota"].clone()).unwrap();
        let ctx = BuildContext {
            id: "tenant_quota".into(),
            pipeline: Some("traces".into()),
        };
        let mut processor = TenantQuotaProcessorFactory.build(config, &ctx).unwrap();
        let mut out = Emitter::default();
        let mut dropped = Dropped::default();
        // noisy's burst is 20000 spans: 20001 of one trace pass a full bucket (so the next
        // request is refused), and then max_spans_per_trace keeps 10000 of them.
        let first = of("noisy", 20_001);
        processor
            .process(first, &mut out, &mut dropped)
            .await
            .unwrap();
        assert_eq!(out.drain().map(|b| b.span_count()).sum::<usize>(), 10_000);
        assert_eq!(dropped.total(), 10_001);
        let second = processor
            .process(of("noisy", 1), &mut out, &mut dropped)
            .await;
        assert!(matches!(second, Err(ProcessError::Refused(_))));
        processor
            .process(of("calm", 1), &mut out, &mut dropped)
            .await
            .unwrap();
        assert_eq!(out.drain().count(), 1);
    });
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let config: TenantQuotaConfig = serde_yaml::from_str(
        "action: drop\ndefaults: { burst_size_spans: 10, max_spans_per_trace: 5 }\ntenants: { 'a/b': {}, ok: { burst_size_bytes: 1KiB } }\ntrace_window: 0\nmax_traces: 0\nmax_tenants: 0\n",
    )
    .unwrap();
    assert_eq!(
        problems(&config),
        [
            "defaults::burst_size_spans: has no effect without rate_limit_spans",
            "tenants::a/b: tenant id \"a/b\" contains '/'; allowed are A-Z, a-z, 0-9, '.', '_' and '-'",
            "tenants::a/b::burst_size_spans: has no effect without rate_limit_spans",
            "tenants::ok::burst_size_spans: has no effect without rate_limit_spans",
            "tenants::ok::burst_size_bytes: has no effect without rate_limit_bytes",
            "trace_window: must be greater than 0 when a per-trace limit is set, got 0",
            "max_traces: must be greater than 0, got 0",
            "max_tenants: must be greater than 0, got 0",
        ]
    );
    let unknown = serde_yaml::from_str::<TenantQuotaConfig>("tenants: { a: { rate: 1 } }");
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("unknown field `rate`")
    );
    let action = serde_yaml::from_str::<TenantQuotaConfig>("action: throttle");
    assert!(action.unwrap_err().to_string().contains("refuse"));
}

// ---------------------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------------------

#[test]
fn buckets_allow_the_burst_then_refill_at_the_rate() {
    run(|metrics| async move {
        let mut quota = TenantQuota::new(&TenantQuotaConfig {
            defaults: rate(100, 200),
            ..Default::default()
        });
        assert_eq!(process(&mut quota, of("calm", 200)).await.passed(), 200);
        let outcome = process(&mut quota, of("calm", 50)).await;
        let refusal = outcome.refusal.clone().expect("over the burst");
        assert_eq!(refusal.reason, RefusalReason::Quota);
        assert!(refusal.message.contains("\"calm\""), "{}", refusal.message);
        assert!(
            refusal
                .message
                .contains("rate_limit_spans (100 spans/s, burst_size_spans 200)")
        );
        assert_eq!(refusal.retry_after, Duration::from_millis(500));
        assert_eq!(outcome.passed(), 0);

        tokio::time::advance(refusal.retry_after).await;
        assert_eq!(process(&mut quota, of("calm", 50)).await.passed(), 50);
        assert!(process(&mut quota, of("calm", 1)).await.refusal.is_some());
        // Idle time refills no further than the burst.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(process(&mut quota, of("calm", 200)).await.passed(), 200);
        assert!(process(&mut quota, of("calm", 1)).await.refusal.is_some());
        assert_eq!(refused(&metrics, "calm", "rate_limited"), 52);
    });
}

#[test]
fn byte_rates_are_limited_too() {
    run(|metrics| async move {
        let mut quota = TenantQuota::new(&TenantQuotaConfig {
            defaults: Limits {
                rate_limit_bytes: ByteSize::kib(1),
                ..Default::default()
            },
            ..Default::default()
        });
        let big = of("acme", 40);
        assert!(big.size_hint() > 1024, "{}", big.size_hint());
        // Larger than the burst: passes a full bucket, then the debt must be paid off.
        assert_eq!(process(&mut quota, big.clone()).await.passed(), 40);
        let refusal = process(&mut quota, of("acme", 1)).await.refusal.unwrap();
        assert!(
            refusal.message.contains("rate_limit_bytes (1024 bytes/s"),
            "{}",
            refusal.message
        );
        let debt = big.size_hint() as f64 / 1024.0;
        assert!(refusal.retry_after.as_secs_f64() > debt - 1.0);
        tokio::time::advance(refusal.retry_after).await;
        assert!(process(&mut quota, of("acme", 1)).await.refusal.is_none());
        assert_eq!(refused(&metrics, "acme", "rate_limited"), 1);
    });
}

#[test]
fn one_tenant_over_quota_does_not_affect_another() {
    run(|metrics| async move {
        let mut quota = TenantQuota::new(&two_tenants(Action::Refuse));
        assert_eq!(process(&mut quota, of("noisy", 10)).await.passed(), 10);
        assert!(process(&mut quota, of("noisy", 5)).await.refusal.is_some());
        assert_eq!(process(&mut quota, of("calm", 500)).await.passed(), 500);

        // A request mixing both: noisy's spans are dropped, calm's pass, nothing is refused.
        let mixed = batch(vec![
            resource("noisy", spans(2, 5)),
            resource("calm", spans(3, 5)),
            resource("noisy", spans(4, 2)),
        ]);
        let outcome = process(&mut quota, mixed).await;
        assert!(outcome.refusal.is_none());
        assert_eq!(outcome.tenants(), ["calm"]);
        assert_eq!(outcome.passed(), 5);
        assert_eq!(outcome.dropped(REASON_QUOTA), 7);
        assert_eq!(refused(&metrics, "noisy", "rate_limited"), 12);
        assert_eq!(refused(&metrics, "calm", "rate_limited"), 0);
    });
}

#[test]
fn drop_instead_of_refuse_counts_the_spans() {
    run(|metrics| async move {
        let mut quota = TenantQuota::new(&two_tenants(Action::Drop));
        assert_eq!(process(&mut quota, of("noisy", 10)).await.passed(), 10);
        let outcome = process(&mut quota, of("noisy", 4)).await;
        assert!(outcome.refusal.is_none());
        assert_eq!(outcome.passed(), 0);
        assert!(outcome.out.is_empty());
        assert_eq!(outcome.dropped(REASON_QUOTA), 4);
        assert_eq!(refused(&metrics, "noisy", "rate_limited"), 4);
        assert_eq!(process(&mut quota, of("calm", 4)).await.passed(), 4);
    });
}

#[test]
fn a_sender_that_retries_delivers_everything_at_the_tenant_rate() {
    run(|_| async move {
        let mut quota = TenantQuota::new(&two_tenants(Action::Refuse));
        let start = tokio::time::Instant::now();
        let (mut delivered, mut refusals) = (0, 0);
        for _ in 0..20 {
            loop {
                let outcome = process(&mut quota, of("noisy", 5)).await;
                match outcome.refusal {
                    None => {
                        delivered += outcome.passed();
                        break;
                    }
                    Some(refusal) => {
                        refusals += 1;
                        tokio::time::advance(refusal.retry_after).await;
                    }
                }
            }
        }
        assert_eq!(delivered, 100);
        assert!(refusals > 0);
        // 100 spans at 10/s with a burst of 10: about 9 s.
        let took = start.elapsed().as_secs_f64();
        assert!((8.5..=9.5).contains(&took), "{took}");
    });
}

#[test]
fn tenant_labels_are_bounded() {
    run(|metrics| async move {
        let mut quota = TenantQuota::new(&TenantQuotaConfig {
            defaults: rate(1, 1),
            ..Default::default()
        });
        for i in 0..105 {
            let tenant = format!("t{i:03}");
            process(&mut quota, of(&tenant, 1)).await;
            assert!(process(&mut quota, of(&tenant, 1)).await.refusal.is_some());
        }
        assert_eq!(refused(&metrics, "t099", "rate_limited"), 1);
        assert_eq!(refused(&metrics, "t100", "rate_limited"), 0);
        assert_eq!(refused(&metrics, "other", "rate_limited"), 5);
    });
}

// ---------------------------------------------------------------------------------------
// Per-trace and per-span limits
// ---------------------------------------------------------------------------------------

#[test]
fn traces_are_held_to_their_span_and_byte_limits_for_a_window() {
    run(|metrics| async move {
        let big = LimitOverrides {
            max_bytes_per_trace: Some(ByteSize(100)),
            max_spans_per_trace: Some(0),
            ..Default::default()
        };
        let mut quota = TenantQuota::new(&TenantQuotaConfig {
            defaults: Limits {
                max_spans_per_trace: 3,
                ..Default::default()
            },
            tenants: [("bytes".to_string(), big)].into(),
            trace_window: HumanDuration::from_secs(10),
            ..Default::default()
        });
        assert_eq!(process(&mut quota, of("acme", 2)).await.passed(), 2);
        let outcome = process(
            &mut quota,
            batch(vec![
                resource("acme", spans(1, 2)),
                resource("acme", spans(2, 4)),
            ]),
        )
        .await;
        assert!(outcome.refusal.is_none());
        assert_eq!(outcome.passed(), 4, "1 more of trace 1, 3 of trace 2");
        assert_eq!(outcome.dropped(REASON_TRACE_TOO_LARGE), 2);
        assert_eq!(refused(&metrics, "acme", REASON_TRACE_TOO_LARGE), 2);
        // The same trace id of another tenant is another trace.
        assert_eq!(process(&mut quota, of("beta", 3)).await.passed(), 3);

        // Forgotten after the window has turned over twice.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(process(&mut quota, of("zzz", 1)).await.passed(), 1);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(process(&mut quota, of("acme", 3)).await.passed(), 3);

        // Bytes: as many whole spans as fit in 100 bytes.
        let per_span = spans(1, 1)[0].encoded_len();
        let outcome = process(&mut quota, of("bytes", 10)).await;
        assert_eq!(outcome.passed(), 100 / per_span);
        assert_eq!(
            outcome.dropped(REASON_TRACE_TOO_LARGE),
            10 - outcome.passed() as u64
        );
    });
}

#[test]
fn spans_are_truncated_and_counted_per_tenant() {
    run(|metrics| async move {
        let strict = LimitOverrides {
            max_attributes_per_span: Some(2),
            max_events_per_span: Some(1),
            max_attribute_value_bytes: Some(ByteSize(4)),
            ..Default::default()
        };
        let mut quota = TenantQuota::new(&TenantQuotaConfig {
            tenants: [("strict".to_string(), strict)].into(),
            ..Default::default()
        });
        let mut span = spans(1, 1).remove(0);
        span.attributes = vec![text("a", "long value"), text("b", "ok"), text("c", "x")];
        span.events = vec![Default::default(), Default::default()];
        let sent = batch(vec![
            resource("strict", vec![span.clone()]),
            resource("lenient", vec![span.clone()]),
        ]);
        let outcome = process(&mut quota, sent.clone()).await;
        let out = &outcome.out[0];
        let strict_span = &out.resource_spans()[0].scope_spans[0].spans[0];
        assert_eq!(strict_span.attributes, [text("a", "long"), text("b", "ok")]);
        assert_eq!(strict_span.events.len(), 1);
        assert_eq!(strict_span.dropped_attributes_count, 1);
        assert_eq!(
            out.resource_spans()[1],
            sent.resource_spans()[1],
            "defaults have no limits"
        );
        assert!(
            out.size_hint() < sent.size_hint(),
            "re-measured after cutting"
        );
        let cut = |kind| {
            counter(
                &metrics,
                names::TENANT_QUOTA_TRUNCATIONS,
                &[("tenant", "strict"), ("kind", kind)],
            )
        };
        assert_eq!(cut("attributes_removed"), 1);
        assert_eq!(cut("values_truncated"), 1);
        assert_eq!(cut("events_removed"), 1);
    });
}

#[test]
fn resources_without_a_tenant_count_as_the_default_tenant() {
    run(|_| async move {
        let mut quota = TenantQuota::new(&TenantQuotaConfig {
            defaults: rate(1, 1),
            ..Default::default()
        });
        let anonymous = || {
            let mut rs = resource("x", spans(1, 1));
            rs.resource = None;
            batch(vec![rs])
        };
        assert_eq!(process(&mut quota, anonymous()).await.passed(), 1);
        let refusal = process(&mut quota, anonymous()).await.refusal.unwrap();
        assert!(
            refusal.message.contains("\"default\""),
            "{}",
            refusal.message
        );
    });
}

// ---------------------------------------------------------------------------------------
// Over loopback: the otlp receiver with API keys feeding this processor
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// What passes: accepted spans and bytes per tenant, attribute cardinality
// ---------------------------------------------------------------------------------------

fn accepted(handle: &PrometheusHandle, tenant: &str) -> (u64, u64) {
    let labels = [("tenant", tenant)];
    (
        counter(handle, names::TENANT_ACCEPTED_SPANS, &labels),
        counter(handle, names::TENANT_ACCEPTED_BYTES, &labels),
    )
}

#[test]
fn accepted_spans_and_bytes_are_counted_per_tenant_for_what_passes() {
    run(|metrics| async move {
        let mut quota = TenantQuota::new(&two_tenants(Action::Refuse));
        let calm = of("calm", 20);
        let calm_bytes = calm.size_hint() as u64;
        process(&mut quota, calm).await;
        assert_eq!(accepted(&metrics, "calm"), (20, calm_bytes));

        // noisy passes 10 of a mixed request's spans, then is over quota and dropped.
        let first = resource("noisy", spans(2, 10));
        let noisy_bytes = first.encoded_len() as u64;
        let mixed = batch(vec![first, resource("calm", spans(3, 5))]);
        assert_eq!(process(&mut quota, mixed).await.passed(), 15);
        let mixed = batch(vec![
            resource("noisy", spans(4, 5)),
            resource("calm", spans(5, 5)),
        ]);
        assert_eq!(process(&mut quota, mixed).await.passed(), 5);
        assert!(process(&mut quota, of("noisy", 1)).await.refusal.is_some());

        assert_eq!(accepted(&metrics, "noisy"), (10, noisy_bytes));
        assert_eq!(accepted(&metrics, "calm").0, 30);
        assert_eq!(refused(&metrics, "noisy", "rate_limited"), 6);
    });
}

#[test]
fn accepted_tenant_labels_are_bounded() {
    run(|metrics| async move {
        let mut quota = TenantQuota::new(&TenantQuotaConfig::default());
        for i in 0..103 {
            process(&mut quota, of(&format!("t{i:03}"), 2)).await;
        }
        assert_eq!(accepted(&metrics, "t099").0, 2);
        assert_eq!(accepted(&metrics, "t100").0, 0);
        assert_eq!(accepted(&metrics, "other").0, 6);
    });
}

#[test]
fn span_attributes_that_pass_feed_the_cardinality_estimates() {
    run(|_| async move {
        let tenant = "tenant-quota-cardinality";
        let mut quota = TenantQuota::new(&TenantQuotaConfig::default());
        let mut spans = spans(1, 40);
        for (i, span) in spans.iter_mut().enumerate() {
            span.attributes = vec![
                text("user.id", &format!("u{i}")),
                text("http.method", if i % 2 == 0 { "GET" } else { "POST" }),
            ];
        }
        process(&mut quota, batch(vec![resource(tenant, spans)])).await;
        let report = crate::telemetry::cardinality::global().report(Some(tenant), 5);
        let keys = &report.tenants[0].keys;
        assert_eq!(keys.len(), 2);
        // 40 values: a dense sketch, estimated within its ~2 % error.
        assert_eq!(keys[0].key, "user.id");
        assert!((38..=42).contains(&keys[0].estimate), "{keys:?}");
        assert_eq!((keys[1].key.as_str(), keys[1].estimate), ("http.method", 2));
    });
}
