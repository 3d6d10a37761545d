//! Drives one exporter: takes batches from its queue, exports with a timeout, retries with
//! backoff, and counts every span as sent or failed.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::queue::ExporterQueue;
use crate::component::{ExportError, Exporter, TraceBatch};
use crate::config::ExporterSettings;

/// One exporter with its queue and settings.
pub struct ExporterRunner {
    pub id: String,
    pub exporter: Box<dyn Exporter>,
    pub queue: Arc<ExporterQueue>,
    pub settings: ExporterSettings,
    /// Cancelled when the shutdown deadline passes: stop retrying, count the rest as failed.
    pub abandon: CancellationToken,
}

enum Attempt {
    Done,
    RetryAfter(Duration),
}

impl ExporterRunner {
    /// Runs until the queue is closed and drained (or abandoned), then flushes and shuts
    /// the exporter down.
    pub async fn run(mut self) {
        while let Some(batch) = self.queue.pop().await {
            if self.abandon.is_cancelled() {
                self.fail(&batch, "shutdown", "shutdown deadline passed");
                continue;
            }
            self.send(&batch).await;
        }
        if let Err(err) = self.exporter.flush().await {
            tracing::warn!(exporter = %self.id, error = %err, "flush at shutdown failed");
        }
        self.exporter.shutdown().await;
        tracing::debug!(exporter = %self.id, "exporter stopped");
    }

    async fn send(&mut self, batch: &TraceBatch) {
        let started = Instant::now();
        let mut backoff = Backoff::new(&self.settings.retry_on_failure);
        loop {
            let wait = match self.attempt(batch).await {
                Attempt::Done => return,
                Attempt::RetryAfter(hint) => hint,
            };
            let retry = &self.settings.retry_on_failure;
            if !retry.enabled {
                self.fail(
                    batch,
                    "retry_disabled",
                    "export failed and retry_on_failure is disabled",
                );
                return;
            }
            let wait = if wait.is_zero() {
                backoff.next_wait()
            } else {
                wait
            };
            let limit = retry.max_elapsed_time.get();
            if !limit.is_zero() && started.elapsed() + wait > limit {
                self.fail(
                    batch,
                    "retries_exhausted",
                    "retry_on_failure.max_elapsed_time reached",
                );
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.abandon.cancelled() => {
                    self.fail(batch, "shutdown", "shutdown deadline passed while retrying");
                    return;
                }
            }
            self.queue.metrics().retries.increment(1);
        }
    }

    /// One export attempt; a zero `RetryAfter` means "use the backoff".
    async fn attempt(&mut self, batch: &TraceBatch) -> Attempt {
        let spans = batch.span_count() as u64;
        let start = Instant::now();
        let result = tokio::select! {
            r = tokio::time::timeout(self.settings.timeout.get(), self.exporter.export(batch)) => r,
            _ = self.abandon.cancelled() => {
                self.fail(batch, "shutdown", "shutdown deadline passed during export");
                return Attempt::Done;
            }
        };
        let metrics = self.queue.metrics();
        metrics.latency.record(start.elapsed().as_secs_f64());
        match result {
            Ok(Ok(())) => {
                metrics.sent.increment(spans);
                Attempt::Done
            }
            Ok(Err(ExportError::PartiallyRejected { rejected, message })) => {
                let rejected = rejected.min(spans);
                metrics.sent.increment(spans - rejected);
                metrics.failed("rejected", rejected);
                tracing::warn!(exporter = %self.id, rejected, %message, "peer rejected spans");
                Attempt::Done
            }
            Ok(Err(ExportError::Permanent { message })) => {
                self.fail(batch, "permanent", &message);
                Attempt::Done
            }
            Ok(Err(ExportError::Retryable {
                message,
                retry_after,
            })) => {
                tracing::debug!(exporter = %self.id, %message, "export failed, will retry");
                Attempt::RetryAfter(retry_after.unwrap_or_default())
            }
            Err(_) => {
                tracing::debug!(exporter = %self.id, timeout = %self.settings.timeout, "export timed out, will retry");
                Attempt::RetryAfter(Duration::ZERO)
            }
        }
    }

    fn fail(&self, batch: &TraceBatch, reason: &'static str, message: &str) {
        let spans = batch.span_count() as u64;
        self.queue.metrics().failed(reason, spans);
        tracing::warn!(exporter = %self.id, spans, reason, %message, "dropping batch");
    }
}
