//! The component API: the one module receivers, processors and exporters import.

pub mod ack;
pub mod batch;
pub mod consumer;
pub mod error;
pub mod tenant;
pub mod validate;
pub(crate) mod wire;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::config::units::{ByteSize, HumanDuration};
pub use crate::telemetry::metrics as names;
pub use ack::{Ack, AckWaiter, ack_pair};
pub use batch::TraceBatch;
pub use consumer::{PipelineInlet, PipelineMsg, TraceConsumer, Transport};
pub use error::{ComponentError, ExportError, ProcessError, Refusal, RefusalReason};
pub use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
pub use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value,
};
pub use opentelemetry_proto::tonic::resource::v1::Resource;
pub use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
pub use validate::{Problem, Problems, Severity};

/// The three kinds of component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Receiver,
    Processor,
    Exporter,
}

impl Kind {
    /// The top-level config section of this kind (`receivers`, ...).
    pub fn section(self) -> &'static str {
        match self {
            Kind::Receiver => "receivers",
            Kind::Processor => "processors",
            Kind::Exporter => "exporters",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Receiver => "receiver",
            Kind::Processor => "processor",
            Kind::Exporter => "exporter",
        }
    }
}

/// A component's typed configuration. `Default` is the one place its defaults live.
pub trait ComponentConfig: DeserializeOwned + Default + Debug + Send + Sync + 'static {
    /// Pure validation: no IO. Record every problem with a path relative to the component.
    fn validate(&self, _problems: &mut Problems) {}
}

/// What every component is told when it is built.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The component id as written in the config, `type[/name]`.
    pub id: String,
    /// The pipeline a processor is built for (processors are built once per pipeline).
    pub pipeline: Option<String>,
}

/// What a running receiver gets: where to send batches and when to stop.
#[derive(Clone)]
pub struct ReceiverContext {
    pub id: String,
    pub consumer: TraceConsumer,
    pub shutdown: CancellationToken,
}

/// A source of spans (a network server, usually).
#[async_trait]
pub trait Receiver: Send {
    /// Binds its listeners and starts serving; returns once it accepts connections, with a
    /// handle that completes after `ctx.shutdown` is cancelled and serving has stopped.
    async fn start(
        self: Box<Self>,
        ctx: ReceiverContext,
    ) -> Result<tokio::task::JoinHandle<()>, ComponentError>;
}

/// Collects a processor's output batches; the pipeline reuses it between calls.
#[derive(Debug, Default)]
pub struct Emitter {
    batches: Vec<TraceBatch>,
}

impl Emitter {
    pub fn emit(&mut self, batch: TraceBatch) {
        if !batch.is_empty() {
            self.batches.push(batch);
        }
    }

    pub fn drain(&mut self) -> std::vec::Drain<'_, TraceBatch> {
        self.batches.drain(..)
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

/// Why a processor is asked to flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    /// The deadline from `next_flush` has passed.
    Timer,
    /// The processor's `wakeup` was notified.
    Wakeup,
    /// The pipeline has no more input waiting. A processor holding data that senders
    /// wait on (a durable exporter answers them only once it has the data) may emit it
    /// now rather than make them wait for a timer.
    Idle,
    /// The pipeline is stopping: emit everything held.
    Shutdown,
}

/// A step of a pipeline; runs inline in the pipeline's task, one batch at a time.
#[async_trait]
pub trait Processor: Send {
    async fn start(&mut self) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Takes a batch and emits zero or more batches. Spans it discards must be reported
    /// through `dropped` so that every span ends in a counted outcome.
    async fn process(
        &mut self,
        batch: TraceBatch,
        out: &mut Emitter,
        dropped: &mut Dropped,
    ) -> Result<(), ProcessError>;

    /// When the processor next wants `flush` called, if it holds data.
    fn next_flush(&self) -> Option<Instant> {
        None
    }

    /// For processors whose own tasks produce output (e.g. decisions made off the pipeline
    /// task): notified when output is ready, after which the host calls
    /// `flush(FlushReason::Wakeup, ..)`. Asked once, at start.
    fn wakeup(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// Emits held data that is due (or all of it, on shutdown).
    async fn flush(&mut self, _reason: FlushReason, _out: &mut Emitter, _dropped: &mut Dropped) {}

    /// Whether this processor reads or changes spans. Receivers decode requests up front
    /// (on their own tasks, in parallel) for pipelines where something does; where nothing
    /// does, batches travel as the bytes they arrived in. A processor that only counts,
    /// groups or gates batches (`batch`, `memory_limiter`) says false.
    fn reads_spans(&self) -> bool {
        true
    }

    async fn shutdown(&mut self) {}
}

/// Spans a processor discarded, by reason; the host records them as metrics.
#[derive(Debug, Default)]
pub struct Dropped {
    counts: Vec<(&'static str, u64)>,
}

impl Dropped {
    pub fn add(&mut self, reason: &'static str, spans: u64) {
        if spans == 0 {
            return;
        }
        match self.counts.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += spans,
            None => self.counts.push((reason, spans)),
        }
    }

    pub fn drain(&mut self) -> std::vec::Drain<'_, (&'static str, u64)> {
        self.counts.drain(..)
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

/// Whether a component is working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy(String),
}

/// A destination for spans. The host calls it from one task at a time and owns its queue,
/// retries and timeout; `export` takes the batch by reference so a retry resends it as is.
#[async_trait]
pub trait Exporter: Send {
    async fn start(&mut self) -> Result<(), ComponentError> {
        Ok(())
    }

    async fn export(&mut self, batch: &TraceBatch) -> Result<(), ExportError>;

    /// Pushes out anything the exporter buffers itself.
    async fn flush(&mut self) -> Result<(), ExportError> {
        Ok(())
    }

    async fn shutdown(&mut self) {}

    async fn healthcheck(&mut self) -> Health {
        Health::Healthy
    }

    /// Whether batches should reach this exporter decoded (see `Processor::reads_spans`).
    /// One that sends or drops a batch as it is encoded (`otlp`, `nop`) says false, and so
    /// may one that decodes what it needs itself (`trace_store`).
    fn reads_spans(&self) -> bool {
        true
    }

    /// True when a successful `export` means the data is durable (e.g. in a write-ahead
    /// log). Senders then wait until this exporter has taken their batch; for other
    /// exporters they are answered as soon as the batch is queued.
    fn durable(&self) -> bool {
        false
    }

    /// What this exporter holds that has not reached its destination yet, for exporters
    /// that keep data past `export` (a store buffering blocks). Pipelines read it before
    /// taking each request and refuse new data while it is at its limit, so senders are
    /// told to back off at once instead of waiting on retries. Called once after `start`.
    fn backlog(&self) -> Option<Arc<dyn Backlog>> {
        None
    }

    /// What a query engine needs to read what this exporter stores (its committed blocks
    /// and its not-yet-committed spans), for exporters that keep a queryable store. Called
    /// once after `start`, before the exporter moves into its runner.
    fn query_source(&self) -> Option<crate::store::live::QuerySource> {
        None
    }
}

/// An exporter's own backlog (see `Exporter::backlog`). Read on every request: keep it
/// to atomic loads.
pub trait Backlog: Send + Sync {
    /// Bytes held (as OTLP encodes them).
    fn held_bytes(&self) -> u64;
    /// The most the exporter holds; it refuses data beyond it.
    fn limit_bytes(&self) -> u64;
}

/// A typed receiver factory: the author's side; the registry erases the types.
pub trait ReceiverFactory: Send + Sync + 'static {
    type Config: ComponentConfig;
    const TYPE: &'static str;
    /// A realistic config for this component, as it would sit under `receivers:`.
    const EXAMPLE_YAML: &'static str;
    fn build(
        &self,
        config: Self::Config,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Receiver>, ComponentError>;
}

/// A typed processor factory.
pub trait ProcessorFactory: Send + Sync + 'static {
    type Config: ComponentConfig;
    const TYPE: &'static str;
    const EXAMPLE_YAML: &'static str;
    fn build(
        &self,
        config: Self::Config,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Processor>, ComponentError>;
}

/// A typed exporter factory.
pub trait ExporterFactory: Send + Sync + 'static {
    type Config: ComponentConfig;
    const TYPE: &'static str;
    const EXAMPLE_YAML: &'static str;
    fn build(
        &self,
        config: Self::Config,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Exporter>, ComponentError>;
}
