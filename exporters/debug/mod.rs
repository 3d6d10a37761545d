//! The `debug` exporter: logs spans for troubleshooting, rate-limited.

mod config;
mod exporter;
mod format;
#[cfg(test)]
mod tests;

pub use config::{DebugConfig, Verbosity};
pub use exporter::{DebugExporter, Sampler};

use crate::component::{BuildContext, ComponentError, Exporter, ExporterFactory};

/// Builds `debug` exporters.
pub struct DebugExporterFactory;

impl ExporterFactory for DebugExporterFactory {
    type Config = DebugConfig;
    const TYPE: &'static str = "debug";
    const EXAMPLE_YAML: &'static str =
        "debug:\n  verbosity: normal\n  sampling_initial: 5\n  sampling_thereafter: 200\n";

    fn build(
        &self,
        config: DebugConfig,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Exporter>, ComponentError> {
        Ok(Box::new(DebugExporter::new(&config, &ctx.id)))
    }
}
