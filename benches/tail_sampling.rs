//! Throughput of the `tail_sampling` processor alone, and heap bytes per buffered span
//! relative to its OTLP-encoded size. Run with `cargo bench --bench tail_sampling`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};

use divan::counter::ItemsCount;
use spanline::component::{
    AnyValue, BuildContext, Dropped, Emitter, FlushReason, KeyValue, Processor, ProcessorFactory,
    Resource, ResourceSpans, ScopeSpans, Span, Status, TraceBatch, any_value, status,
};
use spanline::processors::tail_sampling::{TailSamplingConfig, TailSamplingProcessorFactory};

/// Counts live heap bytes so the memory per buffered span can be reported.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SPANS_PER_BATCH: usize = 500;
const SPANS_PER_TRACE: usize = 5;

/// A typical policy set: errors, slow traces, a tenant rule and a 5% baseline.
const POLICIES: &str = "num_shards: 1
policies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
  - {name: slow, type: latency, latency: {threshold_ms: 1000}}
  - name: premium
    type: tenant
    tenant: {tenants: [premium], policies: [{name: p, type: latency, latency: {threshold_ms: 300}}]}
  - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 5}}
";

static NEXT_TRACE: AtomicU64 = AtomicU64::new(1);

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// 500 realistic spans (~400 B each encoded) from 100 fresh traces of 5 spans.
fn realistic_batch() -> TraceBatch {
    let mut spans = Vec::with_capacity(SPANS_PER_BATCH);
    for _ in 0..SPANS_PER_BATCH / SPANS_PER_TRACE {
        let trace = NEXT_TRACE.fetch_add(1, Ordering::Relaxed);
        for i in 0..SPANS_PER_TRACE as u64 {
            // The low 56 bits are the randomness probabilistic sampling reads: spread them
            // like a random id's (an odd multiplier keeps ids distinct).
            let mut trace_id = vec![7u8; 16];
            let spread = trace.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            trace_id[8..].copy_from_slice(&spread.to_be_bytes());
            spans.push(Span {
                trace_id,
                span_id: (i + 1).to_be_bytes().to_vec(),
                parent_span_id: if i == 0 {
                    Vec::new()
                } else {
                    1u64.to_be_bytes().to_vec()
                },
                name: "GET /api/v1/orders/{id}".into(),
                start_time_unix_nano: 1_700_000_000_000_000_000 + i * 1_000_000,
                end_time_unix_nano: 1_700_000_000_000_000_000 + (i + 20) * 1_000_000,
                attributes: vec![
                    kv("http.route", "/api/v1/orders/{id}"),
                    kv("http.method", "GET"),
                    kv("net.peer.name", "orders.internal.example.com"),
                    kv(
                        "user_agent.original",
                        "Mozilla/5.0 (X11; Linux x86_64) spanline-bench",
                    ),
                ],
                status: trace.is_multiple_of(50).then(|| Status {
                    code: status::StatusCode::Error as i32,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    let resource = Resource {
        attributes: vec![kv("service.name", "checkout"), kv("tenant.id", "premium")],
        ..Default::default()
    };
    TraceBatch::measured(vec![ResourceSpans {
        resource: Some(resource),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        schema_url: String::new(),
    }])
}

fn sampler() -> Box<dyn Processor> {
    let config: TailSamplingConfig = serde_yaml::from_str(POLICIES).expect("bench config parses");
    let ctx = BuildContext {
        id: "tail_sampling".into(),
        pipeline: Some("traces".into()),
    };
    TailSamplingProcessorFactory
        .build(config, &ctx)
        .expect("sampler builds")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime builds")
}

/// Spans through `process` until buffered, on one core (one shard, current-thread runtime).
#[divan::bench(sample_count = 20)]
fn process_500_spans(bencher: divan::Bencher) {
    let rt = runtime();
    let mut sampler = rt.block_on(async { sampler() });
    bencher
        .counter(ItemsCount::new(SPANS_PER_BATCH))
        .with_inputs(realistic_batch)
        .bench_local_values(|batch| {
            rt.block_on(async {
                let mut out = Emitter::default();
                let mut dropped = Dropped::default();
                sampler
                    .process(batch, &mut out, &mut dropped)
                    .await
                    .expect("never refuses");
                // Let the shard task buffer the pieces inside the timed region.
                tokio::task::yield_now().await;
            })
        });
    rt.block_on(async {
        let mut out = Emitter::default();
        let mut dropped = Dropped::default();
        sampler
            .flush(FlushReason::Shutdown, &mut out, &mut dropped)
            .await;
    });
}

/// Heap bytes held per buffered span, relative to the span's encoded size.
fn report_memory() {
    let rt = runtime();
    let mut sampler = rt.block_on(async { sampler() });
    let mut out = Emitter::default();
    let mut dropped = Dropped::default();
    rt.block_on(sampler.process(realistic_batch(), &mut out, &mut dropped))
        .expect("never refuses");
    // Counted from before the batches exist: they are consumed, what stays is the buffer.
    let before = LIVE.load(Ordering::Relaxed);
    let batches: Vec<TraceBatch> = (0..200).map(|_| realistic_batch()).collect();
    let encoded: usize = batches.iter().map(TraceBatch::size_hint).sum();
    let spans = batches.len() * SPANS_PER_BATCH;
    rt.block_on(async {
        for batch in batches {
            let mut out = Emitter::default();
            let mut dropped = Dropped::default();
            sampler
                .process(batch, &mut out, &mut dropped)
                .await
                .expect("never refuses");
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    });
    let held = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "buffered {spans} spans: {} B heap per span, {} B encoded per span, ratio {:.2}",
        held / spans as isize,
        encoded / spans,
        held as f64 / encoded as f64
    );
}

fn main() {
    report_memory();
    divan::main();
}
