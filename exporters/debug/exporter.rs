//! Writes spans to the log through `tracing`, sampled per second like the Collector's.

use std::time::Duration;

use async_trait::async_trait;
use metrics::{Counter, counter};
use tokio::time::Instant;

use super::config::{DebugConfig, Verbosity};
use super::format;
use crate::component::names::DEBUG_EXPORTER_SUPPRESSED_LOGS;
use crate::component::{ExportError, Exporter, TraceBatch};

/// Lets the first `initial` lines of each second through, then every `thereafter`-th.
#[derive(Debug)]
pub struct Sampler {
    initial: u64,
    thereafter: u64,
    window_start: Option<Instant>,
    seen: u64,
}

impl Sampler {
    pub fn new(initial: u64, thereafter: u64) -> Self {
        Self {
            initial,
            thereafter,
            window_start: None,
            seen: 0,
        }
    }

    /// Whether the next line may be written now.
    pub fn allow(&mut self, now: Instant) -> bool {
        let expired = self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1));
        if expired {
            self.window_start = Some(now);
            self.seen = 0;
        }
        self.seen += 1;
        if self.seen <= self.initial {
            return true;
        }
        self.thereafter > 0 && (self.seen - self.initial).is_multiple_of(self.thereafter)
    }
}

/// The `debug` exporter.
pub struct DebugExporter {
    id: String,
    verbosity: Verbosity,
    sampler: Sampler,
    suppressed: Counter,
}

impl DebugExporter {
    pub fn new(config: &DebugConfig, id: &str) -> Self {
        Self {
            id: id.to_string(),
            verbosity: config.verbosity,
            sampler: Sampler::new(config.sampling_initial, config.sampling_thereafter),
            suppressed: counter!(DEBUG_EXPORTER_SUPPRESSED_LOGS, "exporter" => id.to_string()),
        }
    }

    /// Writes one line if the sampler allows it, else counts it as suppressed.
    fn line(&mut self, render: impl FnOnce() -> String) {
        if self.sampler.allow(Instant::now()) {
            tracing::info!(exporter = %self.id, "{}", render());
        } else {
            self.suppressed.increment(1);
        }
    }

    fn log_spans(&mut self, batch: &TraceBatch) {
        for rs in batch.resource_spans() {
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    match self.verbosity {
                        Verbosity::Detailed => self.line(|| format::span_detail(rs, ss, span)),
                        _ => self.line(|| format::span_line(rs, span)),
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Exporter for DebugExporter {
    async fn export(&mut self, batch: &TraceBatch) -> Result<(), ExportError> {
        match self.verbosity {
            Verbosity::Basic => self.line(|| format::batch_summary(batch)),
            Verbosity::Normal | Verbosity::Detailed => self.log_spans(batch),
        }
        Ok(())
    }
}
