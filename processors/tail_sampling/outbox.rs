//! What shards hand back to the pipeline: decided spans waiting to be emitted, and drop counts.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::trace::{decode_groups, trace_id_of};
use super::tracestate::{self, trace_id_randomness};
use crate::component::Dropped;

/// Spans of one sampled trace (or late spans of one) ready to go downstream. They stay
/// encoded until the pipeline takes them, so waiting output costs what the budget counts.
#[derive(Debug)]
pub struct Output {
    /// The spans, encoded (a `TracesData`): decoded spans take several times the bytes the
    /// budget counts for them.
    pub encoded: Vec<u8>,
    /// The policy that sampled the trace.
    pub policy: Arc<str>,
    pub adjusted_count: Option<f64>,
    /// For a consistent probabilistic decision: the rejection threshold, for `ot=th:`.
    pub threshold: Option<u64>,
    pub spans: usize,
    pub bytes: usize,
    pub has_error: bool,
}

impl Output {
    /// The spans, decoded and marked with the policy that kept them.
    pub fn into_groups(self) -> Vec<ResourceSpans> {
        let mut groups = decode_groups(&self.encoded);
        tag(&mut groups, &self.policy, self.adjusted_count);
        if let Some(threshold) = self.threshold {
            record_threshold(&mut groups, threshold);
        }
        groups
    }
}

/// Marks sampled spans with the policy that kept them and, for a probabilistic decision,
/// how many traces each stands for, so downstream totals can be re-weighted.
fn tag(groups: &mut [ResourceSpans], policy: &str, adjusted_count: Option<f64>) {
    for rs in groups {
        for ss in &mut rs.scope_spans {
            for span in &mut ss.spans {
                span.attributes.push(attribute(
                    "sampling.policy",
                    Value::StringValue(policy.to_string()),
                ));
                if let Some(count) = adjusted_count {
                    span.attributes.push(attribute(
                        "sampling.adjusted_count",
                        Value::DoubleValue(count),
                    ));
                }
            }
        }
    }
}

/// Writes the rejection threshold of a consistent probabilistic decision into each span's
/// tracestate (`ot=th:`), so downstream samplers and backends can weigh the span.
fn record_threshold(groups: &mut [ResourceSpans], threshold: u64) {
    for rs in groups {
        for ss in &mut rs.scope_spans {
            for span in &mut ss.spans {
                let randomness = trace_id_randomness(trace_id_of(span));
                span.trace_state =
                    tracestate::record_threshold(&span.trace_state, threshold, randomness);
            }
        }
    }
}

fn attribute(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
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
