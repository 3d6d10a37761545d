//! The `tenant_quota` processor: per-tenant rate, trace and span limits, so one tenant cannot hurt the rest.

mod config;
mod processor;
mod state;
#[cfg(test)]
mod tests;
mod truncate;

pub use config::{Action, LimitOverrides, Limits, TenantQuotaConfig};
pub use processor::{REASON_QUOTA, REASON_TRACE_TOO_LARGE, TENANT_LABEL_LIMIT, TenantQuota};

use crate::component::{BuildContext, ComponentError, Processor, ProcessorFactory};

/// Builds `tenant_quota` processors.
pub struct TenantQuotaProcessorFactory;

impl ProcessorFactory for TenantQuotaProcessorFactory {
    type Config = TenantQuotaConfig;
    const TYPE: &'static str = "tenant_quota";
    const EXAMPLE_YAML: &'static str = "tenant_quota:
  action: refuse
  defaults:
    rate_limit_spans: 100000
    burst_size_spans: 200000
    rate_limit_bytes: 50MiB
    burst_size_bytes: 100MiB
    max_spans_per_trace: 10000
    max_bytes_per_trace: 5MiB
    max_attributes_per_span: 128
    max_attribute_value_bytes: 4KiB
    max_events_per_span: 128
  tenants:
    noisy:
      rate_limit_spans: 20000
      burst_size_spans: 20000
  trace_window: 30s
  max_traces: 100000
  max_tenants: 10000
";

    fn build(
        &self,
        config: TenantQuotaConfig,
        _ctx: &BuildContext,
    ) -> Result<Box<dyn Processor>, ComponentError> {
        Ok(Box::new(TenantQuota::new(&config)))
    }
}
