//! The `tenant_quota` processor's configuration: defaults and per-tenant overrides, in Tempo's names.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::component::tenant::validate_tenant_id;
use crate::component::{ByteSize, ComponentConfig, HumanDuration, Problems};

/// What happens to spans of a tenant over its rate limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Refuse back to the sender (RESOURCE_EXHAUSTED / 429 with a retry delay), which retries.
    #[default]
    Refuse,
    /// Drop the spans, counted with reason `quota`.
    Drop,
}

/// The whole `tenant_quota:` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantQuotaConfig {
    /// What happens to spans over a rate limit: `refuse` or `drop`.
    pub action: Action,
    /// The limits of every tenant not listed under `tenants`.
    pub defaults: Limits,
    /// Per-tenant overrides: tenant id -> the limits that differ from `defaults`.
    pub tenants: BTreeMap<String, LimitOverrides>,
    /// Duration: how long a trace's span and byte counts are kept after its last span
    /// (between one and two windows).
    pub trace_window: HumanDuration,
    /// Traces: how many traces are tracked for the per-trace limits (at most twice this
    /// many entries exist while a window turns over).
    pub max_traces: usize,
    /// Tenants: how many tenants' token buckets are kept; beyond it the idlest is forgotten.
    pub max_tenants: usize,
}

impl Default for TenantQuotaConfig {
    fn default() -> Self {
        Self {
            action: Action::Refuse,
            defaults: Limits::default(),
            tenants: BTreeMap::new(),
            trace_window: HumanDuration::from_secs(30),
            max_traces: 100_000,
            max_tenants: 10_000,
        }
    }
}

/// One tenant's limits; 0 means no limit everywhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Spans per second, refilling the span bucket.
    pub rate_limit_spans: u64,
    /// Spans: the span bucket's size; 0 means one second of `rate_limit_spans`.
    pub burst_size_spans: u64,
    /// Bytes per second (encoded OTLP size), refilling the byte bucket.
    pub rate_limit_bytes: ByteSize,
    /// Bytes: the byte bucket's size; 0 means one second of `rate_limit_bytes`.
    pub burst_size_bytes: ByteSize,
    /// Spans: the most one trace may have within `trace_window`; more are dropped.
    pub max_spans_per_trace: u64,
    /// Bytes: the most one trace may have within `trace_window`; more are dropped.
    pub max_bytes_per_trace: ByteSize,
    /// Attributes: the most one span keeps; the rest are removed and counted.
    pub max_attributes_per_span: usize,
    /// Bytes: the longest string attribute value kept; longer ones are truncated and counted.
    pub max_attribute_value_bytes: ByteSize,
    /// Events: the most one span keeps; the rest are removed and counted.
    pub max_events_per_span: usize,
}

/// A tenant's overrides: each key present replaces the default; units as in [`Limits`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitOverrides {
    /// Spans per second.
    pub rate_limit_spans: Option<u64>,
    /// Spans.
    pub burst_size_spans: Option<u64>,
    /// Bytes per second.
    pub rate_limit_bytes: Option<ByteSize>,
    /// Bytes.
    pub burst_size_bytes: Option<ByteSize>,
    /// Spans per trace.
    pub max_spans_per_trace: Option<u64>,
    /// Bytes per trace.
    pub max_bytes_per_trace: Option<ByteSize>,
    /// Attributes per span.
    pub max_attributes_per_span: Option<usize>,
    /// Bytes per attribute value.
    pub max_attribute_value_bytes: Option<ByteSize>,
    /// Events per span.
    pub max_events_per_span: Option<usize>,
}

impl LimitOverrides {
    /// The defaults with these overrides applied.
    pub fn apply(&self, defaults: &Limits) -> Limits {
        Limits {
            rate_limit_spans: self.rate_limit_spans.unwrap_or(defaults.rate_limit_spans),
            burst_size_spans: self.burst_size_spans.unwrap_or(defaults.burst_size_spans),
            rate_limit_bytes: self.rate_limit_bytes.unwrap_or(defaults.rate_limit_bytes),
            burst_size_bytes: self.burst_size_bytes.unwrap_or(defaults.burst_size_bytes),
            max_spans_per_trace: self
                .max_spans_per_trace
                .unwrap_or(defaults.max_spans_per_trace),
            max_bytes_per_trace: self
                .max_bytes_per_trace
                .unwrap_or(defaults.max_bytes_per_trace),
            max_attributes_per_span: self
                .max_attributes_per_span
                .unwrap_or(defaults.max_attributes_per_span),
            max_attribute_value_bytes: self
                .max_attribute_value_bytes
                .unwrap_or(defaults.max_attribute_value_bytes),
            max_events_per_span: self
                .max_events_per_span
                .unwrap_or(defaults.max_events_per_span),
        }
    }
}

impl Limits {
    /// Whether any per-trace limit is set.
    pub fn limits_traces(&self) -> bool {
        self.max_spans_per_trace > 0 || self.max_bytes_per_trace.bytes() > 0
    }

    /// Whether any per-span limit is set.
    pub fn limits_spans(&self) -> bool {
        self.max_attributes_per_span > 0
            || self.max_attribute_value_bytes.bytes() > 0
            || self.max_events_per_span > 0
    }

    fn validate(&self, path: &str, problems: &mut Problems) {
        if self.burst_size_spans > 0 && self.rate_limit_spans == 0 {
            problems.warning(
                format!("{path}::burst_size_spans"),
                "has no effect without rate_limit_spans",
            );
        }
        if self.burst_size_bytes.bytes() > 0 && self.rate_limit_bytes.bytes() == 0 {
            problems.warning(
                format!("{path}::burst_size_bytes"),
                "has no effect without rate_limit_bytes",
            );
        }
    }
}

impl ComponentConfig for TenantQuotaConfig {
    fn validate(&self, problems: &mut Problems) {
        self.defaults.validate("defaults", problems);
        let mut traces_limited = self.defaults.limits_traces();
        for (name, overrides) in &self.tenants {
            let path = format!("tenants::{name}");
            if let Err(message) = validate_tenant_id(name) {
                problems.error(path.clone(), message);
            }
            let limits = overrides.apply(&self.defaults);
            limits.validate(&path, problems);
            traces_limited |= limits.limits_traces();
        }
        if traces_limited && self.trace_window.is_zero() {
            problems.error(
                "trace_window",
                "must be greater than 0 when a per-trace limit is set, got 0",
            );
        }
        if self.max_traces == 0 {
            problems.error("max_traces", "must be greater than 0, got 0");
        }
        if self.max_tenants == 0 {
            problems.error("max_tenants", "must be greater than 0, got 0");
        }
    }
}
