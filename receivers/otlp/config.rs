//! The `otlp` receiver's configuration, in the OpenTelemetry Collector's shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::component::tenant::{DEFAULT_TENANT, validate_tenant_id};
use crate::component::{ByteSize, ComponentConfig, Problems};

/// The whole `otlp:` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    /// The protocols to serve; at least one must be present.
    pub protocols: Protocols,
    /// API keys that authenticate senders and name their tenant.
    pub auth: AuthConfig,
    /// Where the tenant comes from when no API key names it.
    pub tenant: TenantConfig,
}

/// API keys (`authorization: Bearer <key>`), each mapped to the tenant it speaks for.
/// Its `Debug` output shows how many keys there are, never the keys.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Key -> tenant id. Keys may come from the environment (`"${env:KEY}": acme`).
    pub api_keys: BTreeMap<String, String>,
    /// A YAML file holding more `key: tenant` pairs, read when the receiver is built.
    pub api_keys_file: Option<String>,
    /// When true, a request without a known key is refused (UNAUTHENTICATED / 401).
    pub required: bool,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("api_keys", &format_args!("<{} keys>", self.api_keys.len()))
            .field("api_keys_file", &self.api_keys_file)
            .field("required", &self.required)
            .finish()
    }
}

/// How a tenant is found when no API key names it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantConfig {
    /// The request header (gRPC metadata or HTTP header) that names the tenant.
    pub header: String,
    /// Whether a resource's own `tenant.id` attribute is used when neither key nor header names one.
    pub from_resource_attribute: bool,
    /// The tenant of data that names none.
    pub default_tenant: String,
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self {
            header: "X-Scope-OrgID".to_string(),
            from_resource_attribute: true,
            default_tenant: DEFAULT_TENANT.to_string(),
        }
    }
}

/// Which protocols are served. A key present with no value (`grpc:`) enables the protocol
/// with its defaults, as in the Collector; an absent key leaves it off.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Protocols {
    /// OTLP over gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).
    #[serde(deserialize_with = "present_means_enabled")]
    pub grpc: Option<GrpcConfig>,
    /// OTLP over HTTP (protobuf or JSON bodies, POST to `traces_url_path`).
    #[serde(deserialize_with = "present_means_enabled")]
    pub http: Option<HttpConfig>,
}

/// The gRPC server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Address to listen on, `host:port`.
    pub endpoint: String,
    /// Largest request message accepted, in bytes, both as sent and after decompression.
    pub max_recv_msg_size: ByteSize,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            endpoint: "127.0.0.1:4317".to_string(),
            max_recv_msg_size: ByteSize::mib(16),
        }
    }
}

/// The HTTP server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, `host:port`.
    pub endpoint: String,
    /// Path that accepts trace exports (POST).
    pub traces_url_path: String,
    /// Largest request body accepted, in bytes, both as sent and after decompression.
    pub max_request_body_size: ByteSize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            endpoint: "127.0.0.1:4318".to_string(),
            traces_url_path: "/v1/traces".to_string(),
            max_request_body_size: ByteSize::mib(16),
        }
    }
}

/// Turns `grpc:` (null) into the protocol's defaults; serde only calls this for a present key.
fn present_means_enabled<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    let value = Option::<T>::deserialize(deserializer)?;
    Ok(Some(value.unwrap_or_default()))
}

impl ComponentConfig for OtlpReceiverConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.protocols.grpc.is_none() && self.protocols.http.is_none() {
            problems.error(
                "protocols",
                "must enable at least one protocol (grpc or http)",
            );
        }
        if let Some(grpc) = &self.protocols.grpc {
            problems.check_socket_addr("protocols::grpc::endpoint", &grpc.endpoint);
            check_size(
                problems,
                "protocols::grpc::max_recv_msg_size",
                grpc.max_recv_msg_size,
            );
        }
        if let Some(http) = &self.protocols.http {
            problems.check_socket_addr("protocols::http::endpoint", &http.endpoint);
            check_size(
                problems,
                "protocols::http::max_request_body_size",
                http.max_request_body_size,
            );
            if !http.traces_url_path.starts_with('/') {
                problems.error(
                    "protocols::http::traces_url_path",
                    format!("must start with '/', got {:?}", http.traces_url_path),
                );
            }
        }
        validate_tenancy(&self.auth, &self.tenant, problems);
    }
}

fn validate_tenancy(auth: &AuthConfig, tenant: &TenantConfig, problems: &mut Problems) {
    for (key, id) in &auth.api_keys {
        if key.is_empty() {
            problems.error("auth::api_keys", "an API key is empty");
        }
        if let Err(message) = validate_tenant_id(id) {
            problems.error(format!("auth::api_keys::{}", redact(key)), message);
        }
    }
    if auth.api_keys_file.as_deref() == Some("") {
        problems.error(
            "auth::api_keys_file",
            "must be a file path, got an empty string",
        );
    }
    if auth.required && auth.api_keys.is_empty() && auth.api_keys_file.is_none() {
        problems.error(
            "auth::required",
            "is true but no api_keys or api_keys_file is configured: every request would be refused",
        );
    }
    if http::HeaderName::from_bytes(tenant.header.as_bytes()).is_err() {
        problems.error(
            "tenant::header",
            format!("must be a valid header name, got {:?}", tenant.header),
        );
    }
    if let Err(message) = validate_tenant_id(&tenant.default_tenant) {
        problems.error("tenant::default_tenant", message);
    }
}

/// An API key as it may appear in an error message: its first characters only.
pub(crate) fn redact(key: &str) -> String {
    let shown: String = key.chars().take(3).collect();
    format!("{shown}***")
}

fn check_size(problems: &mut Problems, path: &str, size: ByteSize) {
    if size.bytes() == 0 {
        problems.error(path, "must be greater than 0, got 0");
    }
}
