//! Compiled sampling policies and the rule that combines them: any drop wins, else any sample.

use std::collections::HashSet;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use regex::Regex;
use tokio::time::Instant;

use super::bucket::Bucket;
use super::compile::compile;
use super::config::PolicyConfig;
use super::trace::{Trace, trace_hash};
use super::tracestate::trace_id_randomness;

/// What one policy, or the whole set, says about a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Sampled,
    NotSampled,
    Dropped,
}

/// The decision for a trace and which top-level policy made it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// Index of the first policy that sampled (or dropped) the trace.
    pub policy: Option<usize>,
    /// For a probabilistic decision: how many traces this one stands for.
    pub adjusted_count: Option<f64>,
    /// For a consistent probabilistic decision: its rejection threshold, for `ot=th:`.
    pub threshold: Option<u64>,
}

/// How a probabilistic policy draws a trace.
#[derive(Debug, Clone)]
pub(super) enum Draw {
    /// OpenTelemetry consistent probability sampling: kept when the trace id's randomness
    /// (its low 56 bits) is at least the rejection threshold. Any instance, SDK or collector
    /// sampling this way with a lower probability keeps a subset of these traces.
    Consistent { threshold: u64 },
    /// Kept when a salted hash of the trace id falls below `bound`. Consistent across
    /// instances with the same salt, but the hash is not the specification's randomness
    /// value, so these decisions carry no threshold.
    Salted { salt: Vec<u8>, bound: u64 },
}

impl Draw {
    fn keeps(&self, trace_id: u128) -> bool {
        match self {
            Draw::Consistent { threshold } => trace_id_randomness(trace_id) >= *threshold,
            Draw::Salted { salt, bound } => trace_hash(trace_id, salt) < *bound,
        }
    }
}

/// One compiled policy.
#[derive(Debug, Clone)]
pub(super) enum Rule {
    Always,
    Status(Vec<i32>),
    Latency {
        min_ns: u64,
        max_ns: u64,
    },
    Str {
        key: String,
        values: HashSet<String>,
        regexes: Vec<Regex>,
        invert: bool,
    },
    Numeric {
        key: String,
        min: f64,
        max: f64,
    },
    Bool {
        key: String,
        value: bool,
    },
    Probabilistic {
        draw: Draw,
        adjusted: f64,
    },
    Spans(Bucket),
    Bytes(Bucket),
    SpanCount {
        min: u64,
        max: u64,
    },
    TraceState {
        key: String,
        values: Vec<String>,
    },
    Tenant {
        tenants: HashSet<String>,
        subs: Vec<Rule>,
    },
    And(Vec<Rule>),
    Not(Box<Rule>),
    Drop(Vec<Rule>),
    /// Sub-policies in order, each with its own span-rate bucket.
    Composite(Vec<(Rule, Bucket)>),
}

/// A shard's own copy of the policies (rate buckets are per shard, so no lock is shared).
#[derive(Debug, Clone)]
pub struct PolicySet {
    names: Vec<String>,
    rules: Vec<Rule>,
}

impl PolicySet {
    /// Compiles validated policies; rates are divided among `shards`.
    pub fn build(configs: &[PolicyConfig], shards: usize) -> Result<Self, String> {
        let mut names = Vec::new();
        let mut rules = Vec::new();
        for config in configs {
            names.push(config.name.clone());
            rules.push(compile(config, shards.max(1) as f64)?);
        }
        Ok(Self { names, rules })
    }

    /// True when some policy reads span attributes or tracestate, so traces must be decoded
    /// before they are decided; otherwise the trace summary is enough.
    pub fn needs_spans(&self) -> bool {
        self.rules.iter().any(Rule::needs_spans)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Evaluates every policy (rate buckets see every trace) and combines the verdicts.
    pub fn decide(&mut self, trace: &Trace, now: Instant) -> Outcome {
        let mut outcome = Outcome {
            verdict: Verdict::NotSampled,
            policy: None,
            adjusted_count: None,
            threshold: None,
        };
        for (i, rule) in self.rules.iter_mut().enumerate() {
            let verdict = rule.eval(trace, now);
            match (verdict, outcome.verdict) {
                (Verdict::Dropped, Verdict::Dropped) => {}
                (Verdict::Dropped, _) => {
                    outcome = Outcome {
                        verdict: Verdict::Dropped,
                        policy: Some(i),
                        adjusted_count: None,
                        threshold: None,
                    };
                }
                (Verdict::Sampled, Verdict::NotSampled) => {
                    outcome.verdict = Verdict::Sampled;
                    outcome.policy = Some(i);
                    (outcome.adjusted_count, outcome.threshold) = rule.probability();
                }
                _ => {}
            }
        }
        outcome
    }

    /// The adjusted count and threshold that spans of a trace sampled by policy `policy`
    /// carry (late spans included): both `None` unless that policy is probabilistic.
    pub fn probability(&self, policy: usize) -> (Option<f64>, Option<u64>) {
        self.rules
            .get(policy)
            .map_or((None, None), Rule::probability)
    }
}

fn sampled(yes: bool) -> Verdict {
    if yes {
        Verdict::Sampled
    } else {
        Verdict::NotSampled
    }
}

impl Rule {
    /// For a probabilistic rule: the adjusted count of what it keeps and, when its draw is
    /// consistent, the rejection threshold.
    fn probability(&self) -> (Option<f64>, Option<u64>) {
        match self {
            Rule::Probabilistic { draw, adjusted } => {
                let threshold = match draw {
                    Draw::Consistent { threshold } => Some(*threshold),
                    Draw::Salted { .. } => None,
                };
                (Some(*adjusted), threshold)
            }
            _ => (None, None),
        }
    }

    fn needs_spans(&self) -> bool {
        match self {
            Rule::Str { .. }
            | Rule::Numeric { .. }
            | Rule::Bool { .. }
            | Rule::TraceState { .. } => true,
            Rule::Tenant { subs, .. } | Rule::And(subs) | Rule::Drop(subs) => {
                subs.iter().any(Rule::needs_spans)
            }
            Rule::Not(sub) => sub.needs_spans(),
            Rule::Composite(subs) => subs.iter().any(|(rule, _)| rule.needs_spans()),
            _ => false,
        }
    }

    fn eval(&mut self, trace: &Trace, now: Instant) -> Verdict {
        match self {
            Rule::Always => Verdict::Sampled,
            Rule::Status(codes) => sampled(codes.iter().any(|c| trace.has_status(*c))),
            Rule::Latency { min_ns, max_ns } => {
                let d = trace.duration_nanos();
                sampled(d >= *min_ns && d <= *max_ns)
            }
            Rule::Str {
                key,
                values,
                regexes,
                invert,
            } => {
                let hit = any_attribute(trace, key, |v| match v {
                    Value::StringValue(s) => {
                        values.contains(s) || regexes.iter().any(|r| r.is_match(s))
                    }
                    _ => false,
                });
                sampled(hit != *invert)
            }
            Rule::Numeric { key, min, max } => sampled(any_attribute(trace, key, |v| {
                let n = match v {
                    Value::IntValue(i) => *i as f64,
                    Value::DoubleValue(d) => *d,
                    _ => return false,
                };
                n >= *min && n <= *max
            })),
            Rule::Bool { key, value } => sampled(any_attribute(
                trace,
                key,
                |v| matches!(v, Value::BoolValue(b) if b == value),
            )),
            Rule::Probabilistic { draw, .. } => sampled(draw.keeps(trace.trace_id)),
            Rule::Spans(bucket) => sampled(bucket.take(trace.spans as f64, now)),
            Rule::Bytes(bucket) => sampled(bucket.take(trace.bytes as f64, now)),
            Rule::SpanCount { min, max } => {
                sampled((trace.spans as u64) >= *min && (trace.spans as u64) <= *max)
            }
            Rule::TraceState { key, values } => sampled(
                trace
                    .spans()
                    .any(|(_, s)| trace_state_matches(&s.trace_state, key, values)),
            ),
            Rule::Tenant { tenants, subs } => {
                if trace.tenant().is_some_and(|t| tenants.contains(t)) {
                    combine(subs, trace, now)
                } else {
                    Verdict::NotSampled
                }
            }
            Rule::And(subs) => {
                let mut all = true;
                for sub in subs.iter_mut() {
                    all &= sub.eval(trace, now) == Verdict::Sampled;
                }
                sampled(all)
            }
            Rule::Not(sub) => sampled(sub.eval(trace, now) == Verdict::NotSampled),
            Rule::Composite(subs) => {
                for (rule, bucket) in subs.iter_mut() {
                    if rule.eval(trace, now) == Verdict::Sampled
                        && bucket.take(trace.spans as f64, now)
                    {
                        return Verdict::Sampled;
                    }
                }
                Verdict::NotSampled
            }
            Rule::Drop(subs) => {
                let mut all = true;
                for sub in subs.iter_mut() {
                    all &= sub.eval(trace, now) == Verdict::Sampled;
                }
                if all {
                    Verdict::Dropped
                } else {
                    Verdict::NotSampled
                }
            }
        }
    }
}

/// The set rule applied to sub-policies: any drop wins, else any sample.
fn combine(rules: &mut [Rule], trace: &Trace, now: Instant) -> Verdict {
    let mut result = Verdict::NotSampled;
    for rule in rules.iter_mut() {
        match rule.eval(trace, now) {
            Verdict::Dropped => result = Verdict::Dropped,
            Verdict::Sampled if result == Verdict::NotSampled => result = Verdict::Sampled,
            _ => {}
        }
    }
    result
}

/// True when any span or resource attribute named `key` satisfies `test`.
fn any_attribute(trace: &Trace, key: &str, mut test: impl FnMut(&Value) -> bool) -> bool {
    let mut check = |attrs: &[KeyValue]| {
        attrs.iter().any(|kv| {
            kv.key == key
                && kv
                    .value
                    .as_ref()
                    .and_then(|v| v.value.as_ref())
                    .is_some_and(&mut test)
        })
    };
    for rs in trace.groups() {
        if rs.resource.as_ref().is_some_and(|r| check(&r.attributes)) {
            return true;
        }
        for ss in &rs.scope_spans {
            if ss.spans.iter().any(|s| check(&s.attributes)) {
                return true;
            }
        }
    }
    false
}

/// True when the W3C tracestate list (`k1=v1,k2=v2`) sets `key` to one of `values`.
fn trace_state_matches(state: &str, key: &str, values: &[String]) -> bool {
    state
        .split(',')
        .any(|entry| match entry.trim().split_once('=') {
            Some((k, v)) => k == key && values.iter().any(|want| want == v),
            None => false,
        })
}
