//! CPU cost of the trace store's two stages on `spanline loadgen`'s spans, without sockets or
//! the write-ahead log: buffering (each request's spans located and partitioned) and writing
//! blocks (sorting, the span table's columns built from the bytes and each trace summarised
//! on the way, Parquet encoding of both tables, index). Prints µs per span for each, spans/s per core for both together, and bytes per
//! span stored. Run with `cargo bench --bench store`; `SPANLINE_BENCH_REQUESTS` (default
//! 400, 500 spans each) sets the amount, `SPANLINE_BENCH_TENANTS` (default 1) how many
//! tenants (and so blocks) they are spread over, `SPANLINE_BENCH_DIR` a directory to keep
//! the blocks in (to inspect their columns) instead of memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use prost::Message;
use spanline::exporters::trace_store::TraceStoreConfig;
use spanline::loadgen::{LoadgenArgs, sample_requests};
use spanline::store::layout::Layout;
use spanline::store::writer::{BlockWriter, stage, write_block};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU time of this process (all threads): the encoder runs on tokio's blocking pool.
fn cpu_time() -> Duration {
    // SAFETY: rusage is plain old data (all-zero is valid) and getrusage fills it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn main() {
    spanline::allocator::tune();
    let requests: usize = std::env::var("SPANLINE_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    // One tenant by default: every span lands in one block near max_block_bytes, as a busy
    // tenant's blocks are; more tenants cut smaller blocks (see max_buffer_bytes).
    let tenants: usize = std::env::var("SPANLINE_BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut args = LoadgenArgs::new("http://unused");
    args.tenants = tenants;
    let batches = sample_requests(&args, requests);
    let spans: usize = batches
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum();
    let otlp: usize = batches.iter().map(|r| r.encoded_len()).sum();
    // Requests reach the store as the bytes they arrived in.
    let encoded: Vec<Bytes> = batches
        .iter()
        .map(|r| Bytes::from(r.encode_to_vec()))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    // The exporter's defaults: block size, row groups, zstd level, indexed attributes.
    let config = TraceStoreConfig::default().writer();
    for round in 0..3 {
        let mut writer = BlockWriter::new(config.clone());
        let (wall, cpu) = (Instant::now(), cpu_time());
        for (seq, request) in encoded.iter().enumerate() {
            let staged =
                stage(std::slice::from_ref(request), request.len() as u64).expect("staged");
            writer.insert(staged, seq as u64 + 1, tokio::time::Instant::now());
        }
        let (buffer_wall, buffer_cpu) = (wall.elapsed(), cpu_time() - cpu);
        // What the open buffers hold in memory: span bytes and where each span is, and the
        // process's peak.
        let columns: usize = (0..tenants.max(1))
            .flat_map(|t| writer.live_rows(&tenant_name(&args, t)))
            .map(|chunk| chunk.memory_size())
            .sum();
        // SPANLINE_BENCH_DIR keeps the blocks on disk, to inspect their columns.
        let store: Arc<dyn ObjectStore> = match std::env::var("SPANLINE_BENCH_DIR") {
            Ok(dir) => Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(dir).expect("bench dir"),
            ),
            Err(_) => Arc::new(InMemory::new()),
        };
        let layout = Layout::default();
        let (wall, cpu) = (Instant::now(), cpu_time());
        let sealed = writer.seal_due(tokio::time::Instant::now(), true, 0);
        let blocks = sealed.len();
        let mut stored = 0u64;
        runtime.block_on(async {
            for block in sealed {
                let meta = write_block(&store, &layout, &config, block)
                    .await
                    .map_err(|e| e.0)
                    .expect("block written");
                stored += meta.spans_bytes + meta.traces_bytes;
            }
        });
        let (write_wall, write_cpu) = (wall.elapsed(), cpu_time() - cpu);
        let per_span = |d: Duration| d.as_secs_f64() * 1e6 / spans as f64;
        let total = per_span(buffer_cpu) + per_span(write_cpu);
        println!(
            "round {round}: buffered {:.0} MiB for {:.0} MiB of OTLP ({:.1}x); peak RSS {:.0} MiB",
            columns as f64 / (1 << 20) as f64,
            otlp as f64 / (1 << 20) as f64,
            columns as f64 / otlp as f64,
            peak_rss_mib(),
        );
        println!(
            "round {round}: {spans} spans ({:.0} OTLP bytes each) in {blocks} blocks: buffer {:.2} µs/span CPU ({:.2} wall), write {:.2} µs/span CPU ({:.2} wall); {:.0} spans/s per core; {:.1} bytes per span stored",
            otlp as f64 / spans as f64,
            per_span(buffer_cpu),
            per_span(buffer_wall),
            per_span(write_cpu),
            per_span(write_wall),
            1e6 / total,
            stored as f64 / spans as f64,
        );
    }
}

/// The tenant loadgen puts on its `index`th request stream (as `sample_requests` does).
fn tenant_name(args: &LoadgenArgs, index: usize) -> String {
    if args.tenants == 0 {
        spanline::component::tenant::DEFAULT_TENANT.to_string()
    } else {
        format!("tenant-{index}")
    }
}

/// The process's peak resident set, from /proc (0 where there is none).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
