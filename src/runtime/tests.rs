//! The runtime on a paused clock: delivery, backpressure, refusal, retries and shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Readiness, Service};
use crate::component::{
    Backlog, BuildContext, ComponentError, Dropped, Emitter, ExportError, Exporter,
    ExporterFactory, FlushReason, ProcessError, Processor, ProcessorFactory, Refusal,
    RefusalReason, ResourceSpans, ScopeSpans, Span, TraceBatch, TraceConsumer, Transport,
};
use crate::config::load_str_with_env;
use crate::registry::Registry;
use crate::testing::{NoConfig as Empty, ProbeReceiverFactory};

/// Exports into a shared list; fails with a retryable error while `down` is set.
#[derive(Clone, Default)]
struct Sink {
    spans: Arc<Mutex<Vec<u64>>>,
    down: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
    durable: bool,
    /// Bytes the sink claims to hold, against a limit of `BACKLOG_LIMIT`.
    held: Arc<AtomicU64>,
}

const BACKLOG_LIMIT: u64 = 1 << 20;

impl Backlog for Sink {
    fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }

    fn limit_bytes(&self) -> u64 {
        BACKLOG_LIMIT
    }
}

impl ExporterFactory for Sink {
    type Config = Empty;
    const TYPE: &'static str = "sink";
    const EXAMPLE_YAML: &'static str = "sink: {}\n";
    fn build(&self, _: Empty, _: &BuildContext) -> Result<Box<dyn Exporter>, ComponentError> {
        Ok(Box::new(self.clone()))
    }
}

#[async_trait]
impl Exporter for Sink {
    async fn export(&mut self, batch: &TraceBatch) -> Result<(), ExportError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(ExportError::retryable("peer unavailable"));
        }
        let mut spans = self.spans.lock();
        for rs in batch.resource_spans() {
            for ss in &rs.scope_spans {
                spans.extend(ss.spans.iter().map(|s| s.start_time_unix_nano));
            }
        }
        Ok(())
    }

    fn durable(&self) -> bool {
        self.durable
    }

    fn backlog(&self) -> Option<Arc<dyn Backlog>> {
        Some(Arc::new(self.clone()))
    }
}

/// Holds everything until shutdown (or refuses everything while `refuse` is set).
#[derive(Clone, Default)]
struct Hold {
    refuse: Arc<AtomicBool>,
}
struct HoldRunning {
    refuse: Arc<AtomicBool>,
    held: Option<TraceBatch>,
}

impl ProcessorFactory for Hold {
    type Config = Empty;
    const TYPE: &'static str = "hold";
    const EXAMPLE_YAML: &'static str = "hold: {}\n";
    fn build(&self, _: Empty, _: &BuildContext) -> Result<Box<dyn Processor>, ComponentError> {
        Ok(Box::new(HoldRunning {
            refuse: self.refuse.clone(),
            held: None,
        }))
    }
}

#[async_trait]
impl Processor for HoldRunning {
    async fn process(
        &mut self,
        batch: TraceBatch,
        _: &mut Emitter,
        _: &mut Dropped,
    ) -> Result<(), ProcessError> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(Refusal::new(RefusalReason::MemoryLimit, "over the limit").into());
        }
        match &mut self.held {
            Some(held) => held.append(batch),
            None => self.held = Some(batch),
        }
        Ok(())
    }

    async fn flush(&mut self, reason: FlushReason, out: &mut Emitter, _: &mut Dropped) {
        if reason == FlushReason::Shutdown
            && let Some(batch) = self.held.take()
        {
            out.emit(batch);
        }
    }
}

struct Harness {
    service: Service,
    consumer: TraceConsumer,
}

async fn start(yaml: &str, sink: &Sink, hold: &Hold) -> Harness {
    let (probe, mut rx) = ProbeReceiverFactory::new();
    let registry = Registry::empty()
        .with_receiver(probe)
        .with_processor(hold.clone())
        .with_processor(crate::processors::batch::BatchProcessorFactory)
        .with_exporter(sink.clone())
        .with_exporter(crate::exporters::nop::NopExporterFactory);
    let config = load_str_with_env(yaml, "test.yaml", &registry, &|_| None)
        .expect("test config should load");
    let service = Service::start(&config, Arc::new(Readiness::default()))
        .await
        .expect("service should start");
    let consumer = rx.recv().await.expect("receiver should have started");
    Harness { service, consumer }
}

/// A batch of `n` spans whose start times are `first..first+n`, so the test can check each arrives once.
fn batch(first: u64, n: u64) -> TraceBatch {
    let spans = (first..first + n)
        .map(|i| Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            start_time_unix_nano: i,
            ..Default::default()
        })
        .collect();
    TraceBatch::measured(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

const DIRECT: &str = "
receivers: { probe: {} }
exporters:
  sink:
    sending_queue: { queue_size: 2 }
    retry_on_failure: { initial_interval: 100ms, max_interval: 100ms, max_elapsed_time: 0 }
service:
  pipelines:
    traces: { receivers: [probe], exporters: [sink] }
";

#[tokio::test(start_paused = true)]
async fn delivers_every_span_once() {
    let (sink, hold) = (Sink::default(), Hold::default());
    let mut h = start(DIRECT, &sink, &hold).await;
    for i in 0..10 {
        h.consumer
            .consume(Transport::Grpc, batch(i * 3, 3))
            .await
            .expect("accepted");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let report = h.service.shutdown(Duration::from_secs(5)).await;
    assert!(!report.timed_out);
    let mut spans = sink.spans.lock().clone();
    spans.sort_unstable();
    assert_eq!(spans, (0..30).collect::<Vec<u64>>());
}

#[tokio::test(start_paused = true)]
async fn full_queue_refuses_and_loses_nothing_accepted() {
    let (sink, hold) = (Sink::default(), Hold::default());
    sink.down.store(true, Ordering::SeqCst);
    let mut h = start(DIRECT, &sink, &hold).await;
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..20 {
        match h.consumer.consume(Transport::Http, batch(i * 10, 10)).await {
            Ok(()) => accepted.extend(i * 10..i * 10 + 10),
            Err(refusal) => {
                assert_eq!(refusal.reason, RefusalReason::PipelineFull, "{refusal}");
                assert!(
                    refusal
                        .message
                        .contains("sending queue of exporter sink is full"),
                    "{refusal}"
                );
                refused += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        refused > 0,
        "a down exporter should make the pipeline refuse"
    );
    assert!(
        accepted.len() <= 40,
        "the queue (2 batches) plus one in flight bounds what is accepted: {}",
        accepted.len()
    );
    sink.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.service.shutdown(Duration::from_secs(5)).await;
    let mut spans = sink.spans.lock().clone();
    spans.sort_unstable();
    assert_eq!(spans, accepted);
}

const HELD: &str = "
receivers: { probe: {} }
processors: { hold: {} }
exporters: { sink: {} }
service:
  pipelines:
    traces: { receivers: [probe], processors: [hold], exporters: [sink] }
";

#[tokio::test(start_paused = true)]
async fn shutdown_flushes_what_processors_hold() {
    let (sink, hold) = (Sink::default(), Hold::default());
    let mut h = start(HELD, &sink, &hold).await;
    for i in 0..5 {
        h.consumer
            .consume(Transport::Grpc, batch(i * 2, 2))
            .await
            .expect("accepted");
    }
    assert!(
        sink.spans.lock().is_empty(),
        "the hold processor keeps spans until shutdown"
    );
    h.service.shutdown(Duration::from_secs(5)).await;
    assert_eq!(sink.spans.lock().len(), 10);
}

#[tokio::test(start_paused = true)]
async fn processor_refusal_reaches_the_sender() {
    let (sink, hold) = (Sink::default(), Hold::default());
    hold.refuse.store(true, Ordering::SeqCst);
    let mut h = start(HELD, &sink, &hold).await;
    let refusal = h
        .consumer
        .consume(Transport::Grpc, batch(0, 4))
        .await
        .expect_err("refused");
    assert_eq!(refusal.reason, RefusalReason::MemoryLimit);
    h.service.shutdown(Duration::from_secs(5)).await;
    assert!(sink.spans.lock().is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_deadline_counts_what_could_not_be_delivered() {
    let (sink, hold) = (Sink::default(), Hold::default());
    sink.down.store(true, Ordering::SeqCst);
    let mut h = start(DIRECT, &sink, &hold).await;
    h.consumer
        .consume(Transport::Grpc, batch(0, 5))
        .await
        .expect("accepted");
    h.consumer
        .consume(Transport::Grpc, batch(5, 5))
        .await
        .expect("accepted");
    let report = h.service.shutdown(Duration::from_secs(2)).await;
    assert!(report.timed_out);
    assert!(
        sink.attempts.load(Ordering::SeqCst) > 1,
        "the runner should have retried"
    );
    assert!(sink.spans.lock().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_durable_exporter_answers_the_sender_only_once_it_has_the_data() {
    let sink = Sink {
        durable: true,
        ..Sink::default()
    };
    sink.down.store(true, Ordering::SeqCst);
    let mut h = start(DIRECT, &sink, &Hold::default()).await;
    let waiting = tokio::time::timeout(
        Duration::from_secs(3),
        h.consumer.consume(Transport::Grpc, batch(0, 2)),
    )
    .await;
    assert!(
        waiting.is_err(),
        "the sender must wait while the durable exporter cannot take the data"
    );
    sink.down.store(false, Ordering::SeqCst);
    let answered = tokio::time::timeout(
        Duration::from_secs(3),
        h.consumer.consume(Transport::Grpc, batch(2, 2)),
    )
    .await;
    assert!(matches!(answered, Ok(Ok(()))), "{answered:?}");
    h.service.shutdown(Duration::from_secs(5)).await;
    assert_eq!(sink.spans.lock().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_batch_in_front_of_a_durable_exporter_does_not_make_a_lone_sender_wait_for_its_timeout() {
    let sink = Sink {
        durable: true,
        ..Sink::default()
    };
    let yaml = "
receivers: { probe: {} }
processors: { batch: { send_batch_size: 1000, timeout: 10s } }
exporters: { sink: {} }
service:
  pipelines:
    traces: { receivers: [probe], processors: [batch], exporters: [sink] }
";
    let mut h = start(yaml, &sink, &Hold::default()).await;
    let started = tokio::time::Instant::now();
    let answered = h.consumer.consume(Transport::Grpc, batch(0, 3)).await;
    assert!(matches!(answered, Ok(())), "{answered:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered after {:?}: the batch waited for its timeout",
        started.elapsed()
    );
    assert_eq!(
        sink.spans.lock().len(),
        3,
        "answered once the exporter has the spans"
    );
    h.service.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn an_exporter_at_its_backlog_limit_makes_the_pipeline_refuse_at_once() {
    let sink = Sink {
        durable: true,
        ..Sink::default()
    };
    let mut h = start(DIRECT, &sink, &Hold::default()).await;
    sink.held.store(BACKLOG_LIMIT, Ordering::SeqCst);
    let started = tokio::time::Instant::now();
    let refusal = h
        .consumer
        .consume(Transport::Grpc, batch(0, 2))
        .await
        .expect_err("refused while the exporter is at its limit");
    assert_eq!(refusal.reason, RefusalReason::PipelineFull, "{refusal}");
    assert_eq!(
        refusal.message,
        "exporter sink holds 1.0 MiB not yet delivered (its limit is 1MiB), retry later"
    );
    assert!(started.elapsed().is_zero(), "the sender is told at once");
    assert_eq!(sink.attempts.load(Ordering::SeqCst), 0, "nothing exported");

    // Below the limit the same request is taken; an empty backlog takes any request.
    sink.held.store(BACKLOG_LIMIT / 2, Ordering::SeqCst);
    h.consumer
        .consume(Transport::Grpc, batch(0, 2))
        .await
        .expect("accepted below the limit");
    sink.held.store(0, Ordering::SeqCst);
    h.consumer
        .consume(Transport::Grpc, batch(2, 2))
        .await
        .expect("accepted with nothing held");
    h.service.shutdown(Duration::from_secs(5)).await;
    assert_eq!(sink.spans.lock().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn receivers_decode_only_for_pipelines_that_read_spans() {
    let (sink, hold) = (Sink::default(), Hold::default());
    let forwarding = "
receivers: { probe: {} }
processors: { batch: {} }
exporters: { nop: {} }
service:
  pipelines:
    traces: { receivers: [probe], processors: [batch], exporters: [nop] }
";
    // One pipeline that only batches and drops; then the same receiver also feeding a
    // pipeline whose exporter reads spans, and one whose processor does.
    let reading = format!(
        "{forwarding}    traces/stored: {{ receivers: [probe], processors: [batch], exporters: [sink] }}\n"
    )
    .replace("exporters: { nop: {} }", "exporters: { nop: {}, sink: {} }");
    let holding = format!(
        "{forwarding}    traces/held: {{ receivers: [probe], processors: [hold], exporters: [nop] }}\n"
    )
    .replace(
        "processors: { batch: {} }",
        "processors: { batch: {}, hold: {} }",
    );
    for (yaml, reads) in [
        (forwarding.to_string(), false),
        (reading, true),
        (holding, true),
    ] {
        let mut h = start(&yaml, &sink, &hold).await;
        assert_eq!(h.consumer.reads_spans(), reads, "{yaml}");
        h.service.shutdown(Duration::from_secs(5)).await;
    }
}
