//! The tail sampler's configuration, in the Collector's `tail_sampling` key names.

use std::collections::BTreeMap;

use crate::component::{ByteSize, HumanDuration};

/// Policy types this sampler knows, for the error on an unknown one.
pub const POLICY_TYPES: &[&str] = &[
    "always_sample",
    "status_code",
    "latency",
    "string_attribute",
    "numeric_attribute",
    "boolean_attribute",
    "probabilistic",
    "rate_limiting",
    "bytes_limiting",
    "span_count",
    "trace_state",
    "tenant",
    "and",
    "not",
    "drop",
    "composite",
];

/// Whole-trace sampling: what to buffer, when to decide and which policies decide.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TailSamplingConfig {
    /// Duration: a trace is decided after this long without a new span.
    pub decision_wait: HumanDuration,
    /// Duration: a trace is decided this long after its root span (no parent) arrived.
    pub decision_wait_after_root: HumanDuration,
    /// Duration: a trace is decided at the latest this long after its first span.
    pub max_trace_age: HumanDuration,
    /// Count: independent shards (one task each) that traces are spread over by trace id.
    pub num_shards: usize,
    /// Bytes: the most all buffered spans (and decided spans not yet passed on) may take.
    pub memory_limit: ByteSize,
    /// Fraction of `memory_limit` above which the oldest traces are decided early.
    pub high_water: f64,
    /// Bytes: a trace this large is decided at once; its later spans follow the decision.
    /// Capped at a shard's share of `memory_limit`.
    pub max_trace_bytes: ByteSize,
    /// Sizes of the caches of past decisions that late spans follow.
    pub decision_cache: DecisionCacheConfig,
    /// When true, traces still buffered at shutdown are dropped (counted) instead of decided.
    pub drop_pending_traces_on_shutdown: bool,
    /// Per-tenant memory shares, by tenant id.
    pub tenants: BTreeMap<String, TenantConfig>,
    /// The policies, evaluated in order; any `drop` wins, else any sample wins.
    pub policies: Vec<PolicyConfig>,
}

impl Default for TailSamplingConfig {
    fn default() -> Self {
        Self {
            decision_wait: HumanDuration::from_secs(10),
            decision_wait_after_root: HumanDuration::from_secs(2),
            max_trace_age: HumanDuration::from_secs(60),
            num_shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_limit: ByteSize::mib(256),
            high_water: 0.9,
            max_trace_bytes: ByteSize::mib(16),
            decision_cache: DecisionCacheConfig::default(),
            drop_pending_traces_on_shutdown: false,
            tenants: BTreeMap::new(),
            policies: Vec::new(),
        }
    }
}

/// Entries kept in each decision cache.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionCacheConfig {
    /// Count: trace ids remembered as sampled.
    pub sampled_entries: usize,
    /// Count: trace ids remembered as not sampled (or dropped).
    pub not_sampled_entries: usize,
}

impl Default for DecisionCacheConfig {
    fn default() -> Self {
        Self {
            sampled_entries: 100_000,
            not_sampled_entries: 100_000,
        }
    }
}

/// One tenant's share of the sampler's memory.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantConfig {
    /// Bytes: the most this tenant's buffered spans may take.
    pub memory_limit: ByteSize,
}

/// One policy: a name, a type, and the block named after the type.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status_code: Option<StatusCodeConfig>,
    pub latency: Option<LatencyConfig>,
    pub string_attribute: Option<StringAttributeConfig>,
    pub numeric_attribute: Option<NumericAttributeConfig>,
    pub boolean_attribute: Option<BooleanAttributeConfig>,
    pub probabilistic: Option<ProbabilisticConfig>,
    pub rate_limiting: Option<RateLimitingConfig>,
    pub bytes_limiting: Option<BytesLimitingConfig>,
    pub span_count: Option<SpanCountConfig>,
    pub trace_state: Option<TraceStateConfig>,
    pub tenant: Option<TenantPolicyConfig>,
    pub and: Option<AndConfig>,
    pub not: Option<NotConfig>,
    pub drop: Option<DropConfig>,
    pub composite: Option<CompositeConfig>,
}

/// Samples traces with a span whose status is one of these (`OK`, `ERROR`, `UNSET`).
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusCodeConfig {
    pub status_codes: Vec<String>,
}

/// Samples traces whose duration (last end − first start) is in range.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencyConfig {
    /// Milliseconds: the shortest duration sampled.
    pub threshold_ms: i64,
    /// Milliseconds: the longest duration sampled; 0 means no upper bound.
    pub upper_threshold_ms: i64,
}

/// Samples traces where a span or resource attribute has one of the values.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StringAttributeConfig {
    pub key: String,
    pub values: Vec<String>,
    /// Treat `values` as regular expressions (anchored to the whole value).
    pub enabled_regex_matching: bool,
    /// Sample traces where no span matches instead.
    pub invert_match: bool,
}

/// Samples traces where a numeric attribute lies in `[min_value, max_value]`.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NumericAttributeConfig {
    pub key: String,
    pub min_value: f64,
    pub max_value: f64,
}

/// Samples traces where a boolean attribute has `value`.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BooleanAttributeConfig {
    pub key: String,
    pub value: bool,
}

/// Samples a fixed share of traces, the same ones on every instance.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbabilisticConfig {
    /// Percent (0–100) of traces sampled.
    pub sampling_percentage: f64,
    /// Empty (the default): decide on the trace id's randomness (its low 56 bits) as
    /// OpenTelemetry's consistent probability sampling does, and record `ot=th:` on kept
    /// spans. Otherwise mixed into a trace-id hash; instances that must agree use the same salt.
    pub hash_salt: String,
}

/// Samples traces while a token bucket of spans per second has room.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitingConfig {
    /// Spans per second.
    pub spans_per_second: u64,
    /// Spans: the bucket size; 0 means one second's worth.
    pub burst_capacity: u64,
}

/// Samples traces while a token bucket of bytes per second has room.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BytesLimitingConfig {
    /// Bytes per second (of encoded spans).
    pub bytes_per_second: u64,
    /// Bytes: the bucket size; 0 means one second's worth.
    pub burst_capacity: u64,
}

/// Samples traces with a span count in `[min_spans, max_spans]`.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpanCountConfig {
    pub min_spans: u64,
    /// 0 means no upper bound.
    pub max_spans: u64,
}

/// Samples traces where a span's W3C tracestate has `key` set to one of `values`.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceStateConfig {
    pub key: String,
    pub values: Vec<String>,
}

/// Sub-policies that apply only to traces of the listed tenants.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantPolicyConfig {
    pub tenants: Vec<String>,
    pub policies: Vec<PolicyConfig>,
}

/// Samples when every sub-policy samples.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AndConfig {
    pub and_sub_policy: Vec<PolicyConfig>,
}

/// Samples when the sub-policy does not.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotConfig {
    pub not_sub_policy: Option<Box<PolicyConfig>>,
}

/// Drops the trace (overriding every sample) when every sub-policy samples.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DropConfig {
    pub drop_sub_policy: Vec<PolicyConfig>,
}

/// Sub-policies tried in order, each limited to its share of a total span rate.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompositeConfig {
    /// Spans per second all sub-policies together may sample.
    pub max_total_spans_per_second: u64,
    /// Sub-policy names in the order they are tried; empty means as listed.
    pub policy_order: Vec<String>,
    pub composite_sub_policy: Vec<PolicyConfig>,
    /// Each sub-policy's percent of `max_total_spans_per_second`; unlisted ones get none.
    pub rate_allocation: Vec<RateAllocationConfig>,
}

/// One sub-policy's share of a composite's rate.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateAllocationConfig {
    pub policy: String,
    /// Percent (0–100) of `max_total_spans_per_second`.
    pub percent: f64,
}
