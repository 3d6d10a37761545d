//! The `nop` exporter: accepts every batch and discards it, for benchmarks and tests.

mod config;
#[cfg(test)]
mod tests;

pub use config::NopConfig;

use async_trait::async_trait;

use crate::component::{
    BuildContext, ComponentError, ExportError, Exporter, ExporterFactory, TraceBatch,
};

/// Builds `nop` exporters.
pub struct NopExporterFactory;

impl ExporterFactory for NopExporterFactory {
    type Config = NopConfig;
    const TYPE: &'static str = "nop";
    const EXAMPLE_YAML: &'static str = "nop: {}\n";

    fn build(
        &self,
        _config: NopConfig,
        _ctx: &BuildContext,
    ) -> Result<Box<dyn Exporter>, ComponentError> {
        Ok(Box::new(NopExporter))
    }
}

/// Reports every batch as delivered; the host counts its spans as sent.
pub struct NopExporter;

#[async_trait]
impl Exporter for NopExporter {
    async fn export(&mut self, _batch: &TraceBatch) -> Result<(), ExportError> {
        Ok(())
    }

    fn reads_spans(&self) -> bool {
        false
    }
}
