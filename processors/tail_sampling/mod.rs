//! The `tail_sampling` processor: decides per whole trace which traces to keep, within a
//! memory budget in bytes.

mod bucket;
mod cache;
mod compile;
mod config;
#[cfg(test)]
mod host_tests;
mod metrics;
mod outbox;
mod policy;
mod processor;
mod shard;
#[cfg(test)]
mod tests;
mod trace;
mod tracestate;
mod validate;

pub use config::{PolicyConfig, TailSamplingConfig};
pub use processor::TailSampler;

use crate::component::{BuildContext, ComponentError, Processor, ProcessorFactory};

/// Builds `tail_sampling` processors.
pub struct TailSamplingProcessorFactory;

impl ProcessorFactory for TailSamplingProcessorFactory {
    type Config = TailSamplingConfig;
    const TYPE: &'static str = "tail_sampling";
    const EXAMPLE_YAML: &'static str = "\
tail_sampling:
  decision_wait: 10s
  decision_wait_after_root: 2s
  max_trace_age: 60s
  memory_limit: 256MiB
  max_trace_bytes: 16MiB
  decision_cache:
    sampled_entries: 100000
    not_sampled_entries: 100000
  tenants:
    premium:
      memory_limit: 64MiB
  policies:
    - name: errors
      type: status_code
      status_code: {status_codes: [ERROR]}
    - name: slow
      type: latency
      latency: {threshold_ms: 1000}
    - name: premium-slow
      type: tenant
      tenant:
        tenants: [premium]
        policies:
          - name: over-300ms
            type: latency
            latency: {threshold_ms: 300}
    - name: health-checks
      type: drop
      drop:
        drop_sub_policy:
          - name: health
            type: string_attribute
            string_attribute: {key: http.route, values: [/healthz, /readyz]}
    - name: baseline
      type: probabilistic
      probabilistic: {sampling_percentage: 5}
";

    fn build(
        &self,
        config: TailSamplingConfig,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Processor>, ComponentError> {
        let pipeline = ctx.pipeline.as_deref().unwrap_or("");
        let sampler = TailSampler::new(&config, &ctx.id, pipeline)
            .map_err(|message| ComponentError::other(&ctx.id, message))?;
        Ok(Box::new(sampler))
    }
}
