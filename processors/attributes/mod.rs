//! The `attributes` processor: per-scope allowlists (fail closed) and the Collector's actions.

mod actions;
mod config;
mod matcher;
mod processor;
#[cfg(test)]
mod tests;

pub use config::{
    ActionConfig, ActionKind, Allowlists, AttributeMatch, AttributesConfig, ConvertedType,
    DisallowedAction, Literal, MatchConfig, MatchType, ScopeAllowlist,
};
pub use processor::{AttributesProcessor, PROTECTED_RESOURCE_KEYS};

use crate::component::{BuildContext, ComponentError, Processor, ProcessorFactory};

/// Builds `attributes` processors.
pub struct AttributesProcessorFactory;

impl ProcessorFactory for AttributesProcessorFactory {
    type Config = AttributesConfig;
    const TYPE: &'static str = "attributes";
    const EXAMPLE_YAML: &'static str = r#"attributes:
  hash_salt: "${env:SPANLINE_HASH_SALT:-change-me}"
  allowlist:
    resource:
      allowed_keys: ["service.*", "tenant.id", "deployment.environment", "k8s.*"]
    span:
      allowed_keys: ["http.*", "url.*", "db.system", "db.statement", "rpc.*", "error", "user.id"]
      action: hash
    event:
      allowed_keys: ["exception.*"]
  actions:
    - key: deployment.region
      value: eu-west-1
      action: insert
    - key: user.email
      action: delete
    - key: http.target
      pattern: ^/users/(?P<user_id>\d+)
      action: extract
    - key: http.status_code
      converted_type: int
      action: convert
  exclude:
    match_type: strict
    services: [healthcheck]
"#;

    fn build(
        &self,
        config: AttributesConfig,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Processor>, ComponentError> {
        Ok(Box::new(AttributesProcessor::new(&config, &ctx.id)?))
    }
}
