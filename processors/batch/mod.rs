//! The `batch` processor: groups spans into larger batches by size or age.

mod config;
mod processor;
#[cfg(test)]
mod tests;

pub use config::BatchConfig;
pub use processor::BatchProcessor;

use crate::component::{BuildContext, ComponentError, Processor, ProcessorFactory};

/// Builds `batch` processors.
pub struct BatchProcessorFactory;

impl ProcessorFactory for BatchProcessorFactory {
    type Config = BatchConfig;
    const TYPE: &'static str = "batch";
    const EXAMPLE_YAML: &'static str =
        "batch:\n  send_batch_size: 8192\n  send_batch_max_size: 10000\n  timeout: 200ms\n";

    fn build(
        &self,
        config: BatchConfig,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Processor>, ComponentError> {
        let pipeline = ctx.pipeline.as_deref().unwrap_or("");
        Ok(Box::new(BatchProcessor::new(config, &ctx.id, pipeline)))
    }
}
