//! How a receiver hands batches to the pipelines it feeds, and hears back whether they were taken.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::ack::ack_pair;
use super::batch::TraceBatch;
use super::error::{Refusal, RefusalReason};
use crate::telemetry::metrics::ReceiverMetrics;

/// The transport a batch arrived on, for metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// One batch on its way into a pipeline, with the channel its verdict goes back on.
#[derive(Debug)]
pub struct PipelineMsg {
    pub batch: TraceBatch,
    pub reply: oneshot::Sender<Result<(), Refusal>>,
}

/// The sending end of one pipeline's bounded input.
#[derive(Debug, Clone)]
pub struct PipelineInlet {
    pub pipeline: Arc<str>,
    tx: mpsc::Sender<PipelineMsg>,
    /// Something in the pipeline reads spans (see `Processor::reads_spans`).
    reads_spans: bool,
}

impl PipelineInlet {
    /// A pipeline input holding at most `capacity` batches; the pipeline reads the receiver.
    pub fn channel(pipeline: &str, capacity: usize) -> (Self, mpsc::Receiver<PipelineMsg>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                pipeline: Arc::from(pipeline),
                tx,
                reads_spans: true,
            },
            rx,
        )
    }

    /// Says whether anything in the pipeline reads spans (by default something does).
    pub fn reading_spans(mut self, reads_spans: bool) -> Self {
        self.reads_spans = reads_spans;
        self
    }
}

/// What a receiver calls with every decoded batch. It fans the batch out to the receiver's
/// pipelines (cloning for all but the last), waits for their verdicts and records the
/// receiver's standard metrics. Cheap to clone.
#[derive(Clone)]
pub struct TraceConsumer {
    inlets: Arc<[PipelineInlet]>,
    metrics: Arc<ReceiverMetrics>,
    reads_spans: bool,
}

impl TraceConsumer {
    pub fn new(receiver_id: &str, inlets: Vec<PipelineInlet>) -> Self {
        Self {
            reads_spans: inlets.iter().any(|inlet| inlet.reads_spans),
            inlets: inlets.into(),
            metrics: Arc::new(ReceiverMetrics::new(receiver_id)),
        }
    }

    /// Whether a pipeline this receiver feeds reads spans: the receiver then decodes each
    /// request itself, on its own task, rather than leaving it to the pipeline's one task.
    pub fn reads_spans(&self) -> bool {
        self.reads_spans
    }

    /// Offers a batch to every pipeline. `Ok` means every pipeline accepted it and will
    /// deliver it (and a durable exporter, if any, has it safe); a refusal means the
    /// sender should retry later. A batch is only offered
    /// when every pipeline has room, so a refusal never leaves a partial copy behind
    /// because one pipeline was full.
    pub async fn consume(&self, transport: Transport, batch: TraceBatch) -> Result<(), Refusal> {
        let spans = batch.span_count() as u64;
        let result = self.offer(batch).await;
        match &result {
            Ok(()) => self.metrics.accepted(transport, spans),
            Err(refusal) => self
                .metrics
                .refused(transport, spans, refusal.reason.as_str()),
        }
        result
    }

    async fn offer(&self, batch: TraceBatch) -> Result<(), Refusal> {
        let mut permits = Vec::with_capacity(self.inlets.len());
        for inlet in self.inlets.iter() {
            match inlet.tx.try_reserve() {
                Ok(permit) => permits.push(permit),
                Err(mpsc::error::TrySendError::Full(())) => {
                    return Err(Refusal::new(
                        RefusalReason::PipelineFull,
                        format!("pipeline {} is full, retry later", inlet.pipeline),
                    ));
                }
                Err(mpsc::error::TrySendError::Closed(())) => {
                    return Err(Refusal::new(
                        RefusalReason::ShuttingDown,
                        "spanline is shutting down",
                    ));
                }
            }
        }
        let mut replies = Vec::with_capacity(permits.len());
        let (ack, acked) = ack_pair();
        let mut batch = batch;
        batch.hold_ack(ack);
        let mut batch = Some(batch);
        let last = permits.len().saturating_sub(1);
        for (i, permit) in permits.into_iter().enumerate() {
            let copy = if i == last {
                batch
                    .take()
                    .expect("the last pipeline should get the original batch")
            } else {
                batch
                    .clone()
                    .expect("the batch should still be held before the last pipeline")
            };
            let (reply, verdict) = oneshot::channel();
            permit.send(PipelineMsg { batch: copy, reply });
            replies.push(verdict);
        }
        let mut outcome = Ok(());
        for verdict in replies {
            let result = verdict.await.unwrap_or_else(|_| {
                Err(Refusal::new(
                    RefusalReason::ShuttingDown,
                    "spanline is shutting down",
                ))
            });
            if outcome.is_ok() {
                outcome = result;
            }
        }
        if outcome.is_ok() {
            // Durable exporters hold the acknowledgement until the data is safe; every
            // other holder releases it as soon as the batch is queued.
            acked.wait().await;
        }
        outcome
    }

    /// Counts a request refused before it could be decoded (malformed, too large, ...).
    pub fn refused_request(&self, transport: Transport, reason: &'static str) {
        self.metrics.refused_request(transport, reason);
    }

    /// Counts spans rejected from an otherwise accepted request (partial success).
    pub fn rejected_spans(&self, transport: Transport, spans: u64, reason: &'static str) {
        self.metrics.refused(transport, spans, reason);
    }
}
