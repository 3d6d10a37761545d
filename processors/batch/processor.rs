//! Holds spans until a batch is big or old enough, then emits it without re-encoding.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use metrics::{Counter, Histogram, counter, histogram};
use tokio::time::Instant;

use super::config::BatchConfig;
use crate::component::names::{BATCH_SEND_SIZE, BATCH_SENDS};
use crate::component::{Dropped, Emitter, FlushReason, ProcessError, Processor, TraceBatch};

/// Why a batch was sent; the `trigger` label of `BATCH_SENDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Size,
    Timeout,
    /// Senders wait on the held spans and nothing else is arriving.
    Idle,
    Shutdown,
}

/// The batch processor's metric handles, resolved once per pipeline.
struct BatchMetrics {
    by_size: Counter,
    by_timeout: Counter,
    by_idle: Counter,
    by_shutdown: Counter,
    send_size: Histogram,
}

impl BatchMetrics {
    fn new(processor: &str, pipeline: &str) -> Self {
        let sends = |trigger: &'static str| counter!(BATCH_SENDS, "processor" => processor.to_string(), "pipeline" => pipeline.to_string(), "trigger" => trigger);
        Self {
            by_size: sends("size"),
            by_timeout: sends("timeout"),
            by_idle: sends("idle"),
            by_shutdown: sends("shutdown"),
            send_size: histogram!(BATCH_SEND_SIZE, "processor" => processor.to_string(), "pipeline" => pipeline.to_string()),
        }
    }

    fn record(&self, trigger: Trigger, spans: usize) {
        match trigger {
            Trigger::Size => self.by_size.increment(1),
            Trigger::Timeout => self.by_timeout.increment(1),
            Trigger::Idle => self.by_idle.increment(1),
            Trigger::Shutdown => self.by_shutdown.increment(1),
        }
        self.send_size.record(spans as f64);
    }
}

/// One pipeline's batch processor.
pub struct BatchProcessor {
    send_batch_size: usize,
    max_spans: usize,
    timeout: Duration,
    pending: TraceBatch,
    pending_spans: usize,
    /// When each still-held group of spans arrived, oldest first, so the timer follows
    /// the oldest span even after a size-triggered send left a remainder behind.
    arrivals: VecDeque<(Instant, usize)>,
    metrics: BatchMetrics,
}

impl BatchProcessor {
    pub fn new(config: BatchConfig, processor: &str, pipeline: &str) -> Self {
        Self {
            send_batch_size: config.send_batch_size.max(1),
            max_spans: config.max_spans(),
            timeout: config.timeout.get(),
            pending: TraceBatch::default(),
            pending_spans: 0,
            arrivals: VecDeque::new(),
            metrics: BatchMetrics::new(processor, pipeline),
        }
    }

    fn hold(&mut self, batch: TraceBatch, spans: usize) {
        self.pending.append(batch);
        self.pending_spans += spans;
        self.arrivals.push_back((Instant::now(), spans));
    }

    /// Emits one batch of up to `max_spans` from the front of what is held.
    fn emit_front(&mut self, trigger: Trigger, out: &mut Emitter) {
        let take = self.pending_spans.min(self.max_spans);
        let front = self.pending.split_front(take);
        self.pending_spans -= take;
        self.forget_arrivals(take);
        self.metrics.record(trigger, take);
        out.emit(front);
    }

    /// Drops the arrival records of the `spans` oldest spans, which have just been sent.
    fn forget_arrivals(&mut self, mut spans: usize) {
        while spans > 0 {
            let Some(front) = self.arrivals.front_mut() else {
                return;
            };
            if front.1 > spans {
                front.1 -= spans;
                return;
            }
            spans -= front.1;
            self.arrivals.pop_front();
        }
    }

    /// Emits everything held, in batches of at most `max_spans`.
    fn emit_all(&mut self, trigger: Trigger, out: &mut Emitter) {
        while self.pending_spans > 0 {
            self.emit_front(trigger, out);
        }
        self.pending = TraceBatch::default();
        self.arrivals.clear();
    }

    /// Sends an incoming batch straight on (timeout 0), only splitting it to `max_spans`.
    fn pass_through(&mut self, mut batch: TraceBatch, spans: usize, out: &mut Emitter) {
        if spans <= self.max_spans {
            self.metrics.record(Trigger::Timeout, spans);
            out.emit(batch);
            return;
        }
        let mut left = spans;
        while left > 0 {
            let take = left.min(self.max_spans);
            self.metrics.record(Trigger::Timeout, take);
            out.emit(batch.split_front(take));
            left -= take;
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let (oldest, _) = self.arrivals.front()?;
        Some(*oldest + self.timeout)
    }
}

#[async_trait]
impl Processor for BatchProcessor {
    /// Batches are joined and split whole (as bytes while they have their wire form).
    fn reads_spans(&self) -> bool {
        false
    }

    async fn process(
        &mut self,
        batch: TraceBatch,
        out: &mut Emitter,
        _dropped: &mut Dropped,
    ) -> Result<(), ProcessError> {
        let spans = batch.span_count();
        if spans == 0 {
            return Ok(());
        }
        if self.timeout.is_zero() {
            self.pass_through(batch, spans, out);
            return Ok(());
        }
        self.hold(batch, spans);
        while self.pending_spans >= self.send_batch_size {
            self.emit_front(Trigger::Size, out);
        }
        Ok(())
    }

    fn next_flush(&self) -> Option<Instant> {
        self.deadline()
    }

    async fn flush(&mut self, reason: FlushReason, out: &mut Emitter, _dropped: &mut Dropped) {
        match reason {
            FlushReason::Shutdown => self.emit_all(Trigger::Shutdown, out),
            // Holding spans whose senders wait (for a durable exporter) only delays their
            // answers once the input has gone quiet; under load the input is rarely empty
            // and batches still fill.
            FlushReason::Idle => {
                if self.pending.holds_acks() {
                    self.emit_all(Trigger::Idle, out);
                }
            }
            FlushReason::Timer | FlushReason::Wakeup => {
                if self.deadline().is_some_and(|due| due <= Instant::now()) {
                    self.emit_all(Trigger::Timeout, out);
                }
            }
        }
    }
}
