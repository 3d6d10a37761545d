//! Pure validation of the tail sampler's configuration: every problem, each with its path.

use super::config::{
    CompositeConfig, LatencyConfig, NumericAttributeConfig, POLICY_TYPES, PolicyConfig,
    ProbabilisticConfig, SpanCountConfig, StatusCodeConfig, StringAttributeConfig,
    TailSamplingConfig, TenantPolicyConfig,
};
use crate::component::{ComponentConfig, Problems};

impl ComponentConfig for TailSamplingConfig {
    fn validate(&self, problems: &mut Problems) {
        let positive = [
            ("decision_wait", self.decision_wait),
            ("decision_wait_after_root", self.decision_wait_after_root),
            ("max_trace_age", self.max_trace_age),
        ];
        for (path, value) in positive {
            if value.is_zero() {
                problems.error(path, "must be greater than 0");
            }
        }
        if self.num_shards == 0 || self.num_shards > 1024 {
            problems.error(
                "num_shards",
                format!("must be between 1 and 1024, got {}", self.num_shards),
            );
        }
        if self.memory_limit.bytes() < 1024 * 1024 {
            problems.error(
                "memory_limit",
                format!("must be at least 1MiB, got {}", self.memory_limit),
            );
        }
        if !(self.high_water > 0.0 && self.high_water <= 1.0) {
            problems.error(
                "high_water",
                format!("must be in (0, 1], got {}", self.high_water),
            );
        }
        if self.max_trace_bytes.bytes() == 0 {
            problems.error("max_trace_bytes", "must be greater than 0");
        }
        self.validate_tenants(problems);
        if self.policies.is_empty() {
            problems.error("policies", "must list at least one policy");
        }
        for (i, policy) in self.policies.iter().enumerate() {
            policy.validate(&format!("policies[{i}]"), problems);
        }
        check_unique_names(&self.policies, "policies", problems);
    }
}

impl TailSamplingConfig {
    fn validate_tenants(&self, problems: &mut Problems) {
        let mut shares = 0u64;
        for (tenant, config) in &self.tenants {
            let path = format!("tenants::{tenant}");
            if let Err(message) = crate::component::tenant::validate_tenant_id(tenant) {
                problems.error(&path, message);
            }
            if config.memory_limit.bytes() == 0 || config.memory_limit > self.memory_limit {
                problems.error(
                    format!("{path}::memory_limit"),
                    format!(
                        "must be between 1 and memory_limit ({}), got {}",
                        self.memory_limit, config.memory_limit
                    ),
                );
            }
            shares = shares.saturating_add(config.memory_limit.bytes());
        }
        if shares > self.memory_limit.bytes() {
            problems.warning(
                "tenants",
                "tenant memory limits add up to more than memory_limit; the total still applies",
            );
        }
    }
}

fn check_unique_names(policies: &[PolicyConfig], path: &str, problems: &mut Problems) {
    for (i, policy) in policies.iter().enumerate() {
        if policies[..i].iter().any(|p| p.name == policy.name) {
            problems.error(
                format!("{path}[{i}]::name"),
                format!("policy name {:?} is used twice", policy.name),
            );
        }
    }
}

impl PolicyConfig {
    /// Checks this policy and its sub-policies; `path` names it (`policies[2]`).
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        if self.name.is_empty() {
            problems.error(format!("{path}::name"), "must not be empty");
        }
        if !POLICY_TYPES.contains(&self.kind.as_str()) {
            problems.error(
                format!("{path}::type"),
                format!(
                    "unknown policy type {:?}; known types: {}",
                    self.kind,
                    POLICY_TYPES.join(", ")
                ),
            );
            return;
        }
        self.check_blocks(path, problems);
        let at = format!("{path}::{}", self.kind);
        match self.kind.as_str() {
            "status_code" => check_status_codes(self.status_code.as_ref(), &at, problems),
            "latency" => check_latency(self.latency.as_ref(), &at, problems),
            "string_attribute" => check_string(self.string_attribute.as_ref(), &at, problems),
            "numeric_attribute" => check_numeric(self.numeric_attribute.as_ref(), &at, problems),
            "boolean_attribute" => check_key(
                self.boolean_attribute.as_ref().map(|c| &c.key),
                &at,
                problems,
            ),
            "probabilistic" => check_probabilistic(self.probabilistic.as_ref(), &at, problems),
            "rate_limiting" => check_rate(
                self.rate_limiting.as_ref().map(|c| c.spans_per_second),
                &at,
                "spans_per_second",
                problems,
            ),
            "bytes_limiting" => check_rate(
                self.bytes_limiting.as_ref().map(|c| c.bytes_per_second),
                &at,
                "bytes_per_second",
                problems,
            ),
            "span_count" => check_span_count(self.span_count.as_ref(), &at, problems),
            "trace_state" => check_key(self.trace_state.as_ref().map(|c| &c.key), &at, problems),
            "tenant" => check_tenant(self.tenant.as_ref(), &at, problems),
            "and" => check_subs(
                self.and.as_ref().map(|c| c.and_sub_policy.as_slice()),
                &format!("{at}::and_sub_policy"),
                problems,
            ),
            "drop" => check_subs(
                self.drop.as_ref().map(|c| c.drop_sub_policy.as_slice()),
                &format!("{at}::drop_sub_policy"),
                problems,
            ),
            "composite" => check_composite(self.composite.as_ref(), &at, problems),
            "not" => match self.not.as_ref().and_then(|c| c.not_sub_policy.as_ref()) {
                Some(sub) => sub.validate(&format!("{at}::not_sub_policy"), problems),
                None => problems.error(format!("{at}::not_sub_policy"), "is required"),
            },
            _ => {}
        }
    }

    /// Only the block named by `type` may be present: another one is probably a typo.
    fn check_blocks(&self, path: &str, problems: &mut Problems) {
        for block in self.present_blocks() {
            if block != self.kind {
                problems.error(
                    format!("{path}::{block}"),
                    format!("does not apply to a policy of type {:?}", self.kind),
                );
            }
        }
    }

    fn present_blocks(&self) -> Vec<&'static str> {
        let flags = [
            ("status_code", self.status_code.is_some()),
            ("latency", self.latency.is_some()),
            ("string_attribute", self.string_attribute.is_some()),
            ("numeric_attribute", self.numeric_attribute.is_some()),
            ("boolean_attribute", self.boolean_attribute.is_some()),
            ("probabilistic", self.probabilistic.is_some()),
            ("rate_limiting", self.rate_limiting.is_some()),
            ("bytes_limiting", self.bytes_limiting.is_some()),
            ("span_count", self.span_count.is_some()),
            ("trace_state", self.trace_state.is_some()),
            ("tenant", self.tenant.is_some()),
            ("and", self.and.is_some()),
            ("not", self.not.is_some()),
            ("drop", self.drop.is_some()),
            ("composite", self.composite.is_some()),
        ];
        flags
            .iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect()
    }
}

fn check_status_codes(config: Option<&StatusCodeConfig>, at: &str, problems: &mut Problems) {
    let codes = config
        .map(|c| c.status_codes.as_slice())
        .unwrap_or_default();
    if codes.is_empty() {
        problems.error(
            format!("{at}::status_codes"),
            "must list at least one of OK, ERROR, UNSET",
        );
    }
    for (i, code) in codes.iter().enumerate() {
        if !matches!(code.as_str(), "OK" | "ERROR" | "UNSET") {
            problems.error(
                format!("{at}::status_codes[{i}]"),
                format!("must be OK, ERROR or UNSET, got {code:?}"),
            );
        }
    }
}

fn check_latency(config: Option<&LatencyConfig>, at: &str, problems: &mut Problems) {
    let config = config.cloned().unwrap_or_default();
    if config.threshold_ms < 0 {
        problems.error(
            format!("{at}::threshold_ms"),
            format!("must not be negative, got {}", config.threshold_ms),
        );
    }
    if config.upper_threshold_ms != 0 && config.upper_threshold_ms <= config.threshold_ms {
        problems.error(
            format!("{at}::upper_threshold_ms"),
            format!(
                "must be 0 (no bound) or above threshold_ms ({}), got {}",
                config.threshold_ms, config.upper_threshold_ms
            ),
        );
    }
    if config.threshold_ms == 0 && config.upper_threshold_ms == 0 {
        problems.error(
            format!("{at}::threshold_ms"),
            "set threshold_ms or upper_threshold_ms",
        );
    }
}

fn check_key(key: Option<&String>, at: &str, problems: &mut Problems) {
    if key.is_none_or(|k| k.is_empty()) {
        problems.error(format!("{at}::key"), "must not be empty");
    }
}

fn check_string(config: Option<&StringAttributeConfig>, at: &str, problems: &mut Problems) {
    check_key(config.map(|c| &c.key), at, problems);
    let Some(config) = config else { return };
    if config.values.is_empty() {
        problems.error(format!("{at}::values"), "must list at least one value");
    }
    if config.enabled_regex_matching {
        for (i, value) in config.values.iter().enumerate() {
            if let Err(err) = regex::Regex::new(value) {
                problems.error(
                    format!("{at}::values[{i}]"),
                    format!("invalid regular expression: {err}"),
                );
            }
        }
    }
}

fn check_numeric(config: Option<&NumericAttributeConfig>, at: &str, problems: &mut Problems) {
    check_key(config.map(|c| &c.key), at, problems);
    if let Some(c) = config
        && c.max_value < c.min_value
    {
        problems.error(
            format!("{at}::max_value"),
            format!(
                "must be at least min_value ({}), got {}",
                c.min_value, c.max_value
            ),
        );
    }
}

fn check_probabilistic(config: Option<&ProbabilisticConfig>, at: &str, problems: &mut Problems) {
    let pct = config.map_or(0.0, |c| c.sampling_percentage);
    if !(pct > 0.0 && pct <= 100.0) {
        problems.error(
            format!("{at}::sampling_percentage"),
            format!("must be above 0 and at most 100, got {pct}"),
        );
    }
}

fn check_rate(rate: Option<u64>, at: &str, key: &str, problems: &mut Problems) {
    if rate.unwrap_or(0) == 0 {
        problems.error(format!("{at}::{key}"), "must be greater than 0");
    }
}

fn check_span_count(config: Option<&SpanCountConfig>, at: &str, problems: &mut Problems) {
    let config = config.cloned().unwrap_or_default();
    if config.min_spans == 0 {
        problems.error(format!("{at}::min_spans"), "must be at least 1");
    }
    if config.max_spans != 0 && config.max_spans < config.min_spans {
        problems.error(
            format!("{at}::max_spans"),
            format!(
                "must be 0 (no bound) or at least min_spans ({}), got {}",
                config.min_spans, config.max_spans
            ),
        );
    }
}

fn check_tenant(config: Option<&TenantPolicyConfig>, at: &str, problems: &mut Problems) {
    let tenants = config.map(|c| c.tenants.as_slice()).unwrap_or_default();
    if tenants.is_empty() {
        problems.error(format!("{at}::tenants"), "must list at least one tenant");
    }
    check_subs(
        config.map(|c| c.policies.as_slice()),
        &format!("{at}::policies"),
        problems,
    );
}

fn check_subs(subs: Option<&[PolicyConfig]>, at: &str, problems: &mut Problems) {
    let subs = subs.unwrap_or_default();
    if subs.is_empty() {
        problems.error(at, "must list at least one sub-policy");
    }
    for (i, sub) in subs.iter().enumerate() {
        sub.validate(&format!("{at}[{i}]"), problems);
    }
}

fn check_composite(config: Option<&CompositeConfig>, at: &str, problems: &mut Problems) {
    let config = config.cloned().unwrap_or_default();
    if config.max_total_spans_per_second == 0 {
        problems.error(
            format!("{at}::max_total_spans_per_second"),
            "must be greater than 0",
        );
    }
    let subs = &config.composite_sub_policy;
    check_subs(Some(subs), &format!("{at}::composite_sub_policy"), problems);
    let known = |name: &str| subs.iter().any(|p| p.name == name);
    for (i, name) in config.policy_order.iter().enumerate() {
        if !known(name) {
            problems.error(
                format!("{at}::policy_order[{i}]"),
                format!("names no sub-policy: {name:?}"),
            );
        }
    }
    let mut total = 0.0;
    for (i, share) in config.rate_allocation.iter().enumerate() {
        if !known(&share.policy) {
            problems.error(
                format!("{at}::rate_allocation[{i}]::policy"),
                format!("names no sub-policy: {:?}", share.policy),
            );
        }
        if !(share.percent > 0.0 && share.percent <= 100.0) {
            problems.error(
                format!("{at}::rate_allocation[{i}]::percent"),
                format!("must be above 0 and at most 100, got {}", share.percent),
            );
        }
        total += share.percent;
    }
    if total > 100.0 {
        problems.error(
            format!("{at}::rate_allocation"),
            format!("percents add up to {total}, more than 100"),
        );
    }
}
