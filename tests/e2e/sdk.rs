//! The OpenTelemetry Rust SDK → spanline A (otlp → batch → otlp) → spanline B → a capturing
//! server: every span arrives once with its attributes, over gRPC, HTTP protobuf and HTTP
//! JSON, with and without gzip.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry::trace::{Span as _, Tracer, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_otlp::{
    Compression, Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;

use crate::support::{Capture, Spanline, free_port};

const SPANS_PER_VARIANT: i64 = 40;

#[derive(Clone, Copy, Debug)]
enum Transport {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

fn exporter(transport: Transport, gzip: bool, grpc: u16, http: u16) -> SpanExporter {
    let compression = gzip.then_some(Compression::Gzip);
    match transport {
        Transport::Grpc => {
            let builder = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(format!("http://127.0.0.1:{grpc}"));
            match compression {
                Some(c) => builder.with_compression(c).build(),
                None => builder.build(),
            }
        }
        Transport::HttpProtobuf | Transport::HttpJson => {
            let protocol = if matches!(transport, Transport::HttpJson) {
                Protocol::HttpJson
            } else {
                Protocol::HttpBinary
            };
            let builder = SpanExporter::builder()
                .with_http()
                .with_protocol(protocol)
                .with_endpoint(format!("http://127.0.0.1:{http}/v1/traces"));
            match compression {
                Some(c) => builder.with_compression(c).build(),
                None => builder.build(),
            }
        }
    }
    .expect("build the SDK exporter")
}

/// Sends SPANS_PER_VARIANT spans named after `variant` through the SDK and flushes.
async fn send(variant: &str, transport: Transport, gzip: bool, grpc: u16, http: u16) {
    let processor =
        BatchSpanProcessor::builder(exporter(transport, gzip, grpc, http), runtime::Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            Resource::builder()
                .with_service_name("e2e-client")
                .with_attribute(KeyValue::new("variant", variant.to_string()))
                .build(),
        )
        .build();
    let tracer = provider.tracer("e2e");
    for seq in 0..SPANS_PER_VARIANT {
        let mut span = tracer.start(format!("{variant}/op"));
        span.set_attribute(KeyValue::new("seq", seq));
        span.set_attribute(KeyValue::new("http.route", "/checkout/{id}"));
        span.set_attribute(KeyValue::new("ratio", 0.25));
        span.set_attribute(KeyValue::new("cached", true));
        span.set_attribute(KeyValue::new(
            "tags",
            Value::Array(
                vec![
                    opentelemetry::StringValue::from("a"),
                    opentelemetry::StringValue::from("b"),
                ]
                .into(),
            ),
        ));
        span.add_event("retry", vec![KeyValue::new("attempt", 2)]);
        span.end();
    }
    tokio::task::spawn_blocking(move || {
        provider.force_flush().expect("SDK flush");
        provider
            .shutdown_with_timeout(Duration::from_secs(10))
            .expect("SDK shutdown");
    })
    .await
    .expect("flush task");
}

fn relay_config(grpc: u16, http: u16, admin: u16, next: u16, batch: bool) -> String {
    let processors = if batch { "[batch]" } else { "[]" };
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:{grpc} }}
      http: {{ endpoint: 127.0.0.1:{http} }}
processors:
  batch: {{ timeout: 100ms, send_batch_size: 64 }}
exporters:
  otlp:
    endpoint: http://127.0.0.1:{next}
    tls: {{ insecure: true }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s }}
service:
  pipelines:
    traces: {{ receivers: [otlp], processors: {processors}, exporters: [otlp] }}
  telemetry:
    metrics: {{ address: 127.0.0.1:{admin} }}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_arrives_once_with_its_attributes() {
    let capture = Capture::default();
    let capture_port = free_port();
    let _stop = capture.serve(capture_port).await;
    let (b_grpc, b_http, b_admin) = (free_port(), free_port(), free_port());
    let b = Spanline::start(
        &relay_config(b_grpc, b_http, b_admin, capture_port, false),
        &format!("127.0.0.1:{b_admin}"),
    );
    let (a_grpc, a_http, a_admin) = (free_port(), free_port(), free_port());
    let a = Spanline::start(
        &relay_config(a_grpc, a_http, a_admin, b_grpc, true),
        &format!("127.0.0.1:{a_admin}"),
    );

    let variants = [
        ("grpc", Transport::Grpc, false),
        ("grpc-gzip", Transport::Grpc, true),
        ("http-protobuf", Transport::HttpProtobuf, false),
        ("http-protobuf-gzip", Transport::HttpProtobuf, true),
        ("http-json", Transport::HttpJson, false),
        ("http-json-gzip", Transport::HttpJson, true),
    ];
    for (name, transport, gzip) in variants {
        send(name, transport, gzip, a_grpc, a_http).await;
    }
    let expected = variants.len() * SPANS_PER_VARIANT as usize;
    let arrived = capture.wait_for(expected, Duration::from_secs(20)).await;
    assert_eq!(arrived, expected, "A:\n{}\nB:\n{}", a.logs(), b.logs());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(capture.span_count(), expected, "no span may arrive twice");

    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for rs in capture.received.lock().iter() {
        let resource = rs.resource.as_ref().expect("resource");
        let variant =
            string_attr(&resource.attributes, "variant").expect("variant resource attribute");
        assert_eq!(
            string_attr(&resource.attributes, "service.name").as_deref(),
            Some("e2e-client")
        );
        for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            assert_eq!(span.name, format!("{variant}/op"));
            assert_eq!(span.trace_id.len(), 16);
            assert_eq!(span.span_id.len(), 8);
            assert_eq!(
                string_attr(&span.attributes, "http.route").as_deref(),
                Some("/checkout/{id}")
            );
            assert_eq!(
                value(&span.attributes, "ratio"),
                Some(any_value::Value::DoubleValue(0.25))
            );
            assert_eq!(
                value(&span.attributes, "cached"),
                Some(any_value::Value::BoolValue(true))
            );
            assert!(
                matches!(value(&span.attributes, "tags"), Some(any_value::Value::ArrayValue(a)) if a.values.len() == 2)
            );
            assert_eq!(span.events.len(), 1);
            assert_eq!(span.events[0].name, "retry");
            let Some(any_value::Value::IntValue(seq)) = value(&span.attributes, "seq") else {
                panic!("seq attribute missing on {span:?}");
            };
            seen.entry(variant.clone()).or_default().push(seq);
        }
    }
    for (name, _, _) in variants {
        let mut seqs = seen.remove(name).unwrap_or_default();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (0..SPANS_PER_VARIANT).collect::<Vec<_>>(),
            "variant {name}"
        );
    }
    let accepted = a.metric("spanline_receiver_accepted_spans_total", &[]);
    assert_eq!(accepted as usize, expected);
    assert_eq!(
        a.metric("spanline_exporter_sent_spans_total", &["exporter=\"otlp\""]) as usize,
        expected
    );
    assert_eq!(
        b.metric("spanline_exporter_sent_spans_total", &["exporter=\"otlp\""]) as usize,
        expected
    );
}

fn value(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|v| v.value)
}

fn string_attr(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<String> {
    match value(attributes, key) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// `spanline run` without a config accepts OTLP from the SDK on 127.0.0.1:4317/4318 and
/// counts it on 127.0.0.1:8888.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_config_accepts_the_sdk_and_counts_it() {
    let _ports = crate::support::FIXED_PORTS.lock().await;
    let _spanline = Spanline::start_default("127.0.0.1:8888");
    send("default-grpc", Transport::Grpc, false, 4317, 4318).await;
    send("default-http", Transport::HttpProtobuf, true, 4317, 4318).await;
    let metrics = crate::support::http_get("127.0.0.1:8888", "/metrics")
        .expect("metrics")
        .1;
    let grpc = crate::support::sum_metric(
        &metrics,
        "spanline_receiver_accepted_spans_total",
        &["transport=\"grpc\""],
    );
    let http = crate::support::sum_metric(
        &metrics,
        "spanline_receiver_accepted_spans_total",
        &["transport=\"http\""],
    );
    assert_eq!(
        (grpc, http),
        (SPANS_PER_VARIANT as f64, SPANS_PER_VARIANT as f64),
        "{metrics}"
    );
}
