//! The batch processor's configuration, in the Collector's key names.

use crate::component::{ComponentConfig, HumanDuration, Problems};

/// How spans are grouped into batches before they reach the exporters.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Spans: a batch is sent as soon as it holds at least this many.
    pub send_batch_size: usize,
    /// Spans: the most one sent batch may hold; 0 means no limit.
    pub send_batch_max_size: usize,
    /// Duration: how long the oldest held span may wait; 0 sends every batch immediately.
    pub timeout: HumanDuration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: HumanDuration::from_millis(200),
        }
    }
}

impl ComponentConfig for BatchConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.send_batch_size == 0 {
            problems.error("send_batch_size", "must be greater than 0, got 0");
        }
        if self.send_batch_max_size != 0 && self.send_batch_max_size < self.send_batch_size {
            problems.error(
                "send_batch_max_size",
                format!(
                    "must be 0 (no limit) or at least send_batch_size ({}), got {}",
                    self.send_batch_size, self.send_batch_max_size
                ),
            );
        }
    }
}

impl BatchConfig {
    /// The largest batch to emit at once: the configured maximum, or unlimited.
    pub fn max_spans(&self) -> usize {
        if self.send_batch_max_size == 0 {
            usize::MAX
        } else {
            self.send_batch_max_size
        }
    }
}
