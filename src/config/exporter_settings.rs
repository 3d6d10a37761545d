//! Host-owned exporter settings: `sending_queue`, `retry_on_failure` and `timeout`.

use serde::Deserialize;

use super::units::{ByteSize, HumanDuration};
use crate::component::Problems;

/// The keys of an exporter's YAML that belong to the host's runner, not to the exporter.
pub const RUNNER_KEYS: [&str; 3] = ["sending_queue", "retry_on_failure", "timeout"];

/// How the host drives one exporter.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExporterSettings {
    pub sending_queue: QueueSettings,
    pub retry_on_failure: RetrySettings,
    /// Deadline of one export attempt.
    pub timeout: HumanDuration,
}

impl Default for ExporterSettings {
    fn default() -> Self {
        Self {
            sending_queue: QueueSettings::default(),
            retry_on_failure: RetrySettings::default(),
            timeout: HumanDuration::from_secs(5),
        }
    }
}

/// The bounded queue in front of an exporter. When it is full, pipelines feeding it refuse
/// new data, so receivers push back on senders.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// false: at most one batch waits (the pipeline refuses while the exporter is busy).
    pub enabled: bool,
    /// Maximum batches waiting.
    pub queue_size: usize,
    /// Maximum bytes waiting (protobuf size of the batches).
    pub queue_size_bytes: ByteSize,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            queue_size: 1000,
            queue_size_bytes: ByteSize::mib(32),
        }
    }
}

/// Exponential backoff with jitter for retryable failures.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySettings {
    pub enabled: bool,
    /// Wait before the first retry.
    pub initial_interval: HumanDuration,
    /// Each wait is randomised by ± this fraction.
    pub randomization_factor: f64,
    /// Each wait is this many times the previous one.
    pub multiplier: f64,
    /// Upper bound of one wait.
    pub max_interval: HumanDuration,
    /// Give up on a batch after this long (0: never give up).
    pub max_elapsed_time: HumanDuration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_interval: HumanDuration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: HumanDuration::from_secs(30),
            max_elapsed_time: HumanDuration::from_secs(300),
        }
    }
}

impl ExporterSettings {
    pub fn validate(&self, problems: &mut Problems) {
        let queue = &self.sending_queue;
        if queue.enabled && queue.queue_size == 0 {
            problems.error("sending_queue::queue_size", "must be greater than 0");
        }
        if queue.enabled && queue.queue_size_bytes.bytes() == 0 {
            problems.error("sending_queue::queue_size_bytes", "must be greater than 0");
        }
        let retry = &self.retry_on_failure;
        if retry.enabled {
            if retry.initial_interval.is_zero() {
                problems.error(
                    "retry_on_failure::initial_interval",
                    "must be greater than 0",
                );
            }
            if !(0.0..=1.0).contains(&retry.randomization_factor) {
                problems.error(
                    "retry_on_failure::randomization_factor",
                    format!(
                        "must be between 0 and 1, got {}",
                        retry.randomization_factor
                    ),
                );
            }
            if retry.multiplier < 1.0 {
                problems.error(
                    "retry_on_failure::multiplier",
                    format!("must be at least 1, got {}", retry.multiplier),
                );
            }
            if retry.max_interval < retry.initial_interval {
                problems.error(
                    "retry_on_failure::max_interval",
                    format!(
                        "must be at least initial_interval ({})",
                        retry.initial_interval
                    ),
                );
            }
        }
        if self.timeout.is_zero() {
            problems.error("timeout", "must be greater than 0");
        }
    }

    /// (batches, bytes) the queue holds at most.
    pub fn queue_capacity(&self) -> (usize, usize) {
        if self.sending_queue.enabled {
            (
                self.sending_queue.queue_size,
                self.sending_queue.queue_size_bytes.as_usize(),
            )
        } else {
            (1, usize::MAX)
        }
    }
}
