//! The `sanitizer` processor: masks secrets (cards, emails, tokens, keys, SQL literals, URL
//! query values) in every attribute and name before anything is stored or forwarded.

mod config;
mod detectors;
mod mask;
mod processor;
mod sql;
#[cfg(test)]
mod tests;
mod url;

pub use config::{Detector, HASH_MASK, SanitizerConfig};
pub use processor::{MASKED_COUNT_KEY, MASKED_KEYS_KEY, SanitizerProcessor};

use crate::component::{BuildContext, ComponentError, Processor, ProcessorFactory};

/// Builds `sanitizer` processors.
pub struct SanitizerProcessorFactory;

impl ProcessorFactory for SanitizerProcessorFactory {
    type Config = SanitizerConfig;
    const TYPE: &'static str = "sanitizer";
    const EXAMPLE_YAML: &'static str = r#"sanitizer:
  detectors: [credit_card, email, jwt, bearer_token, aws_access_key]
  blocked_values: ["(?i)password=\\S+"]
  blocked_key_patterns: ["(?i)^(.*\\.)?(password|secret|api_key)$"]
  allowed_values: ["@example\\.com$"]
  db_statement: true
  url_query: true
  mask: "****"
  summary: true
"#;

    fn build(
        &self,
        config: SanitizerConfig,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Processor>, ComponentError> {
        Ok(Box::new(SanitizerProcessor::new(&config, &ctx.id)?))
    }
}
