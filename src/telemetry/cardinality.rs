//! Bounded-memory estimates of the distinct values of every attribute key per tenant (HyperLogLog).
//!
//! Why hand-written: the sketch is ~100 lines, needs a sparse start (most keys have a handful of
//! values, so 200 000 dense sketches would not fit a bounded budget), and a process-wide budget of
//! dense sketches, which the HyperLogLog crates do not offer. Precision 12 (4096 registers) gives a
//! standard error of 1.04/√4096 ≈ 1.6 %. The hash is foldhash's quality hash with a fixed seed: a
//! few ns per value, one pass over the value's bytes, no allocation.
//!
//! Memory is bounded by [`Bounds`]: at most `max_tenants` tenants (then `other`) of at most
//! `max_keys_per_tenant` keys (then `other`); a sketch starts sparse (≤ 32 entries, 128 B) and turns
//! dense (4 KiB) while fewer than `max_dense` dense sketches exist; past that budget it keeps its
//! sparse entries and reports its estimate as a lower bound. With the defaults the worst case is
//! about 201 000 × (128 B + key) + 4096 × 4 KiB ≈ 50 MiB; a typical deployment uses a few MiB.
//!
//! Cost on the hot path: one lock per resource, then per attribute one map lookup of its key, one
//! hash of its value and one register update; nothing is sampled, so a key's first distinct
//! values are never missed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;

use foldhash::quality::{FixedState, FoldHasher};
use parking_lot::Mutex;
use serde::Serialize;

use super::metrics::ATTRIBUTE_CARDINALITY;
use crate::component::{KeyValue, any_value::Value};

/// The bucket for tenants past `max_tenants` and keys past `max_keys_per_tenant`.
pub const OTHER: &str = "other";
/// How many (tenant, key) series `spanline_attribute_cardinality` publishes.
pub const PUBLISHED_SERIES: usize = 50;
/// Keys per tenant that `GET /debug/cardinality` lists.
pub const REPORTED_KEYS: usize = 20;

const PRECISION: u32 = 12;
const REGISTERS: usize = 1 << PRECISION;
/// Sparse entries before a sketch turns dense: below this the sketch is (nearly) exact.
const SPARSE_MAX: usize = 32;
/// A fixed seed, so estimates are the same from run to run.
const SEED: u64 = 0x5ba7_11e0_c0de_cafe;

/// The limits that bound the estimator's memory.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_tenants: usize,
    pub max_keys_per_tenant: usize,
    /// Dense (4 KiB) sketches across every tenant and key.
    pub max_dense: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_tenants: 1000,
            max_keys_per_tenant: 200,
            max_dense: 4096,
        }
    }
}

/// One HyperLogLog sketch: sorted `idx << 8 | rank` entries until it turns dense.
#[derive(Debug)]
struct Sketch {
    sparse: Vec<u32>,
    dense: Option<Box<[u8]>>,
    /// The dense budget was gone when this sketch needed it: its estimate is a lower bound.
    capped: bool,
}

impl Sketch {
    fn new() -> Self {
        Self {
            sparse: Vec::new(),
            dense: None,
            capped: false,
        }
    }

    fn insert(&mut self, hash: u64, dense_left: &mut usize) {
        let idx = (hash >> (64 - PRECISION)) as usize;
        // A guard bit keeps the rank finite (at most 64 - PRECISION + 1).
        let rank = ((hash << PRECISION) | (1 << (PRECISION - 1))).leading_zeros() as u8 + 1;
        if let Some(registers) = &mut self.dense {
            registers[idx] = registers[idx].max(rank);
            return;
        }
        match self
            .sparse
            .binary_search_by_key(&idx, |e| (e >> 8) as usize)
        {
            Ok(at) => {
                let old = (self.sparse[at] & 0xff) as u8;
                if rank > old {
                    self.sparse[at] = ((idx as u32) << 8) | u32::from(rank);
                }
            }
            Err(at) if self.sparse.len() < SPARSE_MAX => {
                self.sparse
                    .insert(at, ((idx as u32) << 8) | u32::from(rank));
            }
            Err(_) if *dense_left > 0 => {
                *dense_left -= 1;
                let mut registers = vec![0u8; REGISTERS].into_boxed_slice();
                for e in self.sparse.drain(..) {
                    registers[(e >> 8) as usize] = (e & 0xff) as u8;
                }
                registers[idx] = rank;
                self.sparse = Vec::new();
                self.dense = Some(registers);
            }
            Err(_) => self.capped = true,
        }
    }

    /// The estimate: linear counting while registers are empty enough, raw HyperLogLog past it.
    fn estimate(&self) -> f64 {
        let m = REGISTERS as f64;
        let (zeros, sum) = match &self.dense {
            Some(registers) => registers.iter().fold((0usize, 0.0f64), |(z, s), &r| {
                (z + usize::from(r == 0), s + inverse_power_of_two(r))
            }),
            None => {
                let zeros = REGISTERS - self.sparse.len();
                let sum = self
                    .sparse
                    .iter()
                    .map(|e| inverse_power_of_two((e & 0xff) as u8))
                    .sum::<f64>();
                (zeros, zeros as f64 + sum)
            }
        };
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }
}

/// 2^-rank, built from the exponent bits: exact, and cheaper than `powi` over 4096 registers.
fn inverse_power_of_two(rank: u8) -> f64 {
    f64::from_bits((1023 - u64::from(rank)) << 52)
}

/// The hash of one attribute value: its type and its content, one pass, no allocation.
fn hash_value(value: Option<&Value>, hasher: &mut FoldHasher<'static>) {
    match value {
        None => hasher.write_u8(0),
        Some(Value::StringValue(s)) => {
            hasher.write_u8(1);
            hasher.write(s.as_bytes());
        }
        Some(Value::BoolValue(b)) => hasher.write_u8(if *b { 2 } else { 3 }),
        Some(Value::IntValue(i)) => {
            hasher.write_u8(4);
            hasher.write_i64(*i);
        }
        Some(Value::DoubleValue(d)) => {
            hasher.write_u8(5);
            hasher.write_u64(d.to_bits());
        }
        Some(Value::BytesValue(b)) => {
            hasher.write_u8(6);
            hasher.write(b);
        }
        Some(Value::ArrayValue(array)) => {
            hasher.write_u8(7);
            for v in &array.values {
                hash_value(v.value.as_ref(), hasher);
            }
        }
        Some(Value::StringValueStrindex(index)) => {
            hasher.write_u8(9);
            hasher.write_i32(*index);
        }
        Some(Value::KvlistValue(list)) => {
            hasher.write_u8(8);
            for kv in &list.values {
                hasher.write(kv.key.as_bytes());
                hash_value(kv.value.as_ref().and_then(|v| v.value.as_ref()), hasher);
            }
        }
    }
}

#[derive(Debug)]
struct Inner {
    tenants: HashMap<String, HashMap<String, Sketch>>,
    dense_left: usize,
}

/// The estimator: distinct values per (tenant, attribute key), shared by every pipeline.
#[derive(Debug)]
pub struct Cardinality {
    bounds: Bounds,
    hasher: FixedState,
    inner: Mutex<Inner>,
}

/// One key's estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyEstimate {
    pub key: String,
    pub estimate: u64,
    /// Set when the dense-sketch budget was exhausted for this key: the true count is higher.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub lower_bound: bool,
}

/// One tenant's keys, highest estimate first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantEstimates {
    pub tenant: String,
    pub keys: Vec<KeyEstimate>,
}

/// The body of `GET /debug/cardinality`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub tenants: Vec<TenantEstimates>,
}

static GLOBAL: LazyLock<Cardinality> = LazyLock::new(|| Cardinality::new(Bounds::default()));

/// The process-wide estimator that processors feed and the admin server reads.
pub fn global() -> &'static Cardinality {
    &GLOBAL
}

impl Cardinality {
    pub fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            hasher: FixedState::with_seed(SEED),
            inner: Mutex::new(Inner {
                tenants: HashMap::new(),
                dense_left: bounds.max_dense,
            }),
        }
    }

    /// Counts the values of one span's (or resource's) attributes for `tenant`.
    pub fn observe(&self, tenant: &str, attributes: &[KeyValue]) {
        self.observe_many(tenant, std::iter::once(attributes));
    }

    /// Counts several attribute lists of one tenant under one lock.
    pub fn observe_many<'a>(&self, tenant: &str, lists: impl IntoIterator<Item = &'a [KeyValue]>) {
        let mut guard = self.inner.lock();
        let Inner {
            tenants,
            dense_left,
        } = &mut *guard;
        let keys = bucket(tenants, tenant, self.bounds.max_tenants, HashMap::new);
        for list in lists {
            for kv in list {
                let mut hasher = self.hasher.build_hasher();
                hash_value(
                    kv.value.as_ref().and_then(|v| v.value.as_ref()),
                    &mut hasher,
                );
                let hash = hasher.finish();
                let sketch = bucket(keys, &kv.key, self.bounds.max_keys_per_tenant, Sketch::new);
                sketch.insert(hash, dense_left);
            }
        }
    }

    /// Every tenant (or only `tenant`) with its top `k` keys, tenants by their top estimate.
    pub fn report(&self, tenant: Option<&str>, k: usize) -> Report {
        let guard = self.inner.lock();
        let mut tenants: Vec<TenantEstimates> = guard
            .tenants
            .iter()
            .filter(|(name, _)| tenant.is_none_or(|t| t == name.as_str()))
            .map(|(name, keys)| TenantEstimates {
                tenant: name.clone(),
                keys: top_keys(keys.iter(), k),
            })
            .collect();
        drop(guard);
        let top = |t: &TenantEstimates| t.keys.first().map_or(0, |k| k.estimate);
        tenants.sort_by(|a, b| top(b).cmp(&top(a)).then_with(|| a.tenant.cmp(&b.tenant)));
        Report { tenants }
    }

    /// The `n` (tenant, key) pairs with the highest estimates across every tenant.
    pub fn top(&self, n: usize) -> Vec<(String, KeyEstimate)> {
        let guard = self.inner.lock();
        let mut all: Vec<(&String, KeyEstimate)> = guard
            .tenants
            .iter()
            .flat_map(|(tenant, keys)| keys.iter().map(move |(key, s)| (tenant, estimate(key, s))))
            .collect();
        let order = |a: &(&String, KeyEstimate), b: &(&String, KeyEstimate)| {
            (b.1.estimate.cmp(&a.1.estimate))
                .then_with(|| a.0.cmp(b.0))
                .then_with(|| a.1.key.cmp(&b.1.key))
        };
        if all.len() > n && n > 0 {
            all.select_nth_unstable_by(n - 1, order);
        }
        all.truncate(n);
        all.sort_by(order);
        all.into_iter().map(|(t, e)| (t.clone(), e)).collect()
    }

    /// `spanline_attribute_cardinality{tenant,key}` for the top `n` pairs, as Prometheus text.
    /// Rendered at each scrape rather than kept as recorder gauges, so a pair that leaves the
    /// top `n` disappears instead of lingering as a stale series.
    pub fn render_prometheus(&self, n: usize) -> String {
        let mut text = format!(
            "# HELP {ATTRIBUTE_CARDINALITY} Estimated distinct values of an attribute key per tenant (HyperLogLog), for the top {n} pairs.\n# TYPE {ATTRIBUTE_CARDINALITY} gauge\n"
        );
        for (tenant, key) in self.top(n) {
            let _ = writeln!(
                text,
                "{ATTRIBUTE_CARDINALITY}{{tenant=\"{}\",key=\"{}\"}} {}",
                escape(&tenant),
                escape(&key.key),
                key.estimate
            );
        }
        text
    }
}

/// The entry for `name` in `map`, or the `other` entry once `cap` names are taken.
fn bucket<'m, T>(
    map: &'m mut HashMap<String, T>,
    name: &str,
    cap: usize,
    new: impl FnOnce() -> T,
) -> &'m mut T {
    let name = if map.contains_key(name) || map.len() < cap {
        name
    } else {
        OTHER
    };
    if !map.contains_key(name) {
        map.insert(name.to_string(), new());
    }
    map.get_mut(name).expect("the entry was just inserted")
}

fn estimate(key: &str, sketch: &Sketch) -> KeyEstimate {
    KeyEstimate {
        key: key.to_string(),
        estimate: sketch.estimate().round() as u64,
        lower_bound: sketch.capped,
    }
}

fn top_keys<'a>(
    keys: impl Iterator<Item = (&'a String, &'a Sketch)>,
    k: usize,
) -> Vec<KeyEstimate> {
    let mut all: Vec<KeyEstimate> = keys.map(|(key, s)| estimate(key, s)).collect();
    all.sort_by(|a, b| b.estimate.cmp(&a.estimate).then_with(|| a.key.cmp(&b.key)));
    all.truncate(k);
    all
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
