//! The `otlp` receiver: OTLP traces over gRPC (tonic) and HTTP (protobuf or JSON, gzip).

mod codec;
pub mod config;
mod grpc;
mod http_server;
mod server;
mod tenant;

#[cfg(test)]
mod tests;

use crate::component::{BuildContext, ComponentError, Receiver, ReceiverFactory};

pub use config::{AuthConfig, GrpcConfig, HttpConfig, OtlpReceiverConfig, Protocols, TenantConfig};
pub use grpc::{EXPORT_PATH, SERVICE_NAME};
pub use server::{BoundOtlp, OtlpReceiver};

/// Builds `otlp` receivers.
pub struct OtlpReceiverFactory;

impl ReceiverFactory for OtlpReceiverFactory {
    type Config = OtlpReceiverConfig;
    const TYPE: &'static str = "otlp";
    const EXAMPLE_YAML: &'static str = "otlp:
  protocols:
    grpc:
      endpoint: 127.0.0.1:4317
      max_recv_msg_size: 16MiB
    http:
      endpoint: 127.0.0.1:4318
      traces_url_path: /v1/traces
      max_request_body_size: 16MiB
  auth:
    api_keys:
      \"${env:SPANLINE_ACME_KEY:-key-acme-example}\": acme
    required: false
  tenant:
    header: X-Scope-OrgID
    from_resource_attribute: true
    default_tenant: default
";

    fn build(
        &self,
        config: Self::Config,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Receiver>, ComponentError> {
        Ok(Box::new(OtlpReceiver::new(ctx.id.clone(), config)?))
    }
}
