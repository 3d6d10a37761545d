//! The decision cache: recent decisions by trace-id fingerprint, so late spans follow them.

use std::collections::{HashMap, VecDeque};

/// A past decision a late span follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// Sampled by the policy with this index.
    Sampled(u16),
    NotSampled,
}

/// A bounded map of fingerprints: the oldest entry is forgotten first.
#[derive(Debug)]
struct Ring {
    order: VecDeque<u64>,
    entries: HashMap<u64, u16>,
    capacity: usize,
}

impl Ring {
    fn new(capacity: usize) -> Self {
        Self {
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            entries: HashMap::with_capacity(capacity.min(1 << 16)),
            capacity,
        }
    }

    fn insert(&mut self, key: u64, value: u16) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.insert(key, value).is_some() {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }

    fn get(&self, key: u64) -> Option<u16> {
        self.entries.get(&key).copied()
    }
}

/// Separate sampled and not-sampled caches, so a flood of not-sampled traces cannot push
/// out the sampled decisions (which matter most for completeness).
#[derive(Debug)]
pub struct DecisionCache {
    sampled: Ring,
    not_sampled: Ring,
}

impl DecisionCache {
    pub fn new(sampled_entries: usize, not_sampled_entries: usize) -> Self {
        Self {
            sampled: Ring::new(sampled_entries),
            not_sampled: Ring::new(not_sampled_entries),
        }
    }

    pub fn remember(&mut self, fingerprint: u64, decision: Cached) {
        match decision {
            Cached::Sampled(policy) => self.sampled.insert(fingerprint, policy),
            Cached::NotSampled => self.not_sampled.insert(fingerprint, 0),
        }
    }

    pub fn lookup(&self, fingerprint: u64) -> Option<Cached> {
        if let Some(policy) = self.sampled.get(fingerprint) {
            return Some(Cached::Sampled(policy));
        }
        self.not_sampled
            .get(fingerprint)
            .map(|_| Cached::NotSampled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_entry_past_capacity() {
        let mut cache = DecisionCache::new(2, 1);
        cache.remember(1, Cached::Sampled(0));
        cache.remember(2, Cached::Sampled(1));
        cache.remember(3, Cached::Sampled(2));
        cache.remember(10, Cached::NotSampled);
        cache.remember(11, Cached::NotSampled);
        assert_eq!(cache.lookup(1), None);
        assert_eq!(cache.lookup(2), Some(Cached::Sampled(1)));
        assert_eq!(cache.lookup(3), Some(Cached::Sampled(2)));
        assert_eq!(cache.lookup(10), None);
        assert_eq!(cache.lookup(11), Some(Cached::NotSampled));
    }
}
