//! The tail sampler inside a running service: the host collects decisions on wakeups, senders
//! are answered before the decision, and shutdown flushes what is buffered.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::TailSamplingProcessorFactory;
use crate::component::{
    BuildContext, ComponentError, ExportError, Exporter, ExporterFactory, ResourceSpans,
    ScopeSpans, Span, TraceBatch, TraceConsumer, Transport,
};
use crate::config::load_str_with_env;
use crate::registry::Registry;
use crate::runtime::{Readiness, Service};
use crate::testing::{NoConfig as Empty, ProbeReceiverFactory};

/// Collects the names of exported spans.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<String>>>);

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
        let mut names = self.0.lock();
        for rs in batch.resource_spans() {
            for ss in &rs.scope_spans {
                names.extend(ss.spans.iter().map(|s| s.name.clone()));
            }
        }
        Ok(())
    }
}

const CONFIG: &str = "
receivers: { probe: {} }
processors:
  tail_sampling:
    num_shards: 2
    policies: [{name: all, type: always_sample}]
exporters: { sink: {} }
service:
  pipelines:
    traces: { receivers: [probe], processors: [tail_sampling], exporters: [sink] }
";

fn root(trace: u8, name: &str) -> TraceBatch {
    TraceBatch::measured(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                trace_id: vec![trace; 16],
                span_id: vec![1; 8],
                name: name.into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

async fn start(sink: &Sink) -> (Service, TraceConsumer) {
    let (probe, mut rx) = ProbeReceiverFactory::new();
    let registry = Registry::empty()
        .with_receiver(probe)
        .with_processor(TailSamplingProcessorFactory)
        .with_exporter(sink.clone());
    let config = load_str_with_env(CONFIG, "test.yaml", &registry, &|_| None)
        .expect("test config should load");
    let service = Service::start(&config, Arc::new(Readiness::default()))
        .await
        .expect("service should start");
    let consumer = rx.recv().await.expect("receiver should have started");
    (service, consumer)
}

#[tokio::test(start_paused = true)]
async fn decisions_reach_the_exporter_and_shutdown_flushes_the_rest() {
    let sink = Sink::default();
    let (mut service, consumer) = start(&sink).await;
    // Accepted at once, although the decision is seconds away.
    tokio::time::timeout(
        Duration::from_millis(10),
        consumer.consume(Transport::Grpc, root(1, "early")),
    )
    .await
    .expect("the sender should not wait for the decision")
    .expect("accepted");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(*sink.0.lock(), ["early"]);

    consumer
        .consume(Transport::Grpc, root(2, "pending"))
        .await
        .expect("accepted");
    let report = service.shutdown(Duration::from_secs(5)).await;
    assert!(!report.timed_out);
    assert_eq!(*sink.0.lock(), ["early", "pending"]);
}
