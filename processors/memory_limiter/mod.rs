//! The `memory_limiter` processor: refuses data while the process uses too much memory.

mod config;
mod limiter;
mod memory;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use config::{Limits, MemoryLimiterConfig};
pub use limiter::MemoryLimiter;
pub use memory::{MemoryError, ProcRss, RssSource, available_memory};

use crate::component::{BuildContext, ComponentError, Processor, ProcessorFactory};

/// Builds `memory_limiter` processors measuring the real resident memory.
pub struct MemoryLimiterProcessorFactory;

impl ProcessorFactory for MemoryLimiterProcessorFactory {
    type Config = MemoryLimiterConfig;
    const TYPE: &'static str = "memory_limiter";
    const EXAMPLE_YAML: &'static str =
        "memory_limiter:\n  check_interval: 1s\n  limit_mib: 1024\n  spike_limit_mib: 256\n";

    fn build(
        &self,
        config: MemoryLimiterConfig,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Processor>, ComponentError> {
        let available = if config.needs_available_memory() {
            available_memory().map_err(|e| ComponentError::other(&ctx.id, e.to_string()))?
        } else {
            0
        };
        let limiter = MemoryLimiter::new(
            &ctx.id,
            ctx.pipeline.as_deref().unwrap_or(""),
            Limits::resolve(&config, available),
            config.check_interval.get(),
            config.retry_after(),
            Arc::new(ProcRss),
        );
        Ok(Box::new(limiter))
    }
}
