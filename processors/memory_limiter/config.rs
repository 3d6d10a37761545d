//! The memory limiter's configuration, in the Collector's key names.

use std::time::Duration;

use crate::component::{ComponentConfig, HumanDuration, Problems};

/// When to refuse data because the process uses too much memory.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryLimiterConfig {
    /// Duration: how often the process's resident memory is measured.
    pub check_interval: HumanDuration,
    /// MiB: the memory limit as an absolute size; set this or `limit_percentage`.
    pub limit_mib: Option<u64>,
    /// MiB: headroom below `limit_mib` kept for spikes between checks; default 20% of the limit.
    pub spike_limit_mib: Option<u64>,
    /// Percent (1-100) of the memory available (cgroup limit, else total RAM); set this or `limit_mib`.
    pub limit_percentage: Option<u64>,
    /// Percent of the memory available kept for spikes; default 20% of `limit_percentage`.
    pub spike_limit_percentage: Option<u64>,
}

impl Default for MemoryLimiterConfig {
    fn default() -> Self {
        Self {
            check_interval: HumanDuration::from_secs(1),
            limit_mib: None,
            spike_limit_mib: None,
            limit_percentage: None,
            spike_limit_percentage: None,
        }
    }
}

impl ComponentConfig for MemoryLimiterConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.check_interval.is_zero() {
            problems.error("check_interval", "must be greater than 0, got 0");
        }
        match (self.limit_mib, self.limit_percentage) {
            (Some(_), Some(_)) => problems.error(
                "limit_mib",
                "set exactly one of limit_mib and limit_percentage, got both",
            ),
            (None, None) => problems.error(
                "limit_mib",
                "set exactly one of limit_mib and limit_percentage, got neither",
            ),
            (Some(limit), None) => check_mib(problems, limit, self.spike_limit_mib),
            (None, Some(limit)) => check_percentage(problems, limit, self.spike_limit_percentage),
        }
        if self.limit_mib.is_some() && self.spike_limit_percentage.is_some() {
            problems.error(
                "spike_limit_percentage",
                "only applies with limit_percentage; use spike_limit_mib with limit_mib",
            );
        }
        if self.limit_percentage.is_some() && self.spike_limit_mib.is_some() {
            problems.error(
                "spike_limit_mib",
                "only applies with limit_mib; use spike_limit_percentage with limit_percentage",
            );
        }
    }
}

fn check_mib(problems: &mut Problems, limit: u64, spike: Option<u64>) {
    if limit == 0 {
        problems.error("limit_mib", "must be greater than 0, got 0");
    }
    if let Some(spike) = spike
        && limit > 0
        && spike >= limit
    {
        problems.error(
            "spike_limit_mib",
            format!("must be less than limit_mib ({limit}), got {spike}"),
        );
    }
}

fn check_percentage(problems: &mut Problems, limit: u64, spike: Option<u64>) {
    if limit == 0 || limit > 100 {
        problems.error(
            "limit_percentage",
            format!("must be between 1 and 100, got {limit}"),
        );
    }
    if let Some(spike) = spike
        && spike >= limit
    {
        problems.error(
            "spike_limit_percentage",
            format!("must be less than limit_percentage ({limit}), got {spike}"),
        );
    }
}

/// The limits in bytes, once the memory available is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub limit: u64,
    pub spike: u64,
}

impl Limits {
    /// Resolves the configured limits; `available` is only used for the percentages.
    pub fn resolve(config: &MemoryLimiterConfig, available: u64) -> Limits {
        const MIB: u64 = 1024 * 1024;
        let (limit, spike) = match config.limit_mib {
            Some(mib) => (mib * MIB, config.spike_limit_mib.map(|s| s * MIB)),
            None => {
                let percent = config.limit_percentage.unwrap_or(100);
                let spike = config.spike_limit_percentage.map(|s| available / 100 * s);
                (available / 100 * percent, spike)
            }
        };
        Limits {
            limit,
            spike: spike.unwrap_or(limit / 5),
        }
    }

    /// Above this much resident memory, data is refused.
    pub fn soft(self) -> u64 {
        self.limit.saturating_sub(self.spike)
    }
}

impl MemoryLimiterConfig {
    /// Percentages need the memory available; absolute limits do not.
    pub fn needs_available_memory(&self) -> bool {
        self.limit_mib.is_none()
    }

    /// The `retry_after` given to refused senders: the check interval, in whole seconds.
    pub fn retry_after(&self) -> Duration {
        let interval = self.check_interval.get();
        let secs = interval.as_secs() + u64::from(interval.subsec_nanos() > 0);
        Duration::from_secs(secs.max(1))
    }
}
