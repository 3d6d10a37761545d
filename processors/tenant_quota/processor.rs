//! The `tenant_quota` processor: holds each tenant to its rates and per-trace and per-span limits.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use async_trait::async_trait;
use prost::Message;
use tokio::time::Instant;

use super::config::{Action, Limits, TenantQuotaConfig};
use super::state::{OverQuota, TenantLabels, Tenants, TraceTracker};
use super::truncate::{Truncations, limit_span};
use crate::component::tenant::{DEFAULT_TENANT, tenant_of};
use crate::component::{
    Dropped, Emitter, ProcessError, Processor, Refusal, RefusalReason, ResourceSpans, Span,
    TraceBatch, names,
};
use crate::telemetry::cardinality;

/// How many tenants get their own metric label; the rest share `other`.
pub const TENANT_LABEL_LIMIT: usize = 100;

/// Spans of over-quota tenants dropped from a request that also carries other tenants'.
pub const REASON_QUOTA: &str = "quota";
/// Spans beyond `max_spans_per_trace` or `max_bytes_per_trace`.
pub const REASON_TRACE_TOO_LARGE: &str = "trace_too_large";
/// The tenant metric's reason for spans over a rate limit (refused or dropped).
const REASON_RATE_LIMITED: &str = "rate_limited";

/// One tenant's share of a batch.
#[derive(Debug)]
struct Share {
    tenant: String,
    spans: u64,
    bytes: u64,
}

/// The `tenant_quota` processor (one instance per pipeline).
pub struct TenantQuota {
    action: Action,
    defaults: Limits,
    overrides: HashMap<String, Limits>,
    tenants: Tenants,
    traces: TraceTracker,
    labels: TenantLabels,
    trace_limits: bool,
    span_limits: bool,
}

impl TenantQuota {
    pub fn new(config: &TenantQuotaConfig) -> Self {
        let overrides: HashMap<String, Limits> = config
            .tenants
            .iter()
            .map(|(name, o)| (name.clone(), o.apply(&config.defaults)))
            .collect();
        let all = || std::iter::once(&config.defaults).chain(overrides.values());
        let trace_limits = all().any(Limits::limits_traces);
        let span_limits = all().any(Limits::limits_spans);
        Self {
            action: config.action,
            defaults: config.defaults,
            tenants: Tenants::new(config.max_tenants),
            traces: TraceTracker::new(config.trace_window.get(), config.max_traces, Instant::now()),
            labels: TenantLabels::new(TENANT_LABEL_LIMIT, config.tenants.keys()),
            overrides,
            trace_limits,
            span_limits,
        }
    }

    /// Checks every tenant's share against its buckets. Returns the over-quota tenants.
    fn admit(&mut self, batch: &TraceBatch, now: Instant) -> (usize, Vec<(Share, OverQuota)>) {
        let shares = shares(batch);
        let count = shares.iter().filter(|s| s.spans > 0).count();
        let mut over = Vec::new();
        for share in shares {
            if share.spans == 0 {
                continue;
            }
            let limits = limits_for(&self.overrides, &self.defaults, &share.tenant);
            let state = self.tenants.get_or_insert(&share.tenant, || limits, now);
            if let Err(quota) = state.admit(&share.tenant, share.spans, share.bytes, now) {
                over.push((share, quota));
            }
        }
        (count, over)
    }

    fn count_tenant(&mut self, tenant: &str, reason: &'static str, spans: u64) {
        let label = self.labels.label(tenant);
        metrics::counter!(names::TENANT_REFUSED_SPANS, "tenant" => label, "reason" => reason)
            .increment(spans);
    }

    /// Counts what passes per tenant and feeds its span attributes to the cardinality estimates.
    fn record_accepted(&mut self, batch: &TraceBatch) {
        for share in shares(batch) {
            if share.spans == 0 {
                continue;
            }
            let label = self.labels.label(&share.tenant);
            metrics::counter!(names::TENANT_ACCEPTED_SPANS, "tenant" => label.clone())
                .increment(share.spans);
            metrics::counter!(names::TENANT_ACCEPTED_BYTES, "tenant" => label)
                .increment(share.bytes);
        }
        let estimator = cardinality::global();
        for rs in batch.resource_spans() {
            let spans = rs.scope_spans.iter().flat_map(|ss| &ss.spans);
            estimator.observe_many(tenant_name(rs), spans.map(|s| s.attributes.as_slice()));
        }
    }

    /// Applies the per-span limits to every span, counting per tenant.
    fn limit_spans(&mut self, batch: &mut TraceBatch) {
        // Changing spans drops a batch's wire form; keep it where no limit applies.
        let limited = batch
            .resource_spans()
            .iter()
            .any(|rs| limits_for(&self.overrides, &self.defaults, tenant_name(rs)).limits_spans());
        if !limited {
            return;
        }
        let mut cut_by_tenant: Vec<(String, Truncations)> = Vec::new();
        for rs in batch.resource_spans_mut() {
            let tenant = tenant_name(rs).to_string();
            let limits = limits_for(&self.overrides, &self.defaults, &tenant);
            if !limits.limits_spans() {
                continue;
            }
            let mut cut = Truncations::default();
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    limit_span(span, &limits, &mut cut);
                }
            }
            if cut.any() {
                cut_by_tenant.push((tenant, cut));
            }
        }
        if cut_by_tenant.is_empty() {
            return;
        }
        batch.remeasure();
        for (tenant, cut) in cut_by_tenant {
            let label = self.labels.label(&tenant);
            for (kind, n) in [
                ("attributes_removed", cut.attributes),
                ("values_truncated", cut.values),
                ("events_removed", cut.events),
            ] {
                if n > 0 {
                    metrics::counter!(names::TENANT_QUOTA_TRUNCATIONS, "tenant" => label.clone(), "kind" => kind)
                        .increment(n);
                }
            }
        }
    }

    /// Drops spans of traces past `max_spans_per_trace` / `max_bytes_per_trace`.
    fn limit_traces(&mut self, batch: &mut TraceBatch, now: Instant, dropped: &mut Dropped) {
        let overrides = &self.overrides;
        let defaults = &self.defaults;
        let traces = &mut self.traces;
        let mut too_large: Vec<(String, u64)> = Vec::new();
        // Resolved once per resource, not per span.
        let mut current: Option<(*const ResourceSpans, u64, Limits)> = None;
        let removed = batch.retain_spans(|rs, span| {
            let (hash, limits) = match current {
                Some((seen, hash, limits)) if std::ptr::eq(seen, rs) => (hash, limits),
                _ => {
                    let tenant = tenant_name(rs);
                    let limits = limits_for(overrides, defaults, tenant);
                    let hash = tenant_hash(tenant);
                    current = Some((rs, hash, limits));
                    (hash, limits)
                }
            };
            if !limits.limits_traces() || fits_trace(traces, hash, span, &limits, now) {
                return true;
            }
            let tenant = tenant_name(rs);
            match too_large.iter_mut().find(|(t, _)| t == tenant) {
                Some((_, n)) => *n += 1,
                None => too_large.push((tenant.to_string(), 1)),
            }
            false
        });
        dropped.add(REASON_TRACE_TOO_LARGE, removed as u64);
        for (tenant, n) in too_large {
            self.count_tenant(&tenant, REASON_TRACE_TOO_LARGE, n);
        }
    }
}

/// Whether `span` still fits its trace's limits; if it does, it is added to the trace.
fn fits_trace(
    traces: &mut TraceTracker,
    tenant_hash: u64,
    span: &Span,
    limits: &Limits,
    now: Instant,
) -> bool {
    let max_bytes = limits.max_bytes_per_trace.bytes();
    let bytes = if max_bytes > 0 {
        span.encoded_len() as u64
    } else {
        0
    };
    let usage = traces.usage((tenant_hash, trace_key(&span.trace_id)), now);
    let max_spans = limits.max_spans_per_trace;
    if (max_spans > 0 && usage.spans >= max_spans)
        || (max_bytes > 0 && usage.bytes + bytes > max_bytes)
    {
        return false;
    }
    usage.spans += 1;
    usage.bytes += bytes;
    true
}

#[async_trait]
impl Processor for TenantQuota {
    async fn process(
        &mut self,
        mut batch: TraceBatch,
        out: &mut Emitter,
        dropped: &mut Dropped,
    ) -> Result<(), ProcessError> {
        let now = Instant::now();
        let (tenants, over) = self.admit(&batch, now);
        if !over.is_empty() {
            for (share, _) in &over {
                let (tenant, spans) = (share.tenant.clone(), share.spans);
                self.count_tenant(&tenant, REASON_RATE_LIMITED, spans);
            }
            // A refusal refuses the whole request, so it is only used when every span of
            // the batch is over quota: other tenants' spans are never refused with them.
            if over.len() == tenants && self.action == Action::Refuse {
                return Err(refusal(&over).into());
            }
            let removed = batch.retain_spans(|rs, _| {
                let tenant = tenant_name(rs);
                !over.iter().any(|(share, _)| share.tenant == tenant)
            });
            dropped.add(REASON_QUOTA, removed as u64);
        }
        if self.span_limits {
            self.limit_spans(&mut batch);
        }
        if self.trace_limits {
            self.limit_traces(&mut batch, now, dropped);
        }
        self.record_accepted(&batch);
        out.emit(batch);
        Ok(())
    }
}

/// One refusal for the over-quota tenants of a batch: every reason, the longest wait.
fn refusal(over: &[(Share, OverQuota)]) -> Refusal {
    let mut message = String::new();
    let mut wait = std::time::Duration::ZERO;
    for (_, quota) in over {
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(&quota.message);
        wait = wait.max(quota.wait);
    }
    Refusal::new(RefusalReason::Quota, message).with_retry_after(wait)
}

/// The batch split by tenant: spans and encoded bytes of each.
fn shares(batch: &TraceBatch) -> Vec<Share> {
    let mut shares: Vec<Share> = Vec::new();
    for rs in batch.resource_spans() {
        let tenant = tenant_name(rs);
        let spans: usize = rs.scope_spans.iter().map(|ss| ss.spans.len()).sum();
        match shares.iter_mut().find(|s| s.tenant == tenant) {
            Some(share) => share.spans += spans as u64,
            None => shares.push(Share {
                tenant: tenant.to_string(),
                spans: spans as u64,
                bytes: 0,
            }),
        }
    }
    if let [only] = shares.as_mut_slice() {
        // The common case: one tenant, whose size the batch already knows.
        only.bytes = batch.size_hint() as u64;
        return shares;
    }
    for rs in batch.resource_spans() {
        let tenant = tenant_name(rs);
        if let Some(share) = shares.iter_mut().find(|s| s.tenant == tenant) {
            share.bytes += rs.encoded_len() as u64;
        }
    }
    shares
}

fn tenant_name(rs: &ResourceSpans) -> &str {
    tenant_of(rs.resource.as_ref()).unwrap_or(DEFAULT_TENANT)
}

fn limits_for(overrides: &HashMap<String, Limits>, defaults: &Limits, tenant: &str) -> Limits {
    overrides.get(tenant).copied().unwrap_or(*defaults)
}

fn tenant_hash(tenant: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    tenant.hash(&mut hasher);
    hasher.finish()
}

/// A trace id as a map key (ids are checked to be 16 bytes by the receiver).
fn trace_key(trace_id: &[u8]) -> u128 {
    <[u8; 16]>::try_from(trace_id)
        .map(u128::from_be_bytes)
        .unwrap_or(0)
}
