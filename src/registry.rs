//! The one explicit list of built-in components, and lookups by kind and type.

use std::sync::Arc;

use crate::component::{ExporterFactory, Kind, ProcessorFactory, ReceiverFactory};
use crate::factory::{AnyFactory, ExporterEntry, FactoryRef, ProcessorEntry, ReceiverEntry};

/// Every factory the host can build from config.
#[derive(Clone, Default)]
pub struct Registry {
    factories: Vec<FactoryRef>,
}

impl Registry {
    /// An empty registry, for distributions that choose their own components.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The built-in components, one line each.
    pub fn builtin() -> Self {
        use crate::{exporters, processors, receivers};
        Self::empty()
            .with_receiver(receivers::otlp::OtlpReceiverFactory)
            .with_processor(processors::batch::BatchProcessorFactory)
            .with_processor(processors::memory_limiter::MemoryLimiterProcessorFactory)
            .with_processor(processors::attributes::AttributesProcessorFactory)
            .with_processor(processors::sanitizer::SanitizerProcessorFactory)
            .with_processor(processors::tenant_quota::TenantQuotaProcessorFactory)
            .with_processor(processors::tail_sampling::TailSamplingProcessorFactory)
            .with_exporter(exporters::debug::DebugExporterFactory)
            .with_exporter(exporters::nop::NopExporterFactory)
            .with_exporter(exporters::otlp::OtlpExporterFactory)
            .with_exporter(exporters::trace_store::TraceStoreExporterFactory)
    }

    pub fn with_receiver<F: ReceiverFactory>(mut self, factory: F) -> Self {
        self.add(Arc::new(ReceiverEntry(factory)));
        self
    }

    pub fn with_processor<F: ProcessorFactory>(mut self, factory: F) -> Self {
        self.add(Arc::new(ProcessorEntry(factory)));
        self
    }

    pub fn with_exporter<F: ExporterFactory>(mut self, factory: F) -> Self {
        self.add(Arc::new(ExporterEntry(factory)));
        self
    }

    /// Adds a factory, replacing a built-in one of the same kind and type.
    fn add(&mut self, factory: FactoryRef) {
        self.factories
            .retain(|f| !(f.kind() == factory.kind() && f.type_name() == factory.type_name()));
        self.factories.push(factory);
    }

    pub fn get(&self, kind: Kind, type_name: &str) -> Option<&FactoryRef> {
        self.factories
            .iter()
            .find(|f| f.kind() == kind && f.type_name() == type_name)
    }

    /// The type names of one kind, sorted, for "unknown type" messages.
    pub fn types(&self, kind: Kind) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .factories
            .iter()
            .filter(|f| f.kind() == kind)
            .map(|f| f.type_name())
            .collect();
        names.sort_unstable();
        names
    }

    /// Every factory, by kind then type.
    pub fn all(&self) -> Vec<&dyn AnyFactory> {
        let mut all: Vec<&dyn AnyFactory> = self.factories.iter().map(|f| f.as_ref()).collect();
        all.sort_by_key(|f| (f.kind(), f.type_name()));
        all
    }
}
