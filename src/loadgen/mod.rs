//! `spanline loadgen`: sends realistic synthetic OTLP traces to a collector and reports what it accepted.

mod generate;
mod pool;
mod report;
mod send;
mod topology;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use parking_lot::Mutex;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::units::HumanDuration;
use generate::GenParams;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use pool::{Encoding, Pool, PoolParams};
use report::Counters;
pub use report::LoadgenReport;
use send::Sender;

/// Distinct requests built before sending; more when there are more tenants (one tenant per request).
const POOL_SIZE: usize = 64;
const MAX_TENANTS: usize = 256;
/// Collectors refuse gRPC messages over 4 MiB by default; 8192 spans of ~500 B stay under it.
const MAX_BATCH_SPANS: usize = 8192;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The wire protocol to send with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// OTLP/gRPC (usually port 4317).
    Grpc,
    /// OTLP/HTTP to `/v1/traces` (usually port 4318).
    Http,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }
}

/// Send synthetic traces to an OTLP endpoint and report spans sent, acknowledged, refused and failed.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// Where to send, e.g. http://127.0.0.1:4317 (grpc) or http://127.0.0.1:4318 (http; /v1/traces is appended).
    #[arg(long)]
    pub endpoint: String,
    /// Wire protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    pub protocol: Protocol,
    /// Target rate in spans per second; 0 sends as fast as the server acknowledges.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// How long to send, e.g. 30s or 5m; 0 runs until Ctrl-C.
    #[arg(long, default_value = "30s", value_parser = HumanDuration::parse)]
    pub duration: HumanDuration,
    /// Spans in each trace.
    #[arg(long, default_value_t = 12)]
    pub spans_per_trace: usize,
    /// Number of tenants: resource attribute tenant.id and header X-Scope-OrgID tenant-0..N-1; 0 sends neither.
    #[arg(long, default_value_t = 10)]
    pub tenants: usize,
    /// Fraction of traces with an error (status ERROR on a span and its ancestors, plus an exception event).
    #[arg(long, default_value_t = 0.01)]
    pub error_rate: f64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Spans in each request.
    #[arg(long, default_value_t = 500)]
    pub batch_spans: usize,
    /// Compress requests with gzip (grpc: compressed per request by tonic; http: once, so trace ids repeat).
    #[arg(long)]
    pub gzip: bool,
    /// Send OTLP/JSON instead of protobuf (http only).
    #[arg(long)]
    pub json: bool,
    /// Seed of the trace generator, for reproducible request pools.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl LoadgenArgs {
    /// Arguments with the command line's defaults for `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> LoadgenArgs {
        LoadgenArgs {
            endpoint: endpoint.into(),
            protocol: Protocol::Grpc,
            rate: 0,
            duration: HumanDuration::from_secs(30),
            spans_per_trace: 12,
            tenants: 10,
            error_rate: 0.01,
            concurrency: 4,
            batch_spans: 500,
            gzip: false,
            json: false,
            seed: 1,
        }
    }

    /// Every problem with the arguments, one per line.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if !self.endpoint.starts_with("http://") {
            problems.push(format!(
                "--endpoint: must start with http://, got {:?}",
                self.endpoint
            ));
        }
        if self.spans_per_trace == 0 {
            problems.push("--spans-per-trace: must be greater than 0, got 0".to_string());
        }
        if !(1..=MAX_BATCH_SPANS).contains(&self.batch_spans) {
            problems.push(format!(
                "--batch-spans: must be between 1 and {MAX_BATCH_SPANS}, got {}",
                self.batch_spans
            ));
        }
        if !(1..=1024).contains(&self.concurrency) {
            problems.push(format!(
                "--concurrency: must be between 1 and 1024, got {}",
                self.concurrency
            ));
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            problems.push(format!(
                "--error-rate: must be between 0 and 1, got {}",
                self.error_rate
            ));
        }
        if self.tenants > MAX_TENANTS {
            problems.push(format!(
                "--tenants: must be at most {MAX_TENANTS}, got {}",
                self.tenants
            ));
        }
        if self.json && self.protocol == Protocol::Grpc {
            problems.push("--json: only applies to --protocol http".to_string());
        }
        if !problems.is_empty() {
            bail!("invalid loadgen arguments:\n  {}", problems.join("\n  "));
        }
        Ok(())
    }

    fn encoding(&self) -> Encoding {
        if self.json {
            Encoding::Json
        } else {
            Encoding::Protobuf
        }
    }

    fn pool_params(&self) -> PoolParams {
        let now_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        PoolParams {
            size: POOL_SIZE.max(self.tenants),
            batch_spans: self.batch_spans,
            tenants: self.tenants,
            encoding: self.encoding(),
            precompress: self.gzip && self.protocol == Protocol::Http,
            seed: self.seed,
            generator: GenParams {
                spans_per_trace: self.spans_per_trace,
                error_rate: self.error_rate,
                now_nanos,
            },
        }
    }
}

/// `count` requests as `spanline loadgen` with `args` sends them (same generator, tenants and
/// batch size), decoded: for benchmarks of one stage of the pipeline without a socket.
pub fn sample_requests(args: &LoadgenArgs, count: usize) -> Vec<ExportTraceServiceRequest> {
    let params = args.pool_params();
    let mut rng = rand::SeedableRng::seed_from_u64(params.seed);
    (0..count)
        .map(|index| {
            let tenant = (params.tenants > 0).then(|| format!("tenant-{}", index % params.tenants));
            let spans = pool::batch_of_traces(&mut rng, &params);
            topology::request(spans, tenant.as_deref(), index as u32 * 7919)
        })
        .collect()
}

/// Spaces requests evenly so spans/s matches `--rate`: a token bucket refilled per request, burst of one.
struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(rate: u64, batch_spans: usize) -> Option<Pacer> {
        (rate > 0).then(|| Pacer {
            interval: Duration::from_secs_f64(batch_spans as f64 / rate as f64),
            next: Mutex::new(Instant::now()),
        })
    }

    /// The instant the caller may send; a sender that fell behind does not get a burst to catch up.
    fn slot(&self) -> Instant {
        let mut next = self.next.lock();
        let slot = (*next).max(Instant::now());
        *next = slot + self.interval;
        slot
    }
}

/// What the workers share.
struct Shared {
    pool: Pool,
    counters: Counters,
    next_seq: AtomicU64,
    pacer: Option<Pacer>,
    stop: CancellationToken,
    /// When the pool's timestamps were taken: each request's timestamps move forward by the time since.
    pool_built: Instant,
}

/// Runs the load until `--duration` passes or Ctrl-C, then waits for requests in flight.
pub async fn run(args: LoadgenArgs) -> anyhow::Result<LoadgenReport> {
    args.validate()?;
    let params = args.pool_params();
    let pool_built = Instant::now();
    let pool = tokio::task::spawn_blocking(move || Pool::build(&params))
        .await
        .context("building the request pool failed")?;
    let sender = match args.protocol {
        Protocol::Grpc => Sender::grpc(&args.endpoint, args.gzip, REQUEST_TIMEOUT).await?,
        Protocol::Http => {
            Sender::http(&args.endpoint, args.encoding(), args.gzip, REQUEST_TIMEOUT)?
        }
    };
    let unique_trace_ids = pool.get(0).0.patch_count() > 0;
    let bytes_per_span = pool.bytes_per_span();
    let shared = Arc::new(Shared {
        pool,
        counters: Counters::default(),
        next_seq: AtomicU64::new(0),
        pacer: Pacer::new(args.rate, args.batch_spans),
        stop: CancellationToken::new(),
        pool_built,
    });
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..args.concurrency {
        workers.spawn(worker(Arc::clone(&shared), sender.clone()));
    }
    let progress = tokio::spawn({
        let shared = Arc::clone(&shared);
        async move { report::print_progress(&shared.counters, started, shared.stop.clone()).await }
    });
    let interrupted = wait_for_end(args.duration.get()).await;
    shared.stop.cancel();
    while workers.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let _ = progress.await;
    let totals = shared.counters.snapshot();
    Ok(LoadgenReport {
        protocol: args.protocol.as_str().to_string(),
        endpoint: args.endpoint,
        requests: totals.requests,
        spans_sent: totals.sent,
        spans_acked: totals.acked,
        spans_refused: totals.refused,
        spans_rejected: totals.rejected,
        spans_failed: totals.failed,
        elapsed,
        bytes_per_span,
        unique_trace_ids,
        first_error: shared.counters.first_error(),
        interrupted,
    })
}

/// Waits for the duration (forever if zero) or Ctrl-C; true if interrupted.
async fn wait_for_end(duration: Duration) -> bool {
    let timer = async {
        if duration.is_zero() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(duration).await;
    };
    // Without a signal handler (rare) the run still ends on time.
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = timer => false,
        _ = ctrl_c => true,
    }
}

/// Sends requests from the pool one after another until stopped; a request in flight finishes.
async fn worker(shared: Arc<Shared>, mut sender: Sender) {
    while !shared.stop.is_cancelled() {
        if let Some(pacer) = &shared.pacer {
            let slot = pacer.slot();
            tokio::select! {
                _ = tokio::time::sleep_until(slot) => {}
                _ = shared.stop.cancelled() => break,
            }
        }
        let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
        let (entry, pass) = shared.pool.get(seq);
        let shift = shared.pool_built.elapsed().as_nanos() as u64;
        let body = entry.render(pass, shift);
        shared
            .counters
            .sent
            .fetch_add(entry.spans, Ordering::Relaxed);
        let outcome = sender.send(body, entry.tenant.as_deref()).await;
        shared.counters.record(entry.spans, outcome);
    }
}
