//! Refuses data while the process's resident memory is above the soft limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use metrics::{Gauge, gauge};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::Limits;
use super::memory::RssSource;
use crate::component::names::{MEMORY_LIMITER_REFUSING, MEMORY_LIMITER_RSS};
use crate::component::{
    ComponentError, Dropped, Emitter, ProcessError, Processor, Refusal, RefusalReason, TraceBatch,
};

const MIB: f64 = 1024.0 * 1024.0;

/// What the background check shares with the hot path.
struct State {
    rss: AtomicU64,
    refusing: AtomicBool,
}

/// The checker that runs every `check_interval` in the background.
struct Checker {
    source: Arc<dyn RssSource>,
    limits: Limits,
    state: Arc<State>,
    rss_gauge: Gauge,
    refusing_gauge: Gauge,
    id: String,
}

impl Checker {
    /// Measures once and updates the shared state, logging when refusing starts or stops.
    fn check(&self) {
        let rss = match self.source.rss_bytes() {
            Ok(rss) => rss,
            Err(error) => {
                // Keep the last verdict: a failed read is no evidence either way.
                tracing::warn!(processor = %self.id, %error, "memory limiter cannot measure memory");
                return;
            }
        };
        let refusing = rss > self.limits.soft();
        self.state.rss.store(rss, Ordering::Relaxed);
        let was = self.state.refusing.swap(refusing, Ordering::Relaxed);
        self.rss_gauge.set(rss as f64);
        self.refusing_gauge.set(if refusing { 1.0 } else { 0.0 });
        if refusing && !was {
            tracing::warn!(processor = %self.id, rss_mib = rss as f64 / MIB, soft_limit_mib = self.limits.soft() as f64 / MIB,
                "memory usage above the soft limit: refusing data");
        } else if was && !refusing {
            tracing::info!(processor = %self.id, rss_mib = rss as f64 / MIB, "memory usage back below the soft limit: accepting data");
        }
    }

    async fn run(self, interval: Duration, stop: CancellationToken) {
        // Validation forbids 0, but tokio's interval would panic on it.
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => self.check(),
            }
        }
    }
}

/// One pipeline's memory limiter.
pub struct MemoryLimiter {
    checker: Option<Checker>,
    interval: Duration,
    retry_after: Duration,
    limits: Limits,
    state: Arc<State>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl MemoryLimiter {
    /// A limiter measuring with `source`; `start` launches the periodic check.
    pub fn new(
        id: &str,
        pipeline: &str,
        limits: Limits,
        interval: Duration,
        retry_after: Duration,
        source: Arc<dyn RssSource>,
    ) -> Self {
        let labels = [
            ("processor", id.to_string()),
            ("pipeline", pipeline.to_string()),
        ];
        let state = Arc::new(State {
            rss: AtomicU64::new(0),
            refusing: AtomicBool::new(false),
        });
        let checker = Checker {
            source,
            limits,
            state: Arc::clone(&state),
            rss_gauge: gauge!(MEMORY_LIMITER_RSS, &labels),
            refusing_gauge: gauge!(MEMORY_LIMITER_REFUSING, &labels),
            id: id.to_string(),
        };
        Self {
            checker: Some(checker),
            interval,
            retry_after,
            limits,
            state,
            stop: CancellationToken::new(),
            task: None,
        }
    }

    fn refusal(&self) -> Refusal {
        let rss = self.state.rss.load(Ordering::Relaxed) as f64 / MIB;
        let message = format!(
            "memory usage {rss:.1} MiB is above the soft limit {:.1} MiB (limit {:.1} MiB, spike {:.1} MiB); retry later",
            self.limits.soft() as f64 / MIB,
            self.limits.limit as f64 / MIB,
            self.limits.spike as f64 / MIB,
        );
        Refusal::new(RefusalReason::MemoryLimit, message).with_retry_after(self.retry_after)
    }
}

#[async_trait]
impl Processor for MemoryLimiter {
    fn reads_spans(&self) -> bool {
        false
    }

    async fn start(&mut self) -> Result<(), ComponentError> {
        let Some(checker) = self.checker.take() else {
            return Ok(()); // already started
        };
        // Measure before the first batch so a process already over the limit refuses at once.
        checker.check();
        let stop = self.stop.clone();
        self.task = Some(tokio::spawn(checker.run(self.interval, stop)));
        Ok(())
    }

    async fn process(
        &mut self,
        batch: TraceBatch,
        out: &mut Emitter,
        _dropped: &mut Dropped,
    ) -> Result<(), ProcessError> {
        if self.state.refusing.load(Ordering::Relaxed) {
            return Err(self.refusal().into());
        }
        out.emit(batch);
        Ok(())
    }

    async fn shutdown(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        // A limiter dropped without shutdown (a replaced pipeline) must not leave its task behind.
        self.stop.cancel();
    }
}
