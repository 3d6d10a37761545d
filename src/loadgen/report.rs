//! Running counters, the once-a-second progress line and the final report.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::send::Outcome;

/// Span and request counts shared by the workers.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub refused: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    pub requests: AtomicU64,
    first_error: Mutex<Option<String>>,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub sent: u64,
    pub acked: u64,
    pub refused: u64,
    pub rejected: u64,
    pub failed: u64,
    pub requests: u64,
}

impl Counters {
    pub fn record(&self, spans: u64, outcome: Outcome) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Acked { rejected } => {
                let rejected = rejected.min(spans);
                self.acked.fetch_add(spans - rejected, Ordering::Relaxed);
                self.rejected.fetch_add(rejected, Ordering::Relaxed);
            }
            Outcome::Refused => {
                self.refused.fetch_add(spans, Ordering::Relaxed);
            }
            Outcome::Failed(message) => {
                self.failed.fetch_add(spans, Ordering::Relaxed);
                self.first_error.lock().get_or_insert(message);
            }
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            sent: self.sent.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().clone()
    }
}

/// One progress line: totals so far and the acknowledged rate over the last interval.
pub fn progress_line(
    elapsed: Duration,
    now: Snapshot,
    before: Snapshot,
    interval: Duration,
) -> String {
    let secs = interval.as_secs_f64().max(1e-9);
    let sent_rate = (now.sent - before.sent) as f64 / secs;
    let acked_rate = (now.acked - before.acked) as f64 / secs;
    format!(
        "loadgen {:>4.0}s  sent {}  acked {}  refused {}  failed {}  now {:.0} spans/s sent, {:.0} acked",
        elapsed.as_secs_f64(),
        now.sent,
        now.acked,
        now.refused,
        now.failed + now.rejected,
        sent_rate,
        acked_rate,
    )
}

/// Prints a progress line to stderr every second until `stop` fires.
pub async fn print_progress(
    counters: &Counters,
    started: Instant,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut before = counters.snapshot();
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now = counters.snapshot();
        let interval = last.elapsed();
        eprintln!(
            "{}",
            progress_line(started.elapsed(), now, before, interval)
        );
        before = now;
        last = Instant::now();
    }
}

/// What a run achieved. `Display` prints the totals, one `name: value` line each.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadgenReport {
    pub protocol: String,
    pub endpoint: String,
    pub requests: u64,
    pub spans_sent: u64,
    /// Spans the server accepted.
    pub spans_acked: u64,
    /// Spans refused for load (RESOURCE_EXHAUSTED / UNAVAILABLE, HTTP 429 / 503).
    pub spans_refused: u64,
    /// Spans rejected inside accepted requests (OTLP partial success).
    pub spans_rejected: u64,
    /// Spans in requests that failed otherwise (transport errors, timeouts, other statuses).
    pub spans_failed: u64,
    pub elapsed: Duration,
    /// Average bytes on the wire per span (after gzip, if enabled).
    pub bytes_per_span: f64,
    /// Whether trace ids change on each pass over the request pool.
    pub unique_trace_ids: bool,
    pub first_error: Option<String>,
    /// Whether the run was stopped early by Ctrl-C.
    pub interrupted: bool,
}

impl LoadgenReport {
    pub fn sent_per_sec(&self) -> f64 {
        self.spans_sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn acked_per_sec(&self) -> f64 {
        self.spans_acked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for LoadgenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stopped = if self.interrupted {
            " (interrupted)"
        } else {
            ""
        };
        writeln!(f, "loadgen {} {}{stopped}", self.protocol, self.endpoint)?;
        writeln!(
            f,
            "  elapsed:            {:.2}s",
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "  requests:           {}", self.requests)?;
        writeln!(
            f,
            "  spans sent:         {} ({:.0} spans/s)",
            self.spans_sent,
            self.sent_per_sec()
        )?;
        writeln!(
            f,
            "  spans acknowledged: {} ({:.0} spans/s)",
            self.spans_acked,
            self.acked_per_sec()
        )?;
        writeln!(f, "  spans refused:      {}", self.spans_refused)?;
        if self.spans_rejected > 0 {
            writeln!(f, "  spans rejected:     {}", self.spans_rejected)?;
        }
        writeln!(f, "  spans failed:       {}", self.spans_failed)?;
        let ids = if self.unique_trace_ids {
            "unique per pass"
        } else {
            "repeat every pass"
        };
        write!(
            f,
            "  bytes per span:     {:.0} (trace ids {ids})",
            self.bytes_per_span
        )?;
        if let Some(error) = &self.first_error {
            write!(f, "\n  first error:        {error}")?;
        }
        Ok(())
    }
}
