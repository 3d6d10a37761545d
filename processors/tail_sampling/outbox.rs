//! What shards hand back to the pipeline: decided spans waiting to be emitted, and drop counts.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::component::Dropped;

/// Spans of one sampled trace (or late spans of one) ready to go downstream.
#[derive(Debug)]
pub struct Output {
    pub groups: Vec<ResourceSpans>,
    pub spans: usize,
    pub bytes: usize,
    pub has_error: bool,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Output>,
    bytes: usize,
}

/// One shard's decided output. Its bytes still count against the shard's memory budget
/// until the pipeline takes them, so a stalled pipeline cannot make the sampler grow.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<Queue>,
    /// The most bytes the shard ever accounted (buffered + waiting here), for tests and gauges.
    pub peak: AtomicUsize,
}

impl Outbox {
    pub fn push(&self, output: Output) {
        let mut queue = self.queue.lock();
        queue.bytes += output.bytes;
        queue.items.push_back(output);
    }

    pub fn bytes(&self) -> usize {
        self.queue.lock().bytes
    }

    /// Removes the oldest waiting output without an error span; returns its span count.
    pub fn evict_errorless(&self) -> Option<usize> {
        let mut queue = self.queue.lock();
        let index = queue.items.iter().position(|o| !o.has_error)?;
        let output = queue.items.remove(index)?;
        queue.bytes -= output.bytes;
        Some(output.spans)
    }

    /// Takes everything waiting.
    pub fn take(&self) -> (Vec<Output>, usize) {
        let mut queue = self.queue.lock();
        let bytes = std::mem::take(&mut queue.bytes);
        (queue.items.drain(..).collect(), bytes)
    }

    pub fn note_accounted(&self, bytes: usize) {
        self.peak.fetch_max(bytes, Ordering::Relaxed);
    }
}

/// Spans discarded by the shards, by reason, until the pipeline reports them.
#[derive(Debug, Default)]
pub struct DropCounts {
    pub not_sampled: AtomicU64,
    pub memory_pressure: AtomicU64,
    pub policy_drop: AtomicU64,
    pub shutdown: AtomicU64,
}

impl DropCounts {
    /// Moves the counts into the pipeline's `Dropped`.
    pub fn report(&self, dropped: &mut Dropped) {
        let reasons = [
            ("not_sampled", &self.not_sampled),
            ("memory_pressure", &self.memory_pressure),
            ("policy_drop", &self.policy_drop),
            ("shutdown", &self.shutdown),
        ];
        for (reason, count) in reasons {
            dropped.add(reason, count.swap(0, Ordering::Relaxed));
        }
    }
}

/// Everything the shards share with the processor.
#[derive(Debug, Default)]
pub struct Shared {
    pub outboxes: Vec<Outbox>,
    pub drops: DropCounts,
    /// Set when a shard produced output or drops the pipeline has not collected yet.
    pub pending: AtomicBool,
    pub wakeup: Arc<Notify>,
}

impl Shared {
    pub fn new(shards: usize) -> Self {
        Self {
            outboxes: (0..shards).map(|_| Outbox::default()).collect(),
            ..Self::default()
        }
    }
}
