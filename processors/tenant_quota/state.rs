//! The bounded state behind the quotas: token buckets per tenant, counts per trace, metric labels.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::config::Limits;

/// A token bucket: `rate` tokens per second up to `burst`. A request larger than the burst
/// passes when the bucket is full and leaves it in debt, so the long-run rate still holds.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket; `None` when `rate` is 0 (no limit). A burst of 0 means one second's worth.
    pub(crate) fn new(rate: u64, burst: u64, now: Instant) -> Option<Self> {
        if rate == 0 {
            return None;
        }
        let burst = if burst == 0 { rate } else { burst } as f64;
        Some(Self {
            rate: rate as f64,
            burst,
            tokens: burst,
            updated: now,
        })
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = now;
    }

    /// `Ok` when `n` tokens may be taken now, else how long until they may.
    pub(crate) fn check(&mut self, n: u64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        let needed = (n as f64).min(self.burst);
        if self.tokens >= needed {
            return Ok(());
        }
        let wait = (needed - self.tokens) / self.rate;
        Err(Duration::from_secs_f64(wait).max(Duration::from_millis(1)))
    }

    pub(crate) fn take(&mut self, n: u64) {
        self.tokens -= n as f64;
    }

    /// Whether the bucket would be full at `now`: forgetting it then loses nothing.
    fn full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }
}

/// Why a tenant's spans are over quota, and when to retry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OverQuota {
    pub message: String,
    pub wait: Duration,
}

/// One tenant's limits and buckets.
#[derive(Debug, Clone)]
pub(crate) struct TenantState {
    pub limits: Limits,
    spans: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
    last_seen: Instant,
}

impl TenantState {
    pub(crate) fn new(limits: Limits, now: Instant) -> Self {
        Self {
            spans: TokenBucket::new(limits.rate_limit_spans, limits.burst_size_spans, now),
            bytes: TokenBucket::new(
                limits.rate_limit_bytes.bytes(),
                limits.burst_size_bytes.bytes(),
                now,
            ),
            limits,
            last_seen: now,
        }
    }

    /// Takes `spans` and `bytes` from the buckets if both have enough; takes nothing otherwise.
    pub(crate) fn admit(
        &mut self,
        tenant: &str,
        spans: u64,
        bytes: u64,
        now: Instant,
    ) -> Result<(), OverQuota> {
        self.last_seen = now;
        if let Some(bucket) = &mut self.spans
            && let Err(wait) = bucket.check(spans, now)
        {
            let limits = &self.limits;
            return Err(OverQuota {
                message: format!(
                    "tenant {tenant:?} is over rate_limit_spans ({} spans/s, burst_size_spans {}): {spans} spans can be taken in {wait:.2?}",
                    limits.rate_limit_spans,
                    burst_or_rate(limits.burst_size_spans, limits.rate_limit_spans)
                ),
                wait,
            });
        }
        if let Some(bucket) = &mut self.bytes
            && let Err(wait) = bucket.check(bytes, now)
        {
            let limits = &self.limits;
            return Err(OverQuota {
                message: format!(
                    "tenant {tenant:?} is over rate_limit_bytes ({} bytes/s, burst_size_bytes {}): {bytes} bytes can be taken in {wait:.2?}",
                    limits.rate_limit_bytes.bytes(),
                    burst_or_rate(
                        limits.burst_size_bytes.bytes(),
                        limits.rate_limit_bytes.bytes()
                    )
                ),
                wait,
            });
        }
        if let Some(bucket) = &mut self.spans {
            bucket.take(spans);
        }
        if let Some(bucket) = &mut self.bytes {
            bucket.take(bytes);
        }
        Ok(())
    }

    fn idle_at(&self, now: Instant) -> bool {
        self.spans.as_ref().is_none_or(|b| b.full_at(now))
            && self.bytes.as_ref().is_none_or(|b| b.full_at(now))
    }
}

fn burst_or_rate(burst: u64, rate: u64) -> u64 {
    if burst == 0 { rate } else { burst }
}

/// Tenant states, at most `cap` of them. A new tenant beyond the cap evicts one whose
/// buckets are full (forgetting it changes nothing), else the one seen longest ago.
#[derive(Debug)]
pub(crate) struct Tenants {
    cap: usize,
    map: HashMap<String, TenantState>,
}

impl Tenants {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            map: HashMap::new(),
        }
    }

    pub(crate) fn get_or_insert(
        &mut self,
        tenant: &str,
        limits: impl FnOnce() -> Limits,
        now: Instant,
    ) -> &mut TenantState {
        if !self.map.contains_key(tenant) {
            if self.map.len() >= self.cap {
                self.evict(now);
            }
            self.map
                .insert(tenant.to_string(), TenantState::new(limits(), now));
        }
        self.map
            .get_mut(tenant)
            .expect("the tenant should have just been inserted")
    }

    fn evict(&mut self, now: Instant) {
        let idle = self
            .map
            .iter()
            .find(|(_, state)| state.idle_at(now))
            .map(|(name, _)| name.clone());
        let victim = idle.or_else(|| {
            self.map
                .iter()
                .min_by_key(|(_, state)| state.last_seen)
                .map(|(name, _)| name.clone())
        });
        if let Some(name) = victim {
            self.map.remove(&name);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// A trace's usage so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TraceUsage {
    pub spans: u64,
    pub bytes: u64,
}

/// Per-trace counts in two generations: the current one and the one before. Every `window`
/// (or sooner when the current one reaches `cap` entries) the current becomes the previous
/// and the old previous is forgotten, so a trace is remembered for one to two windows after
/// its last span and memory stays under `2 * cap` entries.
#[derive(Debug)]
pub(crate) struct TraceTracker {
    window: Duration,
    cap: usize,
    current: HashMap<(u64, u128), TraceUsage>,
    previous: HashMap<(u64, u128), TraceUsage>,
    rotated: Instant,
}

impl TraceTracker {
    pub(crate) fn new(window: Duration, cap: usize, now: Instant) -> Self {
        Self {
            window,
            cap: cap.max(1),
            current: HashMap::new(),
            previous: HashMap::new(),
            rotated: now,
        }
    }

    /// The usage of trace `key` (tenant hash, trace id), created when unknown.
    pub(crate) fn usage(&mut self, key: (u64, u128), now: Instant) -> &mut TraceUsage {
        if !self.current.contains_key(&key) {
            if self.current.len() >= self.cap
                || now.saturating_duration_since(self.rotated) >= self.window
            {
                self.previous = std::mem::take(&mut self.current);
                self.rotated = now;
            }
            let carried = self.previous.remove(&key).unwrap_or_default();
            self.current.insert(key, carried);
        }
        self.current
            .get_mut(&key)
            .expect("the trace should have just been inserted")
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

/// The tenant label of metrics: the first `cap` tenants get their own, the rest `other`,
/// so many tenants cannot explode the metrics' cardinality.
#[derive(Debug)]
pub(crate) struct TenantLabels {
    cap: usize,
    known: HashSet<String>,
}

pub(crate) const OTHER_TENANTS: &str = "other";

impl TenantLabels {
    /// Labels seeded with `configured` (by name, up to the cap).
    pub(crate) fn new<'a>(cap: usize, configured: impl IntoIterator<Item = &'a String>) -> Self {
        let mut labels = Self {
            cap,
            known: HashSet::new(),
        };
        for name in configured {
            labels.label(name);
        }
        labels
    }

    pub(crate) fn label(&mut self, tenant: &str) -> String {
        if self.known.contains(tenant) {
            return tenant.to_string();
        }
        if self.known.len() < self.cap {
            self.known.insert(tenant.to_string());
            return tenant.to_string();
        }
        OTHER_TENANTS.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn buckets_refill_at_their_rate_up_to_the_burst() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(100, 200, now).unwrap();
        assert_eq!(bucket.check(200, now), Ok(()));
        bucket.take(200);
        assert_eq!(bucket.check(50, now), Err(Duration::from_millis(500)));
        let later = now + Duration::from_secs(1);
        assert_eq!(bucket.check(100, later), Ok(()));
        assert!(bucket.check(101, later).is_err());
        // Refill stops at the burst, however long the bucket sat idle.
        let much_later = later + Duration::from_secs(60);
        assert_eq!(bucket.check(200, much_later), Ok(()));
        bucket.take(200);
        assert!(bucket.check(1, much_later).is_err());
        assert!(TokenBucket::new(0, 10, now).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_larger_than_the_burst_pass_a_full_bucket_and_leave_debt() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(10, 0, now).unwrap();
        assert_eq!(bucket.check(25, now), Ok(()));
        bucket.take(25);
        // -15 tokens: 2.5 s until the full burst of 10 is back.
        assert_eq!(bucket.check(25, now), Err(Duration::from_millis(2500)));
    }

    #[tokio::test(start_paused = true)]
    async fn traces_are_remembered_for_one_to_two_windows_and_bounded() {
        let now = Instant::now();
        let window = Duration::from_secs(10);
        let mut tracker = TraceTracker::new(window, 3, now);
        tracker.usage((0, 1), now).spans += 5;
        let later = now + Duration::from_secs(15);
        tracker.usage((0, 2), later).spans += 1;
        assert_eq!(tracker.usage((0, 1), later).spans, 5, "carried over");
        let gone = later + Duration::from_secs(25);
        tracker.usage((0, 3), gone);
        tracker.usage((0, 4), gone + Duration::from_secs(11));
        assert_eq!(
            tracker.usage((0, 1), gone + Duration::from_secs(11)).spans,
            0
        );
        for id in 10..1000 {
            tracker.usage((0, id), gone);
        }
        assert!(tracker.len() <= 6, "{}", tracker.len());
    }

    #[tokio::test(start_paused = true)]
    async fn tenants_are_bounded_and_idle_ones_go_first() {
        let now = Instant::now();
        let limits = Limits {
            rate_limit_spans: 10,
            ..Default::default()
        };
        let mut tenants = Tenants::new(2);
        tenants
            .get_or_insert("a", || limits, now)
            .admit("a", 10, 0, now)
            .unwrap();
        tenants.get_or_insert("b", || limits, now);
        tenants.get_or_insert("c", || limits, now);
        assert_eq!(tenants.len(), 2);
        // "a" used its burst, so "b" (idle, full) was the one forgotten.
        assert!(
            tenants
                .get_or_insert("a", || limits, now)
                .admit("a", 1, 0, now)
                .is_err()
        );
    }

    #[test]
    fn labels_are_bounded_with_other() {
        let configured = vec!["zeta".to_string()];
        let mut labels = TenantLabels::new(2, &configured);
        assert_eq!(labels.label("a"), "a");
        assert_eq!(labels.label("b"), OTHER_TENANTS);
        assert_eq!(labels.label("zeta"), "zeta");
        assert_eq!(labels.label("a"), "a");
    }
}
