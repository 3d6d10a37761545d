//! One pipeline's task: takes batches from its inlet, runs its processors inline, fans the
//! output out to its exporters' queues, and answers each sender.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::queue::{ExporterQueue, Full};
use crate::component::{
    ByteSize, Dropped, Emitter, FlushReason, PipelineMsg, ProcessError, Processor, Refusal,
    RefusalReason, TraceBatch,
};
use crate::telemetry::metrics::ProcessorMetrics;

/// A processor with its id and standard metrics.
pub struct ProcessorSlot {
    pub id: String,
    pub processor: Box<dyn Processor>,
    pub metrics: ProcessorMetrics,
}

/// An exporter queue this pipeline feeds.
pub struct ExporterSlot {
    pub id: String,
    pub queue: Arc<ExporterQueue>,
    /// Whether the exporter's success means the data is durable (senders wait for it).
    pub durable: bool,
}

pub struct Pipeline {
    pub id: String,
    pub inlet: mpsc::Receiver<PipelineMsg>,
    pub processors: Vec<ProcessorSlot>,
    pub exporters: Vec<ExporterSlot>,
    /// Cancelled once the receivers have stopped: drain the inlet, flush, and end.
    pub stop: CancellationToken,
}

impl Pipeline {
    pub async fn run(mut self) {
        let wakeups: Vec<Arc<Notify>> = self
            .processors
            .iter()
            .filter_map(|s| s.processor.wakeup())
            .collect();
        loop {
            let deadline = self.next_flush();
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                msg = self.inlet.recv() => match msg {
                    Some(msg) => {
                        self.handle(msg).await;
                        if self.inlet.is_empty() {
                            self.flush(FlushReason::Idle).await;
                        }
                    }
                    None => break,
                },
                _ = sleep_until(deadline) => self.flush(FlushReason::Timer).await,
                _ = any_notified(&wakeups) => self.flush(FlushReason::Wakeup).await,
            }
        }
        self.inlet.close();
        while let Some(msg) = self.inlet.recv().await {
            self.handle(msg).await;
        }
        self.flush(FlushReason::Shutdown).await;
        for slot in &mut self.processors {
            slot.processor.shutdown().await;
        }
        tracing::debug!(pipeline = %self.id, "pipeline stopped");
    }

    fn next_flush(&self) -> Option<Instant> {
        self.processors
            .iter()
            .filter_map(|s| s.processor.next_flush())
            .min()
    }

    async fn handle(&mut self, msg: PipelineMsg) {
        let full = self
            .exporters
            .iter()
            .find_map(|e| e.queue.full().map(|full| (&e.id, full)));
        if let Some((id, full)) = full {
            let message = match full {
                Full::Queue => format!("the sending queue of exporter {id} is full, retry later"),
                Full::Backlog { held, limit } => format!(
                    "exporter {id} holds {:.1} MiB not yet delivered (its limit is {}), retry later",
                    held as f64 / (1 << 20) as f64,
                    ByteSize(limit)
                ),
            };
            let refusal = Refusal::new(RefusalReason::PipelineFull, message);
            let _ = msg.reply.send(Err(refusal));
            return;
        }
        let mut batch = msg.batch;
        if !self.exporters.iter().any(|e| e.durable) {
            // Nothing downstream makes the data safer than accepted: answer the sender now.
            batch.release_acks();
        }
        let verdict = self.process(batch, 0).await;
        // The sender may have gone away; its data is accepted (or refused) all the same.
        let _ = msg.reply.send(verdict);
    }

    /// Runs `batch` through the processors from `first` on and exports what comes out.
    /// A refusal reaches the sender only while no processor holds or has merged the data;
    /// after that, the refused spans were already accepted and are counted as dropped.
    async fn process(&mut self, batch: TraceBatch, first: usize) -> Result<(), Refusal> {
        let mut current = vec![batch];
        let mut untouched = true;
        let mut out = Emitter::default();
        for index in first..self.processors.len() {
            let slot = &mut self.processors[index];
            let mut next = Vec::new();
            for batch in current.drain(..) {
                let spans = batch.span_count() as u64;
                slot.metrics.incoming.increment(spans);
                let mut dropped = Dropped::default();
                match slot.processor.process(batch, &mut out, &mut dropped).await {
                    Ok(()) => {}
                    Err(ProcessError::Refused(refusal)) if untouched && first == 0 => {
                        return Err(refusal);
                    }
                    Err(ProcessError::Refused(refusal)) => {
                        dropped.add("refused_after_accept", spans);
                        tracing::warn!(pipeline = %self.id, processor = %slot.id, %refusal, "dropping held spans");
                    }
                    Err(ProcessError::Failed(message)) => {
                        dropped.add("processor_failed", spans);
                        tracing::warn!(pipeline = %self.id, processor = %slot.id, %message, "processor failed");
                    }
                }
                record_drops(slot, &mut dropped);
                for emitted in out.drain() {
                    slot.metrics.outgoing.increment(emitted.span_count() as u64);
                    next.push(emitted);
                }
            }
            untouched &= next.len() == 1 && slot.processor.next_flush().is_none();
            current = next;
            if current.is_empty() {
                return Ok(());
            }
        }
        self.export(current);
        Ok(())
    }

    /// Flushes every processor in order; what one emits goes through the ones after it.
    async fn flush(&mut self, reason: FlushReason) {
        let now = Instant::now();
        for index in 0..self.processors.len() {
            let slot = &mut self.processors[index];
            let due = match reason {
                FlushReason::Shutdown => true,
                FlushReason::Wakeup if slot.processor.wakeup().is_some() => true,
                FlushReason::Idle => slot.processor.next_flush().is_some(),
                _ => slot.processor.next_flush().is_some_and(|at| at <= now),
            };
            if !due {
                continue;
            }
            let mut out = Emitter::default();
            let mut dropped = Dropped::default();
            slot.processor.flush(reason, &mut out, &mut dropped).await;
            record_drops(slot, &mut dropped);
            let emitted: Vec<TraceBatch> = out.drain().collect();
            for batch in &emitted {
                slot.metrics.outgoing.increment(batch.span_count() as u64);
            }
            for batch in emitted {
                // Data already accepted: a refusal further on is counted as a drop inside.
                let _ = self.process(batch, index + 1).await;
            }
        }
    }

    /// Fans batches out to the exporters: clones for all but the last, which gets the original.
    fn export(&self, batches: Vec<TraceBatch>) {
        let Some((last, others)) = self.exporters.split_last() else {
            return;
        };
        for batch in batches {
            for slot in others {
                push(slot, batch.clone());
            }
            push(last, batch);
        }
    }
}

fn push(slot: &ExporterSlot, mut batch: TraceBatch) {
    if !slot.durable {
        batch.release_acks();
    }
    if let Err(batch) = slot.queue.push(batch) {
        let spans = batch.span_count() as u64;
        slot.queue.metrics().failed("shutdown", spans);
        tracing::warn!(exporter = %slot.id, spans, "exporter already stopped; dropping batch");
    }
}

fn record_drops(slot: &ProcessorSlot, dropped: &mut Dropped) {
    for (reason, spans) in dropped.drain() {
        slot.metrics.dropped(reason, spans);
    }
}

/// Completes when any of the processors' wakeups is notified; never when there are none.
async fn any_notified(wakeups: &[Arc<Notify>]) {
    if wakeups.is_empty() {
        return std::future::pending().await;
    }
    let waits = wakeups.iter().map(|n| Box::pin(n.notified()));
    futures::future::select_all(waits).await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
