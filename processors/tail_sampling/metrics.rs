//! The tail sampler's own metric handles, resolved once so shard tasks only increment, and
//! the counts a shard gathers locally between flushes.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use super::cache::Cached;
use super::policy::Verdict;
use super::shard::Why;
use crate::component::names::{
    TAIL_SAMPLING_BYTES_IN_MEMORY, TAIL_SAMPLING_DECISION_CACHE_LOOKUPS,
    TAIL_SAMPLING_DECISION_LATENCY, TAIL_SAMPLING_DECISIONS, TAIL_SAMPLING_EARLY_DECISIONS,
    TAIL_SAMPLING_LATE_SPANS, TAIL_SAMPLING_POLICY_EVALUATION, TAIL_SAMPLING_TRACES_IN_MEMORY,
};

/// Evaluation times held before a flush, so a burst of decisions cannot grow the list.
const MAX_PENDING_EVALUATIONS: usize = 1024;

/// Indexes of the decision cache lookup counters: (cache, result).
const SAMPLED_HIT: usize = 0;
const SAMPLED_MISS: usize = 1;
const NOT_SAMPLED_HIT: usize = 2;
const NOT_SAMPLED_MISS: usize = 3;
const LOOKUP_LABELS: [(&str, &str); 4] = [
    ("sampled", "hit"),
    ("sampled", "miss"),
    ("not_sampled", "hit"),
    ("not_sampled", "miss"),
];

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
    lookups: [Counter; 4],
    evaluation: Histogram,
    /// Counts and times gathered since the last `flush`, by the shard task alone.
    pending_lookups: [u64; 4],
    pending_evaluations: Vec<f64>,
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
        let lookup = |(cache, result): (&str, &str)| {
            let mut labels = with("cache", cache.to_string());
            labels.push(("result", result.to_string()));
            counter!(TAIL_SAMPLING_DECISION_CACHE_LOOKUPS, &labels)
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
            lookups: LOOKUP_LABELS.map(lookup),
            evaluation: histogram!(TAIL_SAMPLING_POLICY_EVALUATION, &base),
            pending_lookups: [0; 4],
            pending_evaluations: Vec::new(),
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

    /// Counts one lookup in the decision caches, which are searched sampled first.
    pub fn cache_lookup(&mut self, found: Option<Cached>) {
        let counts = &mut self.pending_lookups;
        match found {
            Some(Cached::Sampled(_)) => counts[SAMPLED_HIT] += 1,
            Some(Cached::NotSampled) => {
                counts[SAMPLED_MISS] += 1;
                counts[NOT_SAMPLED_HIT] += 1;
            }
            None => {
                counts[SAMPLED_MISS] += 1;
                counts[NOT_SAMPLED_MISS] += 1;
            }
        }
    }

    /// Notes how long the policy set took for one decision.
    pub fn evaluated(&mut self, took: Duration) {
        self.pending_evaluations.push(took.as_secs_f64());
        if self.pending_evaluations.len() >= MAX_PENDING_EVALUATIONS {
            self.flush();
        }
    }

    /// Hands the locally gathered counts and times to the recorder.
    pub fn flush(&mut self) {
        for (counter, count) in self.lookups.iter().zip(&mut self.pending_lookups) {
            if *count > 0 {
                counter.increment(std::mem::take(count));
            }
        }
        for seconds in self.pending_evaluations.drain(..) {
            self.evaluation.record(seconds);
        }
    }
}
