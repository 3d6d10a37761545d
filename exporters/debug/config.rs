//! The debug exporter's configuration, in the Collector's key names.

use crate::component::{ComponentConfig, Problems};

/// How much of each batch is written to the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One line per batch with resource and span counts.
    #[default]
    Basic,
    /// One line per span.
    Normal,
    /// Every field and attribute of every span.
    Detailed,
}

/// Logs spans through `tracing`, rate-limited so a flood cannot flood the log.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DebugConfig {
    /// basic | normal | detailed.
    pub verbosity: Verbosity,
    /// Log lines per second written before sampling starts.
    pub sampling_initial: u64,
    /// After `sampling_initial` lines in a second, write every Nth line; 0 writes no more that second.
    pub sampling_thereafter: u64,
}

impl Default for DebugConfig {
    fn default() -> Self {
        Self {
            verbosity: Verbosity::Basic,
            sampling_initial: 2,
            sampling_thereafter: 1,
        }
    }
}

impl ComponentConfig for DebugConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.sampling_initial == 0 && self.sampling_thereafter == 0 {
            problems.warning(
                "sampling_thereafter",
                "with sampling_initial 0 and sampling_thereafter 0 nothing is ever logged",
            );
        }
    }
}
