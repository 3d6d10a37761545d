//! A custom spanline distribution: the built-in components plus a processor of our own.
//!
//! Run it like the `spanline` binary, with a config that uses the new `stamp` processor:
//!
//! ```text
//! cargo run --example custom_processor -- run --config examples/custom_processor.yaml
//! cargo run --example custom_processor -- components --kind processor
//! ```

use async_trait::async_trait;
use serde::Deserialize;
use spanline::component::{
    AnyValue, BuildContext, ComponentConfig, ComponentError, Dropped, Emitter, KeyValue, Problems,
    ProcessError, Processor, ProcessorFactory, TraceBatch, any_value,
};
use spanline::registry::Registry;

/// `stamp`: adds one attribute to every span, e.g. the region this agent runs in.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct StampConfig {
    /// The attribute key to set.
    key: String,
    /// The value to set it to.
    value: String,
}

impl Default for StampConfig {
    fn default() -> Self {
        Self {
            key: "collector.region".to_string(),
            value: String::new(),
        }
    }
}

impl ComponentConfig for StampConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.key.is_empty() {
            problems.error("key", "must not be empty");
        }
        if self.value.is_empty() {
            problems.error("value", "must not be empty");
        }
    }
}

struct StampFactory;

impl ProcessorFactory for StampFactory {
    type Config = StampConfig;
    const TYPE: &'static str = "stamp";
    const EXAMPLE_YAML: &'static str = "stamp:\n  key: collector.region\n  value: eu-west-1\n";

    fn build(
        &self,
        config: StampConfig,
        _ctx: &BuildContext,
    ) -> Result<Box<dyn Processor>, ComponentError> {
        Ok(Box::new(Stamp { config }))
    }
}

struct Stamp {
    config: StampConfig,
}

#[async_trait]
impl Processor for Stamp {
    async fn process(
        &mut self,
        mut batch: TraceBatch,
        out: &mut Emitter,
        _dropped: &mut Dropped,
    ) -> Result<(), ProcessError> {
        for resource_spans in batch.resource_spans_mut() {
            for scope_spans in &mut resource_spans.scope_spans {
                for span in &mut scope_spans.spans {
                    span.attributes.push(KeyValue {
                        key: self.config.key.clone(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(self.config.value.clone())),
                        }),
                        ..Default::default()
                    });
                }
            }
        }
        batch.remeasure();
        out.emit(batch);
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let registry = Registry::builtin().with_processor(StampFactory);
    spanline::cli::main_with(registry)
}
