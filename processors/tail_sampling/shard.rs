//! One shard: a task that owns a slice of the traces (by trace-id hash), decides them on
//! time or under memory pressure, and remembers decisions for late spans.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use super::cache::{Cached, DecisionCache};
use super::metrics::ShardMetrics;
use super::outbox::{Output, Shared};
use super::policy::{PolicySet, Verdict};
use super::trace::{Piece, Trace, trace_hash};
use crate::component::tenant::tenant_of;

/// Work for a shard.
#[derive(Debug)]
pub enum ShardMsg {
    Pieces(Vec<Piece>),
    /// Decide (or drop, when `drop` is set) every buffered trace, then answer.
    Finish {
        drop: bool,
        done: oneshot::Sender<()>,
    },
}

/// A shard's share of the configuration.
#[derive(Debug, Clone)]
pub struct ShardSettings {
    pub decision_wait: Duration,
    pub decision_wait_after_root: Duration,
    pub max_trace_age: Duration,
    /// Bytes this shard may account (buffered + decided but not yet collected).
    pub limit: usize,
    /// Bytes above which the oldest traces are decided early.
    pub high_water: usize,
    pub max_trace_bytes: usize,
    /// Per-tenant byte limits within this shard.
    pub tenant_limits: HashMap<String, usize>,
}

/// Why a trace was decided when it was (the `reason` label of early decisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    AfterRoot,
    Inactive,
    MaxAge,
    MemoryPressure,
    TraceBytes,
    TenantShare,
    Shutdown,
}

pub struct Shard {
    index: usize,
    settings: ShardSettings,
    policies: PolicySet,
    policy_names: Vec<Arc<str>>,
    traces: HashMap<u128, Trace>,
    /// Deadlines with lazy invalidation: an entry counts only while it equals its trace's
    /// `scheduled`; a later real deadline is re-queued when the early entry pops.
    timers: BinaryHeap<Reverse<(Instant, u128, u64)>>,
    /// Traces in arrival order (lazy too: entries of decided traces are skipped).
    order: VecDeque<(u128, u64)>,
    cache: DecisionCache,
    bytes: usize,
    tenant_bytes: HashMap<String, usize>,
    next_seq: u64,
    shared: Arc<Shared>,
    metrics: ShardMetrics,
}

/// The fingerprint under which a decision is cached.
fn fingerprint(trace_id: u128) -> u64 {
    trace_hash(trace_id, b"cache")
}

impl Shard {
    pub fn new(
        index: usize,
        settings: ShardSettings,
        policies: PolicySet,
        cache: DecisionCache,
        shared: Arc<Shared>,
        metrics: ShardMetrics,
    ) -> Self {
        Self {
            index,
            settings,
            policy_names: policies
                .names()
                .iter()
                .map(|n| Arc::from(n.as_str()))
                .collect(),
            policies,
            traces: HashMap::new(),
            timers: BinaryHeap::new(),
            order: VecDeque::new(),
            cache,
            bytes: 0,
            tenant_bytes: HashMap::new(),
            next_seq: 0,
            shared,
            metrics,
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<ShardMsg>) {
        loop {
            let next = self.timers.peek().map(|Reverse((at, _, _))| *at);
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(ShardMsg::Pieces(pieces)) => {
                        let now = Instant::now();
                        for piece in pieces {
                            self.ingest(piece, now);
                        }
                    }
                    Some(ShardMsg::Finish { drop, done }) => {
                        self.finish(drop);
                        self.publish();
                        let _ = done.send(());
                        continue;
                    }
                    None => break,
                },
                _ = sleep_until(next.unwrap_or_else(far_future)), if next.is_some() => {
                    self.fire(Instant::now());
                }
            }
            self.publish();
        }
    }

    fn outbox(&self) -> &super::outbox::Outbox {
        &self.shared.outboxes[self.index]
    }

    /// Bytes this shard is answerable for: buffered plus decided but not yet collected.
    fn accounted(&self) -> usize {
        self.bytes + self.outbox().bytes()
    }

    fn publish(&mut self) {
        self.metrics.flush();
        self.metrics.traces.set(self.traces.len() as f64);
        self.metrics.bytes.set(self.bytes as f64);
        if self
            .shared
            .pending
            .load(std::sync::atomic::Ordering::Acquire)
        {
            self.shared.wakeup.notify_one();
        }
    }

    pub fn ingest(&mut self, piece: Piece, now: Instant) {
        let id = piece.trace_id;
        let buffered = self.traces.contains_key(&id);
        if !buffered {
            let found = self.cache.lookup(fingerprint(id));
            self.metrics.cache_lookup(found);
            if let Some(cached) = found {
                self.metrics.late(cached, piece.spans);
                self.follow(piece, cached);
                return;
            }
        }
        let share = self.tenant_share(&piece.group);
        if !self.make_room(piece.bytes, share) {
            self.count_drop(&self.shared.drops.memory_pressure, piece.spans);
            return;
        }
        // Only a buffered trace can have been decided by `make_room`.
        if buffered
            && !self.traces.contains_key(&id)
            && let Some(cached) = self.cache.lookup(fingerprint(id))
        {
            // Decided early just now to make room: the piece follows that decision.
            self.follow(piece, cached);
            return;
        }
        let shared = share.is_some();
        self.admit(piece, shared, now);
    }

    /// Buffers a piece; a new trace counts against its tenant's share when `shared`.
    fn admit(&mut self, piece: Piece, shared: bool, now: Instant) {
        let id = piece.trace_id;
        let bytes = piece.bytes;
        let seq = self.next_seq;
        let trace = self.traces.entry(id).or_insert_with(|| {
            let mut trace = Trace::new(id, now, seq);
            trace.scheduled = far_future();
            trace.shared = shared;
            trace
        });
        if trace.seq == seq {
            self.next_seq += 1;
            self.order.push_back((id, seq));
        }
        trace.add(piece, now);
        // Counted against the share the trace was created under, which `release` frees.
        if trace.shared
            && let Some(tenant) = trace.tenant()
        {
            add_bytes(&mut self.tenant_bytes, tenant, bytes);
        }
        self.bytes += bytes;
        self.outbox().note_accounted(self.accounted());
        let due = self.due(id);
        if let Some(trace) = self.traces.get_mut(&id)
            && due < trace.scheduled
        {
            trace.scheduled = due;
            self.timers.push(Reverse((due, id, trace.seq)));
        }
        if self
            .traces
            .get(&id)
            .is_some_and(|t| t.bytes >= self.settings.max_trace_bytes)
        {
            self.decide(id, now, Why::TraceBytes);
        }
    }

    /// The tenant whose memory share a new trace starting with `group` counts against.
    fn tenant_share<'g>(&self, group: &'g ResourceSpans) -> Option<&'g str> {
        if self.settings.tenant_limits.is_empty() {
            return None;
        }
        let tenant = tenant_of(group.resource.as_ref())?;
        self.settings
            .tenant_limits
            .contains_key(tenant)
            .then_some(tenant)
    }

    /// The earliest of the three deadlines of a buffered trace, and which one it is.
    fn deadline(&self, trace: &Trace) -> (Instant, Why) {
        let s = &self.settings;
        let mut best = (trace.last_at + s.decision_wait, Why::Inactive);
        let age = trace.first_at + s.max_trace_age;
        if age < best.0 {
            best = (age, Why::MaxAge);
        }
        if let Some(root) = trace.root_at
            && root + s.decision_wait_after_root < best.0
        {
            best = (root + s.decision_wait_after_root, Why::AfterRoot);
        }
        best
    }

    fn due(&self, id: u128) -> Instant {
        self.traces
            .get(&id)
            .map_or_else(far_future, |t| self.deadline(t).0)
    }

    /// Decides every trace whose deadline has passed.
    pub fn fire(&mut self, now: Instant) {
        while let Some(Reverse((at, id, seq))) = self.timers.peek().copied() {
            if at > now {
                return;
            }
            self.timers.pop();
            let Some(trace) = self.traces.get(&id) else {
                continue;
            };
            if trace.seq != seq || trace.scheduled != at {
                continue;
            }
            let (real, why) = self.deadline(trace);
            if real <= now {
                self.decide(id, now, why);
            } else if let Some(trace) = self.traces.get_mut(&id) {
                trace.scheduled = real;
                self.timers.push(Reverse((real, id, seq)));
            }
        }
    }

    /// Frees room for `need` bytes: decides the oldest traces early above the high-water
    /// mark, then evicts waiting output without errors. False when there is still no room.
    fn make_room(&mut self, need: usize, tenant: Option<&str>) -> bool {
        if let Some(tenant) = tenant
            && !self.make_tenant_room(need, tenant)
        {
            return false;
        }
        let now = Instant::now();
        while self.accounted() + need > self.settings.high_water {
            let Some(id) = self.oldest(|_| true) else {
                break;
            };
            self.decide(id, now, Why::MemoryPressure);
        }
        while self.accounted() + need > self.settings.limit {
            let Some(spans) = self.outbox().evict_errorless() else {
                break;
            };
            self.count_drop(&self.shared.drops.memory_pressure, spans);
        }
        self.accounted() + need <= self.settings.limit
    }

    fn make_tenant_room(&mut self, need: usize, tenant: &str) -> bool {
        let limit = self
            .settings
            .tenant_limits
            .get(tenant)
            .copied()
            .unwrap_or(usize::MAX);
        let now = Instant::now();
        while self.tenant_bytes.get(tenant).copied().unwrap_or(0) + need > limit {
            let Some(id) = self.oldest(|t| t.shared && t.tenant() == Some(tenant)) else {
                break;
            };
            self.decide(id, now, Why::TenantShare);
        }
        self.tenant_bytes.get(tenant).copied().unwrap_or(0) + need <= limit
    }

    /// The oldest buffered trace that `wanted` accepts; drops stale entries on the way.
    fn oldest(&mut self, wanted: impl Fn(&Trace) -> bool) -> Option<u128> {
        while let Some((id, seq)) = self.order.front().copied() {
            if self.traces.get(&id).is_some_and(|t| t.seq == seq) {
                break;
            }
            self.order.pop_front();
        }
        for (id, seq) in &self.order {
            if let Some(trace) = self.traces.get(id)
                && trace.seq == *seq
                && wanted(trace)
            {
                return Some(*id);
            }
        }
        None
    }

    /// Evaluates the policies on a buffered trace and sends it on its way.
    pub fn decide(&mut self, id: u128, now: Instant, why: Why) {
        let Some(mut trace) = self.traces.remove(&id) else {
            return;
        };
        self.release(&trace);
        self.metrics
            .decided(why, now.saturating_duration_since(trace.first_at));
        // Sampled spans wait for the pipeline encoded, as the budget counts them.
        let encoded = if self.policies.needs_spans() {
            trace.decode()
        } else {
            None
        };
        // The real clock, not tokio's (which tests pause): this measures work, not waiting.
        let started = std::time::Instant::now();
        let outcome = self.policies.decide(&trace, now);
        self.metrics.evaluated(started.elapsed());
        self.metrics.decision(outcome.verdict, outcome.policy);
        let fp = fingerprint(id);
        match outcome.verdict {
            Verdict::Sampled => {
                let policy = outcome.policy.unwrap_or(0);
                self.cache.remember(fp, Cached::Sampled(policy as u16));
                let name = self.policy_names[policy].clone();
                let (spans, bytes, has_error) = (trace.spans, trace.bytes, trace.has_error());
                self.send(Output {
                    encoded: encoded.unwrap_or_else(|| trace.into_encoded()),
                    policy: name,
                    adjusted_count: outcome.adjusted_count,
                    threshold: outcome.threshold,
                    spans,
                    bytes,
                    has_error,
                });
            }
            Verdict::NotSampled => {
                self.cache.remember(fp, Cached::NotSampled);
                self.count_drop(&self.shared.drops.not_sampled, trace.spans);
            }
            Verdict::Dropped => {
                self.cache.remember(fp, Cached::NotSampled);
                self.count_drop(&self.shared.drops.policy_drop, trace.spans);
            }
        }
    }

    fn release(&mut self, trace: &Trace) {
        self.bytes -= trace.bytes;
        if trace.shared
            && let Some(tenant) = trace.tenant()
            && let Some(bytes) = self.tenant_bytes.get_mut(tenant)
        {
            *bytes = bytes.saturating_sub(trace.bytes);
        }
    }

    /// Sends a piece the way its trace was decided.
    fn follow(&mut self, piece: Piece, cached: Cached) {
        match cached {
            Cached::Sampled(policy) => {
                if !self.make_room(piece.bytes, None) {
                    self.count_drop(&self.shared.drops.memory_pressure, piece.spans);
                    return;
                }
                let has_error = piece.has_error();
                let (adjusted_count, threshold) = self.policies.probability(usize::from(policy));
                let policy = self.policy_names.get(usize::from(policy)).cloned();
                self.send(Output {
                    encoded: piece.encode(),
                    policy: policy.unwrap_or_else(|| Arc::from("")),
                    adjusted_count,
                    threshold,
                    spans: piece.spans,
                    bytes: piece.bytes,
                    has_error,
                });
            }
            Cached::NotSampled => self.count_drop(&self.shared.drops.not_sampled, piece.spans),
        }
    }

    fn send(&self, output: Output) {
        self.outbox().push(output);
        self.outbox().note_accounted(self.accounted());
        self.shared
            .pending
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn count_drop(&self, counter: &std::sync::atomic::AtomicU64, spans: usize) {
        counter.fetch_add(spans as u64, std::sync::atomic::Ordering::Relaxed);
        self.shared
            .pending
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Decides (or drops) every buffered trace, oldest first.
    pub fn finish(&mut self, drop: bool) {
        let now = Instant::now();
        while let Some(id) = self.oldest(|_| true) {
            if drop {
                if let Some(trace) = self.traces.remove(&id) {
                    self.release(&trace);
                    self.count_drop(&self.shared.drops.shutdown, trace.spans);
                }
            } else {
                self.decide(id, now, Why::Shutdown);
            }
        }
        self.timers.clear();
    }
}

/// Adds to a tenant's bytes without allocating the key when the tenant is known.
fn add_bytes(tenant_bytes: &mut HashMap<String, usize>, tenant: &str, bytes: usize) {
    match tenant_bytes.get_mut(tenant) {
        Some(total) => *total += bytes,
        None => {
            tenant_bytes.insert(tenant.to_string(), bytes);
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}
