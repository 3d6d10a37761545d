//! The `otlp` exporter: forwards spans to another collector over OTLP/gRPC.

mod codec;
mod config;
mod exporter;
#[cfg(test)]
mod tests;

pub use codec::RawRequestCodec;
pub use config::{Compression, OtlpExporterConfig, TlsConfig};
pub use exporter::{OtlpExporter, classify};

use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::component::{BuildContext, ComponentError, Exporter, ExporterFactory};

/// Builds `otlp` exporters.
pub struct OtlpExporterFactory;

impl ExporterFactory for OtlpExporterFactory {
    type Config = OtlpExporterConfig;
    const TYPE: &'static str = "otlp";
    const EXAMPLE_YAML: &'static str = "otlp:\n  endpoint: otel-gateway:4317\n  compression: gzip\n  headers:\n    x-scope-orgid: team-checkout\n  tls:\n    insecure: true\n";

    fn build(
        &self,
        config: OtlpExporterConfig,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Exporter>, ComponentError> {
        let fail = |message: String| ComponentError::other(&ctx.id, message);
        let endpoint = endpoint(&config).map_err(fail)?;
        let headers = headers(&config).map_err(fail)?;
        Ok(Box::new(OtlpExporter::new(
            &ctx.id,
            endpoint,
            config.compression,
            headers,
        )))
    }
}

/// The peer's endpoint with TLS set up; reads the certificate files, so it runs at build.
fn endpoint(config: &OtlpExporterConfig) -> Result<Endpoint, String> {
    let uri = config.uri();
    let endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|e| format!("invalid endpoint {uri:?}: {e}"))?
        .user_agent(format!("spanline/{}", crate::VERSION))
        .map_err(|e| format!("invalid user agent: {e}"))?
        .tcp_nodelay(true);
    if config.tls.insecure {
        return Ok(endpoint);
    }
    endpoint
        .tls_config(tls(&config.tls)?)
        .map_err(|e| format!("invalid tls settings: {e}"))
}

fn tls(config: &TlsConfig) -> Result<ClientTlsConfig, String> {
    let mut tls = ClientTlsConfig::new();
    match &config.ca_file {
        Some(path) => tls = tls.ca_certificate(Certificate::from_pem(read(path, "ca_file")?)),
        None => tls = tls.with_native_roots(),
    }
    if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
        let identity = Identity::from_pem(read(cert, "cert_file")?, read(key, "key_file")?);
        tls = tls.identity(identity);
    }
    Ok(tls)
}

fn read(path: &str, key: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("tls::{key}: cannot read {path}: {e}"))
}

/// The configured headers as gRPC metadata; validation has already checked them.
fn headers(
    config: &OtlpExporterConfig,
) -> Result<Vec<(AsciiMetadataKey, AsciiMetadataValue)>, String> {
    let mut out = Vec::with_capacity(config.headers.len());
    for (name, value) in &config.headers {
        let key: AsciiMetadataKey = name
            .to_ascii_lowercase()
            .parse()
            .map_err(|_| format!("headers::{name}: invalid metadata name"))?;
        let value: AsciiMetadataValue = value
            .parse()
            .map_err(|_| format!("headers::{name}: invalid metadata value"))?;
        out.push((key, value));
    }
    Ok(out)
}
