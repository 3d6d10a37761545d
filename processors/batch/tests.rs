//! Component tests for the batch processor, on a paused tokio clock.

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::time::{Instant, advance};

use super::{BatchConfig, BatchProcessorFactory};
use crate::component::{
    BuildContext, ComponentConfig, Dropped, Emitter, FlushReason, HumanDuration, Problems,
    Processor, ProcessorFactory, Resource, ResourceSpans, ScopeSpans, Span, TraceBatch,
};

/// A batch of one resource with one scope holding `n` spans named `{prefix}-{i}`.
fn spans(prefix: &str, n: usize) -> TraceBatch {
    let spans = (0..n)
        .map(|i| Span {
            name: format!("{prefix}-{i}"),
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        })
        .collect();
    TraceBatch::measured(vec![ResourceSpans {
        resource: Some(Resource::default()),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        schema_url: String::new(),
    }])
}

fn names(batch: &TraceBatch) -> Vec<String> {
    let mut out = Vec::new();
    for rs in batch.resource_spans() {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                out.push(span.name.clone());
            }
        }
    }
    out
}

fn config(size: usize, max: usize, timeout_ms: u64) -> BatchConfig {
    BatchConfig {
        send_batch_size: size,
        send_batch_max_size: max,
        timeout: HumanDuration::from_millis(timeout_ms),
    }
}

/// Builds the processor with its metrics recorded into a private registry.
fn build(config: BatchConfig) -> (Box<dyn Processor>, PrometheusHandle) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let ctx = BuildContext {
        id: "batch".into(),
        pipeline: Some("traces".into()),
    };
    let processor =
        metrics::with_local_recorder(&recorder, || BatchProcessorFactory.build(config, &ctx))
            .expect("batch processor should build");
    (processor, handle)
}

async fn feed(p: &mut Box<dyn Processor>, batch: TraceBatch) -> Vec<TraceBatch> {
    let mut out = Emitter::default();
    let mut dropped = Dropped::default();
    p.process(batch, &mut out, &mut dropped)
        .await
        .expect("batch never refuses");
    assert_eq!(dropped.total(), 0);
    out.drain().collect()
}

async fn flush(p: &mut Box<dyn Processor>, reason: FlushReason) -> Vec<TraceBatch> {
    let mut out = Emitter::default();
    let mut dropped = Dropped::default();
    p.flush(reason, &mut out, &mut dropped).await;
    assert_eq!(dropped.total(), 0);
    out.drain().collect()
}

fn metric_line(handle: &PrometheusHandle, needle: &str) -> String {
    let text = handle.render();
    text.lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no metric line with {needle} in:\n{text}"))
        .to_string()
}

#[test]
fn defaults_match_the_collector() {
    let parsed: BatchConfig = serde_yaml::from_str("{}").unwrap();
    assert_eq!(parsed, BatchConfig::default());
    assert_eq!(parsed.send_batch_size, 8192);
    assert_eq!(parsed.send_batch_max_size, 0);
    assert_eq!(parsed.timeout.get(), Duration::from_millis(200));
    let mut problems = Problems::new();
    parsed.validate(&mut problems);
    assert!(!problems.has_errors());
}

#[test]
fn example_yaml_parses_and_validates() {
    let doc: serde_yaml::Value = serde_yaml::from_str(BatchProcessorFactory::EXAMPLE_YAML).unwrap();
    let parsed: BatchConfig = serde_yaml::from_value(doc["batch"].clone()).unwrap();
    let mut problems = Problems::new();
    parsed.validate(&mut problems);
    assert!(!problems.has_errors(), "{:?}", problems.into_vec());
}

#[test]
fn validation_reports_every_problem() {
    let mut problems = Problems::new();
    config(0, 0, 200).validate(&mut problems);
    config(100, 50, 200).validate(&mut problems);
    let list = problems.into_vec();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0].path, "send_batch_size");
    assert_eq!(list[0].message, "must be greater than 0, got 0");
    assert_eq!(list[1].path, "send_batch_max_size");
    assert!(
        list[1]
            .message
            .contains("at least send_batch_size (100), got 50")
    );
}

#[test]
fn unknown_keys_are_rejected() {
    let err = serde_yaml::from_str::<BatchConfig>("send_batch_sise: 10")
        .unwrap_err()
        .to_string();
    assert!(err.contains("send_batch_sise"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn sends_when_the_size_is_reached() {
    let (mut p, handle) = build(config(10, 0, 200));
    assert!(feed(&mut p, spans("a", 4)).await.is_empty());
    assert!(feed(&mut p, spans("b", 4)).await.is_empty());
    let sent = feed(&mut p, spans("c", 4)).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].span_count(), 12);
    assert_eq!(names(&sent[0])[0], "a-0");
    assert_eq!(names(&sent[0])[11], "c-3");
    assert!(
        p.next_flush().is_none(),
        "nothing is held after a full send"
    );
    assert!(metric_line(&handle, "trigger=\"size\"").ends_with(" 1"));
}

#[tokio::test(start_paused = true)]
async fn splits_to_the_max_size_in_order() {
    let (mut p, _handle) = build(config(10, 10, 200));
    let sent = feed(&mut p, spans("a", 25)).await;
    let counts: Vec<usize> = sent.iter().map(TraceBatch::span_count).collect();
    assert_eq!(counts, vec![10, 10]);
    let mut all: Vec<String> = sent.iter().flat_map(names).collect();
    let rest = flush(&mut p, FlushReason::Shutdown).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].span_count(), 5);
    all.extend(names(&rest[0]));
    let expected: Vec<String> = (0..25).map(|i| format!("a-{i}")).collect();
    assert_eq!(all, expected, "every span arrives once, in order");
}

#[tokio::test(start_paused = true)]
async fn sends_when_the_oldest_span_times_out() {
    let (mut p, handle) = build(config(100, 0, 200));
    let start = Instant::now();
    feed(&mut p, spans("a", 5)).await;
    assert_eq!(p.next_flush(), Some(start + Duration::from_millis(200)));
    advance(Duration::from_millis(150)).await;
    feed(&mut p, spans("b", 5)).await;
    assert_eq!(
        p.next_flush(),
        Some(start + Duration::from_millis(200)),
        "the deadline follows the oldest span"
    );
    assert!(
        flush(&mut p, FlushReason::Timer).await.is_empty(),
        "not due yet"
    );
    advance(Duration::from_millis(50)).await;
    let sent = flush(&mut p, FlushReason::Timer).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].span_count(), 10);
    assert!(p.next_flush().is_none());
    assert!(metric_line(&handle, "trigger=\"timeout\"").ends_with(" 1"));
    assert!(metric_line(&handle, "spanline_processor_batch_send_size_spans_sum").ends_with(" 10"));
}

#[tokio::test(start_paused = true)]
async fn a_remainder_keeps_its_own_arrival_time() {
    let (mut p, _handle) = build(config(10, 10, 200));
    let start = Instant::now();
    feed(&mut p, spans("a", 8)).await;
    advance(Duration::from_millis(100)).await;
    let sent = feed(&mut p, spans("b", 8)).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].span_count(), 10);
    assert_eq!(
        p.next_flush(),
        Some(start + Duration::from_millis(300)),
        "the held spans arrived at +100ms"
    );
    let rest = flush(&mut p, FlushReason::Shutdown).await;
    assert_eq!(
        names(&rest[0]),
        vec!["b-2", "b-3", "b-4", "b-5", "b-6", "b-7"]
    );
}

#[tokio::test(start_paused = true)]
async fn zero_timeout_sends_immediately() {
    let (mut p, handle) = build(config(8192, 3, 0));
    let sent = feed(&mut p, spans("a", 7)).await;
    let counts: Vec<usize> = sent.iter().map(TraceBatch::span_count).collect();
    assert_eq!(counts, vec![3, 3, 1]);
    assert!(p.next_flush().is_none());
    assert!(metric_line(&handle, "trigger=\"timeout\"").ends_with(" 3"));
}

#[tokio::test(start_paused = true)]
async fn shutdown_emits_everything() {
    let (mut p, handle) = build(config(1000, 0, 200));
    feed(&mut p, spans("a", 3)).await;
    feed(&mut p, spans("b", 4)).await;
    let sent = flush(&mut p, FlushReason::Shutdown).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].span_count(), 7);
    assert!(p.next_flush().is_none());
    assert!(flush(&mut p, FlushReason::Shutdown).await.is_empty());
    assert!(metric_line(&handle, "trigger=\"shutdown\"").ends_with(" 1"));
}

#[tokio::test(start_paused = true)]
async fn spans_pass_unchanged() {
    let (mut p, _handle) = build(config(2, 0, 200));
    let mut input = spans("a", 2);
    input.resource_spans_mut()[0].scope_spans[0].spans[1].attributes =
        vec![crate::component::KeyValue {
            key: "http.route".into(),
            value: Some(crate::component::AnyValue {
                value: Some(crate::component::any_value::Value::StringValue("/x".into())),
            }),
            ..Default::default()
        }];
    let sent = feed(&mut p, input.clone()).await;
    assert_eq!(sent, vec![input]);
}

#[tokio::test(start_paused = true)]
async fn an_idle_pipeline_sends_spans_whose_senders_wait_and_keeps_the_rest() {
    let (mut p, handle) = build(config(100, 0, 200));
    feed(&mut p, spans("free", 5)).await;
    assert!(
        flush(&mut p, FlushReason::Idle).await.is_empty(),
        "nobody waits on these: they wait for size or timeout"
    );
    let (ack, waiter) = crate::component::ack::ack_pair();
    let mut waited = spans("waited", 5);
    waited.hold_ack(ack);
    feed(&mut p, waited).await;
    let sent = flush(&mut p, FlushReason::Idle).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].span_count(), 10, "everything held goes together");
    assert!(p.next_flush().is_none());
    drop(sent);
    tokio::time::timeout(Duration::from_secs(1), waiter.wait())
        .await
        .expect("the sender is answered once the batch is released");
    assert!(metric_line(&handle, "trigger=\"idle\"").ends_with(" 1"));
}
