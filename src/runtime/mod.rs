//! Running pipelines: exporter runners, pipeline tasks and receivers, started downstream
//! first and stopped upstream first under one deadline.

pub mod backoff;
pub mod exporter_runner;
pub mod pipeline;
pub mod queue;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::component::{
    BuildContext, ComponentError, Kind, PipelineInlet, ReceiverContext, TraceConsumer,
};
use crate::config::{ComponentSpec, Config};
use crate::factory::Built;
use crate::graph::Graph;
use crate::store::live::QuerySource;
use crate::telemetry::metrics::{ExporterMetrics, ProcessorMetrics};
use exporter_runner::ExporterRunner;
use pipeline::{ExporterSlot, Pipeline, ProcessorSlot};
use queue::ExporterQueue;

/// How many requests may wait at a pipeline's inlet before receivers refuse.
pub const PIPELINE_INLET_CAPACITY: usize = 32;

/// Readiness as the admin server reports it.
#[derive(Debug, Default)]
pub struct Readiness {
    ready: AtomicBool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

/// A running set of pipelines.
pub struct Service {
    receivers: Vec<(String, JoinHandle<()>)>,
    receiver_stop: CancellationToken,
    pipelines: Vec<(String, JoinHandle<()>)>,
    pipeline_stop: CancellationToken,
    exporters: Vec<(String, JoinHandle<()>, Arc<ExporterQueue>)>,
    /// Stores that exporters keep, by exporter id, for the query API.
    query_sources: Vec<(String, QuerySource)>,
    abandon: CancellationToken,
    pub readiness: Arc<Readiness>,
}

/// What a shutdown left undelivered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    pub timed_out: bool,
    pub abandoned_spans: u64,
}

impl Service {
    /// The queryable stores of the running exporters, as (exporter id, source).
    pub fn query_sources(&self) -> &[(String, QuerySource)] {
        &self.query_sources
    }

    /// Builds every component and starts them downstream first. On failure, whatever was
    /// started is stopped again.
    pub async fn start(
        config: &Config,
        readiness: Arc<Readiness>,
    ) -> Result<Service, ComponentError> {
        let graph = Graph::from_config(config);
        let mut service = Service {
            receivers: Vec::new(),
            receiver_stop: CancellationToken::new(),
            pipelines: Vec::new(),
            pipeline_stop: CancellationToken::new(),
            exporters: Vec::new(),
            query_sources: Vec::new(),
            abandon: CancellationToken::new(),
            readiness,
        };
        if let Err(err) = service.start_all(config, &graph).await {
            service.shutdown(Duration::from_secs(5)).await;
            return Err(err);
        }
        service.readiness.set(true);
        Ok(service)
    }

    async fn start_all(&mut self, config: &Config, graph: &Graph) -> Result<(), ComponentError> {
        let mut queues = HashMap::new();
        for id in &graph.exporters {
            let spec = spec(config, Kind::Exporter, id)?;
            let started = self.start_exporter(spec).await?;
            queues.insert(id.clone(), started);
        }
        let mut inlets = HashMap::new();
        for node in &graph.pipelines {
            let (inlet, receiver) = PipelineInlet::channel(&node.id, PIPELINE_INLET_CAPACITY);
            let mut processors = Vec::new();
            for id in &node.processors {
                processors.push(build_processor(config, id, &node.id).await?);
            }
            let reads_spans = processors.iter().any(|p| p.processor.reads_spans())
                || node.exporters.iter().any(|id| queues[id].2);
            let inlet = inlet.reading_spans(reads_spans);
            let exporters = node
                .exporters
                .iter()
                .map(|id| {
                    let (queue, durable, _) = &queues[id];
                    ExporterSlot {
                        id: id.clone(),
                        queue: Arc::clone(queue),
                        durable: *durable,
                    }
                })
                .collect();
            let pipeline = Pipeline {
                id: node.id.clone(),
                inlet: receiver,
                processors,
                exporters,
                stop: self.pipeline_stop.clone(),
            };
            self.pipelines
                .push((node.id.clone(), tokio::spawn(pipeline.run())));
            inlets.insert(node.id.clone(), inlet);
        }
        for node in &graph.receivers {
            let spec = spec(config, Kind::Receiver, &node.id)?;
            let feeds = node.pipelines.iter().map(|p| inlets[p].clone()).collect();
            let ctx = ReceiverContext {
                id: node.id.clone(),
                consumer: TraceConsumer::new(&node.id, feeds),
                shutdown: self.receiver_stop.clone(),
            };
            let Built::Receiver(receiver) = build(spec, None)? else {
                return Err(ComponentError::other(
                    &node.id,
                    "factory built the wrong kind",
                ));
            };
            let handle = receiver.start(ctx).await?;
            tracing::info!(receiver = %node.id, "receiver started");
            self.receivers.push((node.id.clone(), handle));
        }
        Ok(())
    }

    /// Starts an exporter and its runner; returns its queue, whether it is durable and
    /// whether it reads spans.
    async fn start_exporter(
        &mut self,
        spec: &ComponentSpec,
    ) -> Result<(Arc<ExporterQueue>, bool, bool), ComponentError> {
        let Built::Exporter(mut exporter) = build(spec, None)? else {
            return Err(ComponentError::other(
                &spec.id,
                "factory built the wrong kind",
            ));
        };
        exporter.start().await?;
        let durable = exporter.durable();
        let reads_spans = exporter.reads_spans();
        if let Some(source) = exporter.query_source() {
            self.query_sources.push((spec.id.clone(), source));
        }
        let (capacity, capacity_bytes) = spec.settings.queue_capacity();
        let metrics = ExporterMetrics::new(&spec.id, capacity, capacity_bytes);
        let queue = Arc::new(
            ExporterQueue::new(capacity, capacity_bytes, metrics).with_backlog(exporter.backlog()),
        );
        let runner = ExporterRunner {
            id: spec.id.clone(),
            exporter,
            queue: queue.clone(),
            settings: spec.settings.clone(),
            abandon: self.abandon.clone(),
        };
        self.exporters
            .push((spec.id.clone(), tokio::spawn(runner.run()), queue.clone()));
        Ok((queue, durable, reads_spans))
    }

    /// Stops receivers, then drains pipelines, then drains exporters, all within `timeout`.
    /// Idempotent: a second call finds nothing left to stop.
    pub async fn shutdown(&mut self, timeout: Duration) -> ShutdownReport {
        self.readiness.set(false);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut report = ShutdownReport::default();
        self.receiver_stop.cancel();
        report.timed_out |= join_all(&mut self.receivers, deadline, "receiver").await;
        self.pipeline_stop.cancel();
        report.timed_out |= join_all(&mut self.pipelines, deadline, "pipeline").await;
        for (_, _, queue) in &self.exporters {
            queue.close();
        }
        let mut runners: Vec<(String, JoinHandle<()>)> = self
            .exporters
            .iter_mut()
            .map(|(id, handle, _)| {
                (
                    id.clone(),
                    std::mem::replace(handle, tokio::spawn(async {})),
                )
            })
            .collect();
        if join_all(&mut runners, deadline, "exporter").await {
            report.timed_out = true;
            self.abandon.cancel();
            // Give abandoned exporters a moment to count what they held.
            let grace = tokio::time::Instant::now() + Duration::from_secs(1);
            join_all(&mut runners, grace, "exporter").await;
        }
        for (id, _, queue) in self.exporters.drain(..) {
            for batch in queue.take_all() {
                let spans = batch.span_count() as u64;
                report.abandoned_spans += spans;
                queue.metrics().failed("shutdown", spans);
                tracing::warn!(exporter = %id, spans, "shutdown deadline passed; batch not delivered");
            }
        }
        report
    }
}

/// Waits for each task until the deadline; true if any was still running then (it is aborted).
async fn join_all(
    tasks: &mut Vec<(String, JoinHandle<()>)>,
    deadline: tokio::time::Instant,
    what: &str,
) -> bool {
    let mut timed_out = false;
    for (id, handle) in tasks.iter_mut() {
        if tokio::time::timeout_at(deadline, &mut *handle)
            .await
            .is_err()
        {
            tracing::warn!(%id, "{what} did not stop before the shutdown deadline");
            timed_out = true;
        }
    }
    if !timed_out {
        tasks.clear();
    }
    timed_out
}

fn spec<'a>(config: &'a Config, kind: Kind, id: &str) -> Result<&'a ComponentSpec, ComponentError> {
    config
        .component(kind, id)
        .ok_or_else(|| ComponentError::other(id, format!("{} is not defined", kind.as_str())))
}

fn build(spec: &ComponentSpec, pipeline: Option<&str>) -> Result<Built, ComponentError> {
    let parsed = spec
        .parse()
        .ok_or_else(|| ComponentError::other(&spec.id, "config no longer parses"))?;
    let ctx = BuildContext {
        id: spec.id.clone(),
        pipeline: pipeline.map(str::to_string),
    };
    spec.factory.build(parsed, &ctx)
}

async fn build_processor(
    config: &Config,
    id: &str,
    pipeline: &str,
) -> Result<ProcessorSlot, ComponentError> {
    let spec = spec(config, Kind::Processor, id)?;
    let Built::Processor(mut processor) = build(spec, Some(pipeline))? else {
        return Err(ComponentError::other(id, "factory built the wrong kind"));
    };
    processor.start().await?;
    Ok(ProcessorSlot {
        id: id.to_string(),
        processor,
        metrics: ProcessorMetrics::new(id, pipeline),
    })
}

#[cfg(test)]
mod tests;
