//! Query latency over a real store: trace by id (cold and warm) and a one-hour search.
//!
//! ```sh
//! scripts/bench-query.sh                     # builds a 10M-span store with loadgen, then runs this
//! SPANLINE_BENCH_STORE=file:///tmp/spanline-bench-store cargo bench --bench query
//! ```
//! Cold means spanline's caches are empty (a new reader per lookup); the operating
//! system's page cache is not dropped, so on local disk cold excludes device reads.

// The allocator `spanline run` and `query-server` use, so latencies match theirs.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use spanline::query::client::open_store;
use spanline::query::engine::{QueryEngine, QueryLimits};
use spanline::query::search::{SearchRequest, TraceStatus};
use spanline::store::TimeWindow;

const LOOKUPS: usize = 200;
const SEARCHES: usize = 20;

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<34} n={:<4} p50 {:>9.2?}  p99 {:>9.2?}  max {:>9.2?}",
        samples.len(),
        percentile(&samples, 50),
        percentile(&samples, 99),
        samples[samples.len() - 1]
    );
}

fn engine(url: &str) -> QueryEngine {
    let source = open_store(url, &BTreeMap::new(), None).unwrap_or_else(|e| panic!("{e}"));
    let limits = QueryLimits {
        max_search_window: Duration::from_secs(24 * 3600),
        ..QueryLimits::default()
    };
    QueryEngine::new(source, limits)
}

#[tokio::main]
async fn main() {
    spanline::allocator::tune();
    let Ok(url) = std::env::var("SPANLINE_BENCH_STORE") else {
        eprintln!("set SPANLINE_BENCH_STORE to a store url (scripts/bench-query.sh builds one)");
        std::process::exit(2);
    };
    let tenant = std::env::var("SPANLINE_BENCH_TENANT").unwrap_or_else(|_| "default".into());
    let warm = engine(&url);
    let source = open_store(&url, &BTreeMap::new(), None).unwrap_or_else(|e| panic!("{e}"));
    let blocks = source
        .reader
        .blocks_in(&tenant, None)
        .await
        .expect("list blocks");
    let spans: u64 = blocks.iter().map(|b| b.span_count).sum();
    let traces: u64 = blocks.iter().map(|b| b.trace_count).sum();
    let bytes: u64 = blocks.iter().map(|b| b.spans_bytes + b.traces_bytes).sum();
    let end = blocks
        .iter()
        .map(|b| b.max_end_unix_nano)
        .max()
        .unwrap_or(0);
    println!(
        "store {url} tenant {tenant}: {} blocks, {spans} spans, {traces} trace parts, {:.1} MiB",
        blocks.len(),
        bytes as f64 / (1 << 20) as f64
    );

    // SPANLINE_BENCH_ONLY=search skips the lookups (for profiling the search).
    let only_search = std::env::var("SPANLINE_BENCH_ONLY").is_ok_and(|v| v == "search");
    // Trace ids to look up: every trace of a few random blocks, sampled.
    let mut rng = StdRng::seed_from_u64(1);
    let mut ids = Vec::new();
    let sampled = if only_search { 0 } else { 4 };
    for meta in blocks.choose_multiple(&mut rng, sampled) {
        let summaries = source
            .reader
            .summaries(meta, None)
            .await
            .expect("summaries");
        ids.extend(summaries.into_iter().map(|s| s.trace_id));
    }
    let ids: Vec<[u8; 16]> = ids.choose_multiple(&mut rng, LOOKUPS).copied().collect();

    let mut cold = Vec::new();
    for id in &ids {
        let fresh = engine(&url);
        let started = Instant::now();
        let found = fresh.trace(&tenant, id, None).await.expect("trace");
        cold.push(started.elapsed());
        assert!(found.is_some(), "a listed trace must be found");
    }
    if !cold.is_empty() {
        report("trace by id, cold caches", cold);
    }
    for id in &ids {
        warm.trace(&tenant, id, None).await.expect("trace");
    }
    let mut hot = Vec::new();
    for id in &ids {
        let started = Instant::now();
        warm.trace(&tenant, id, None).await.expect("trace");
        hot.push(started.elapsed());
    }
    if !hot.is_empty() {
        report("trace by id, warm", hot);
    }

    let request = SearchRequest {
        window: Some(TimeWindow {
            start_unix_nano: end.saturating_sub(3600 * 1_000_000_000),
            end_unix_nano: end,
        }),
        service: Some("payment".into()),
        status: Some(TraceStatus::Error),
        min_duration: Some(Duration::from_millis(20)),
        limit: Some(20),
        ..Default::default()
    };
    let mut searches = Vec::new();
    let mut hits = 0;
    for _ in 0..SEARCHES {
        let started = Instant::now();
        hits = warm.search(&tenant, &request).await.expect("search").len();
        searches.push(started.elapsed());
    }
    report(
        &format!("search 1h service+status+minDuration ({hits} hits)"),
        searches,
    );
}
