//! The tail sampler's own metric handles, resolved once so shard tasks only increment.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use super::cache::Cached;
use super::policy::Verdict;
use super::shard::Why;
use crate::component::names::{
    TAIL_SAMPLING_BYTES_IN_MEMORY, TAIL_SAMPLING_DECISION_LATENCY, TAIL_SAMPLING_DECISIONS,
    TAIL_SAMPLING_EARLY_DECISIONS, TAIL_SAMPLING_LATE_SPANS, TAIL_SAMPLING_TRACES_IN_MEMORY,
};

/// One shard's handles.
#[derive(Clone)]
pub struct ShardMetrics {
    pub traces: Gauge,
    pub bytes: Gauge,
    latency: Histogram,
    sampled: Vec<Counter>,
    dropped: Vec<Counter>,
    not_sampled: Counter,
    late_sampled: Counter,
    late_not_sampled: Counter,
    early_memory: Counter,
    early_trace_bytes: Counter,
    early_tenant: Counter,
    early_shutdown: Counter,
}

impl ShardMetrics {
    /// Handles for shard `shard` of processor `processor` in `pipeline`, with one decision
    /// counter per policy.
    pub fn new(processor: &str, pipeline: &str, shard: usize, policies: &[String]) -> Self {
        let base = [
            ("processor", processor.to_string()),
            ("pipeline", pipeline.to_string()),
        ];
        let with = |key: &'static str, value: String| {
            let mut labels = base.to_vec();
            labels.push((key, value));
            labels
        };
        let decisions = |policy: &str, decision: &'static str| {
            let mut labels = with("policy", policy.to_string());
            labels.push(("decision", decision.to_string()));
            counter!(TAIL_SAMPLING_DECISIONS, &labels)
        };
        let early = |reason: &str| {
            counter!(
                TAIL_SAMPLING_EARLY_DECISIONS,
                &with("reason", reason.to_string())
            )
        };
        let late = |decision: &str| {
            counter!(
                TAIL_SAMPLING_LATE_SPANS,
                &with("decision", decision.to_string())
            )
        };
        Self {
            traces: gauge!(
                TAIL_SAMPLING_TRACES_IN_MEMORY,
                &with("shard", shard.to_string())
            ),
            bytes: gauge!(
                TAIL_SAMPLING_BYTES_IN_MEMORY,
                &with("shard", shard.to_string())
            ),
            latency: histogram!(TAIL_SAMPLING_DECISION_LATENCY, &base),
            sampled: policies.iter().map(|p| decisions(p, "sampled")).collect(),
            dropped: policies.iter().map(|p| decisions(p, "dropped")).collect(),
            not_sampled: decisions("none", "not_sampled"),
            late_sampled: late("sampled"),
            late_not_sampled: late("not_sampled"),
            early_memory: early("memory_pressure"),
            early_trace_bytes: early("max_trace_bytes"),
            early_tenant: early("tenant_share"),
            early_shutdown: early("shutdown"),
        }
    }

    /// Records when a trace was decided and, for early decisions, why.
    pub fn decided(&self, why: Why, latency: Duration) {
        self.latency.record(latency.as_secs_f64());
        match why {
            Why::MemoryPressure => self.early_memory.increment(1),
            Why::TraceBytes => self.early_trace_bytes.increment(1),
            Why::TenantShare => self.early_tenant.increment(1),
            Why::Shutdown => self.early_shutdown.increment(1),
            Why::AfterRoot | Why::Inactive | Why::MaxAge => {}
        }
    }

    pub fn decision(&self, verdict: Verdict, policy: Option<usize>) {
        let pick = |list: &[Counter]| policy.and_then(|i| list.get(i).cloned());
        let counter = match verdict {
            Verdict::Sampled => pick(&self.sampled),
            Verdict::Dropped => pick(&self.dropped),
            Verdict::NotSampled => Some(self.not_sampled.clone()),
        };
        if let Some(counter) = counter {
            counter.increment(1);
        }
    }

    /// Counts spans that arrived after their trace was decided, by that decision.
    pub fn late(&self, cached: Cached, spans: usize) {
        match cached {
            Cached::Sampled(_) => self.late_sampled.increment(spans as u64),
            Cached::NotSampled => self.late_not_sampled.increment(spans as u64),
        }
    }
}
