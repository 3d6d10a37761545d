//! Tests for the debug exporter: rendering, sampling, and what reaches the log.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use tokio::time::Instant;

use super::{DebugConfig, DebugExporterFactory, Sampler, Verbosity};
use crate::component::{
    AnyValue, BuildContext, ComponentConfig, Exporter, ExporterFactory, InstrumentationScope,
    KeyValue, Problems, Resource, ResourceSpans, ScopeSpans, Span, Status, TraceBatch, any_value,
};

/// Log output captured from `tracing` for the current thread.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Log entries start with a timestamp and level; continuation lines of a block do not.
    fn entries(&self) -> usize {
        self.text().lines().filter(|l| l.contains(" INFO ")).count()
    }
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn str_kv(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn batch(spans: usize) -> TraceBatch {
    let spans = (0..spans)
        .map(|i| Span {
            trace_id: vec![0xab; 16],
            span_id: vec![i as u8; 8],
            name: format!("GET /item/{i}"),
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_250_000_000,
            ..Default::default()
        })
        .collect();
    TraceBatch::measured(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![str_kv("service.name", "checkout")],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                version: "1.2".into(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn build(config: DebugConfig) -> (Box<dyn Exporter>, PrometheusHandle) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let ctx = BuildContext {
        id: "debug".into(),
        pipeline: None,
    };
    let exporter =
        metrics::with_local_recorder(&recorder, || DebugExporterFactory.build(config, &ctx))
            .unwrap();
    (exporter, handle)
}

fn suppressed(handle: &PrometheusHandle) -> u64 {
    let text = handle.render();
    text.lines()
        .find(|l| l.starts_with("spanline_debug_exporter_suppressed_logs_total"))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().unwrap())
        .unwrap_or(0)
}

#[test]
fn defaults_and_example() {
    let parsed: DebugConfig = serde_yaml::from_str("{}").unwrap();
    assert_eq!(parsed, DebugConfig::default());
    assert_eq!(parsed.verbosity, Verbosity::Basic);
    assert_eq!(
        (parsed.sampling_initial, parsed.sampling_thereafter),
        (2, 1)
    );
    let doc: serde_yaml::Value = serde_yaml::from_str(DebugExporterFactory::EXAMPLE_YAML).unwrap();
    let example: DebugConfig = serde_yaml::from_value(doc["debug"].clone()).unwrap();
    assert_eq!(example.verbosity, Verbosity::Normal);
    let err = serde_yaml::from_str::<DebugConfig>("verbosity: loud")
        .unwrap_err()
        .to_string();
    assert!(err.contains("basic") && err.contains("detailed"), "{err}");
}

#[test]
fn silent_sampling_is_a_warning() {
    let mut problems = Problems::new();
    DebugConfig {
        sampling_initial: 0,
        sampling_thereafter: 0,
        ..Default::default()
    }
    .validate(&mut problems);
    assert!(!problems.has_errors());
    assert_eq!(problems.into_vec()[0].path, "sampling_thereafter");
}

#[test]
fn sampler_follows_the_collector() {
    let start = Instant::now();
    let mut sampler = Sampler::new(2, 3);
    let got: Vec<bool> = (0..8).map(|_| sampler.allow(start)).collect();
    assert_eq!(got, [true, true, false, false, true, false, false, true]);
    let next_second = start + Duration::from_secs(1);
    assert!(sampler.allow(next_second) && sampler.allow(next_second));
    assert!(!sampler.allow(next_second));
    let mut none_after = Sampler::new(1, 0);
    assert!(none_after.allow(start));
    assert!((0..100).all(|_| !none_after.allow(start)));
}

#[tokio::test(start_paused = true)]
async fn basic_logs_one_line_per_batch() {
    let capture = Capture::default();
    let _guard = capture.install();
    let (mut exporter, handle) = build(DebugConfig::default());
    for _ in 0..3 {
        exporter.export(&batch(5)).await.unwrap();
    }
    assert_eq!(capture.entries(), 3, "{}", capture.text());
    assert!(capture.text().contains("resource spans: 1, spans: 5"));
    assert_eq!(suppressed(&handle), 0);
}

#[tokio::test(start_paused = true)]
async fn a_flood_is_sampled_and_counted() {
    let capture = Capture::default();
    let _guard = capture.install();
    let config = DebugConfig {
        verbosity: Verbosity::Normal,
        sampling_initial: 2,
        sampling_thereafter: 100,
    };
    let (mut exporter, handle) = build(config);
    exporter.export(&batch(250)).await.unwrap();
    // Lines 1, 2, 102 and 202 of the second are written.
    assert_eq!(capture.entries(), 4, "{}", capture.text());
    assert_eq!(suppressed(&handle), 246);
    let text = capture.text();
    assert!(text.contains("abababababababababababababababab 0000000000000000 - service=checkout name=\"GET /item/0\" duration=250ms status=Unset"), "{text}");
    assert!(text.contains("GET /item/101"), "{text}");

    tokio::time::advance(Duration::from_secs(1)).await;
    exporter.export(&batch(2)).await.unwrap();
    assert_eq!(capture.entries(), 6, "a new second starts a new allowance");
}

#[tokio::test(start_paused = true)]
async fn detailed_shows_every_field() {
    let capture = Capture::default();
    let _guard = capture.install();
    let (mut exporter, _handle) = build(DebugConfig {
        verbosity: Verbosity::Detailed,
        ..Default::default()
    });
    let mut b = batch(1);
    let span = &mut b.resource_spans_mut()[0].scope_spans[0].spans[0];
    span.parent_span_id = vec![9; 8];
    span.kind = 2;
    span.status = Some(Status {
        message: "boom".into(),
        code: 2,
    });
    span.attributes = vec![
        str_kv("http.route", "/checkout"),
        kv("http.status_code", any_value::Value::IntValue(500)),
        kv("retry", any_value::Value::BoolValue(true)),
        kv("ratio", any_value::Value::DoubleValue(0.5)),
        kv("raw", any_value::Value::BytesValue(vec![1, 255])),
        kv(
            "tags",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(any_value::Value::StringValue("a".into())),
                }],
            }),
        ),
        kv(
            "nested",
            any_value::Value::KvlistValue(KeyValueList {
                values: vec![str_kv("k", "v")],
            }),
        ),
    ];
    span.events = vec![Event {
        name: "exception".into(),
        time_unix_nano: 1_100_000_000,
        attributes: vec![str_kv("exception.type", "IOError")],
        ..Default::default()
    }];
    span.links = vec![Link {
        trace_id: vec![0xcd; 16],
        span_id: vec![0xef; 8],
        ..Default::default()
    }];
    exporter.export(&b).await.unwrap();
    let text = capture.text();
    for needle in [
        "Resource attributes: service.name=Str(checkout)",
        "Scope: lib 1.2",
        "Parent ID: 0909090909090909",
        "Kind: Server",
        "Status: Error \"boom\"",
        "http.route=Str(/checkout)",
        "http.status_code=Int(500)",
        "retry=Bool(true)",
        "ratio=Double(0.5)",
        "raw=Bytes(01ff)",
        "tags=Slice([Str(a)])",
        "nested=Map({ k=Str(v) })",
        "Event #0: exception at 1100000000 exception.type=Str(IOError)",
        "Link #0: trace cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd span efefefefefefefef",
        "Duration: 250ms",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}
