//! Compiles policy configurations into rules, dividing rates among the shards.

use std::collections::HashSet;

use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use regex::Regex;

use super::bucket::Bucket;
use super::config::{CompositeConfig, PolicyConfig, ProbabilisticConfig, StringAttributeConfig};
use super::policy::{Draw, Rule};
use super::tracestate::threshold_for;

/// Compiles one validated policy; rates are divided among `shards`.
pub(super) fn compile(config: &PolicyConfig, shards: f64) -> Result<Rule, String> {
    let missing = || {
        format!(
            "policy {:?}: the {} block is missing",
            config.name, config.kind
        )
    };
    let rule = match config.kind.as_str() {
        "always_sample" => Rule::Always,
        "status_code" => {
            let c = config.status_code.as_ref().ok_or_else(missing)?;
            Rule::Status(c.status_codes.iter().map(|s| status_number(s)).collect())
        }
        "latency" => {
            let c = config.latency.as_ref().ok_or_else(missing)?;
            let ms = |v: i64| u64::try_from(v).unwrap_or(0).saturating_mul(1_000_000);
            let max_ns = if c.upper_threshold_ms == 0 {
                u64::MAX
            } else {
                ms(c.upper_threshold_ms)
            };
            Rule::Latency {
                min_ns: ms(c.threshold_ms),
                max_ns,
            }
        }
        "string_attribute" => {
            compile_string(config.string_attribute.as_ref().ok_or_else(missing)?)?
        }
        "numeric_attribute" => {
            let c = config.numeric_attribute.as_ref().ok_or_else(missing)?;
            Rule::Numeric {
                key: c.key.clone(),
                min: c.min_value,
                max: c.max_value,
            }
        }
        "boolean_attribute" => {
            let c = config.boolean_attribute.as_ref().ok_or_else(missing)?;
            Rule::Bool {
                key: c.key.clone(),
                value: c.value,
            }
        }
        "probabilistic" => {
            compile_probabilistic(config.probabilistic.as_ref().ok_or_else(missing)?)
        }
        "rate_limiting" => {
            let c = config.rate_limiting.as_ref().ok_or_else(missing)?;
            Rule::Spans(Bucket::new(
                c.spans_per_second as f64 / shards,
                c.burst_capacity as f64 / shards,
            ))
        }
        "bytes_limiting" => {
            let c = config.bytes_limiting.as_ref().ok_or_else(missing)?;
            Rule::Bytes(Bucket::new(
                c.bytes_per_second as f64 / shards,
                c.burst_capacity as f64 / shards,
            ))
        }
        "span_count" => {
            let c = config.span_count.as_ref().ok_or_else(missing)?;
            Rule::SpanCount {
                min: c.min_spans,
                max: if c.max_spans == 0 {
                    u64::MAX
                } else {
                    c.max_spans
                },
            }
        }
        "trace_state" => {
            let c = config.trace_state.as_ref().ok_or_else(missing)?;
            Rule::TraceState {
                key: c.key.clone(),
                values: c.values.clone(),
            }
        }
        "tenant" => {
            let c = config.tenant.as_ref().ok_or_else(missing)?;
            Rule::Tenant {
                tenants: c.tenants.iter().cloned().collect(),
                subs: compile_all(&c.policies, shards)?,
            }
        }
        "and" => Rule::And(compile_all(
            &config.and.as_ref().ok_or_else(missing)?.and_sub_policy,
            shards,
        )?),
        "drop" => Rule::Drop(compile_all(
            &config.drop.as_ref().ok_or_else(missing)?.drop_sub_policy,
            shards,
        )?),
        "not" => {
            let sub = config
                .not
                .as_ref()
                .and_then(|c| c.not_sub_policy.as_ref())
                .ok_or_else(missing)?;
            Rule::Not(Box::new(compile(sub, shards)?))
        }
        "composite" => compile_composite(config.composite.as_ref().ok_or_else(missing)?, shards)?,
        other => return Err(format!("policy {:?}: unknown type {other:?}", config.name)),
    };
    Ok(rule)
}

fn compile_composite(c: &CompositeConfig, shards: f64) -> Result<Rule, String> {
    let mut order: Vec<&PolicyConfig> = Vec::new();
    for name in &c.policy_order {
        order.extend(c.composite_sub_policy.iter().find(|p| &p.name == name));
    }
    for sub in &c.composite_sub_policy {
        if !order.iter().any(|p| p.name == sub.name) {
            order.push(sub);
        }
    }
    let total = c.max_total_spans_per_second as f64 / shards;
    let mut subs = Vec::with_capacity(order.len());
    for sub in order {
        let percent = c
            .rate_allocation
            .iter()
            .find(|a| a.policy == sub.name)
            .map_or(0.0, |a| a.percent);
        let rate = total * percent / 100.0;
        subs.push((compile(sub, shards)?, Bucket::new(rate, rate)));
    }
    Ok(Rule::Composite(subs))
}

/// Without a salt, the draw is OpenTelemetry's consistent one on the trace id's randomness;
/// with one, the salted hash it always was, so salted deployments keep their decisions.
fn compile_probabilistic(c: &ProbabilisticConfig) -> Rule {
    let share = (c.sampling_percentage / 100.0).clamp(0.0, 1.0);
    let draw = if c.hash_salt.is_empty() {
        Draw::Consistent {
            threshold: threshold_for(share),
        }
    } else {
        Draw::Salted {
            salt: c.hash_salt.as_bytes().to_vec(),
            bound: (share * u64::MAX as f64) as u64,
        }
    };
    Rule::Probabilistic {
        draw,
        adjusted: if share > 0.0 { 1.0 / share } else { 0.0 },
    }
}

fn compile_all(configs: &[PolicyConfig], shards: f64) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::with_capacity(configs.len());
    for config in configs {
        rules.push(compile(config, shards)?);
    }
    Ok(rules)
}

fn compile_string(c: &StringAttributeConfig) -> Result<Rule, String> {
    let mut regexes = Vec::new();
    let mut values = HashSet::new();
    for value in &c.values {
        if c.enabled_regex_matching {
            let anchored = format!("^(?:{value})$");
            regexes.push(
                Regex::new(&anchored)
                    .map_err(|e| format!("invalid regular expression {value:?}: {e}"))?,
            );
        } else {
            values.insert(value.clone());
        }
    }
    Ok(Rule::Str {
        key: c.key.clone(),
        values,
        regexes,
        invert: c.invert_match,
    })
}

fn status_number(name: &str) -> i32 {
    match name {
        "OK" => StatusCode::Ok as i32,
        "ERROR" => StatusCode::Error as i32,
        _ => StatusCode::Unset as i32,
    }
}
