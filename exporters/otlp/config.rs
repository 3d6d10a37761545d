//! The OTLP exporter's configuration, in the Collector's key names.

use std::collections::BTreeMap;

use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};

use crate::component::{ComponentConfig, Problems};

/// How request bodies are compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    None,
}

/// Transport security towards the peer.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Bool: send in plaintext (no TLS); only for trusted networks.
    pub insecure: bool,
    /// Path: PEM CA bundle to verify the peer with, instead of the system's roots.
    pub ca_file: Option<String>,
    /// Path: PEM client certificate, for mutual TLS (with `key_file`).
    pub cert_file: Option<String>,
    /// Path: PEM private key of `cert_file`.
    pub key_file: Option<String>,
}

/// Sends spans to another collector over OTLP/gRPC.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpExporterConfig {
    /// host:port, or http://host:port (plaintext) / https://host:port (TLS); required.
    pub endpoint: String,
    /// gzip | none.
    pub compression: Compression,
    /// Header name → value, sent as gRPC metadata with every request.
    pub headers: BTreeMap<String, String>,
    /// Transport security.
    pub tls: TlsConfig,
}

impl Default for OtlpExporterConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            compression: Compression::Gzip,
            headers: BTreeMap::new(),
            tls: TlsConfig::default(),
        }
    }
}

/// Metadata a client must not set: gRPC and HTTP/2 transport headers.
const RESERVED_HEADERS: [&str; 5] = ["content-type", "te", "user-agent", "host", "connection"];

impl ComponentConfig for OtlpExporterConfig {
    fn validate(&self, problems: &mut Problems) {
        self.validate_endpoint(problems);
        let mut seen = std::collections::BTreeSet::new();
        for (name, value) in &self.headers {
            validate_header(problems, name, value);
            if !seen.insert(name.to_ascii_lowercase()) {
                problems.error(
                    format!("headers::{name}"),
                    "is set twice (header names are case-insensitive)",
                );
            }
        }
        self.tls.validate(problems);
    }
}

impl OtlpExporterConfig {
    fn validate_endpoint(&self, problems: &mut Problems) {
        if self.endpoint.is_empty() {
            problems.error(
                "endpoint",
                "is required: host:port, http://host:port or https://host:port",
            );
            return;
        }
        let (scheme, authority) = split_scheme(&self.endpoint);
        if authority.contains('/') {
            problems.error(
                "endpoint",
                format!(
                    "must not contain a path (gRPC adds its own), got {:?}",
                    self.endpoint
                ),
            );
            return;
        }
        problems.check_socket_addr("endpoint", authority);
        match scheme {
            Some("http") if !self.tls.insecure => problems.error(
                "endpoint",
                format!(
                    "{:?} is plaintext http:// but tls::insecure is false; use https:// (or host:port) for TLS, or set tls::insecure: true",
                    self.endpoint
                ),
            ),
            Some("https") if self.tls.insecure => problems.error(
                "endpoint",
                format!(
                    "{:?} asks for TLS with https:// but tls::insecure is true; use http:// (or host:port) for plaintext, or set tls::insecure: false",
                    self.endpoint
                ),
            ),
            Some(other) if other != "http" && other != "https" => problems.error(
                "endpoint",
                format!("scheme must be http or https, got {other:?}"),
            ),
            _ => {}
        }
    }

    /// The URI tonic connects to: the scheme follows `tls::insecure`.
    pub fn uri(&self) -> String {
        let (_, authority) = split_scheme(&self.endpoint);
        let scheme = if self.tls.insecure { "http" } else { "https" };
        format!("{scheme}://{authority}")
    }
}

impl TlsConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.insecure {
            for (key, value) in [
                ("ca_file", &self.ca_file),
                ("cert_file", &self.cert_file),
                ("key_file", &self.key_file),
            ] {
                if value.is_some() {
                    problems.error(
                        format!("tls::{key}"),
                        "is not used with tls::insecure: true (plaintext)",
                    );
                }
            }
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => problems.error("tls::key_file", "is required with tls::cert_file"),
            (None, Some(_)) => problems.error("tls::cert_file", "is required with tls::key_file"),
            _ => {}
        }
    }
}

fn validate_header(problems: &mut Problems, name: &str, value: &str) {
    let path = format!("headers::{name}");
    let lower = name.to_ascii_lowercase();
    if lower.parse::<AsciiMetadataKey>().is_err() || lower.ends_with("-bin") {
        problems.error(
            path,
            "is not a valid gRPC metadata name: use letters, digits, '-', '_' and '.', not ending in -bin",
        );
        return;
    }
    if lower.starts_with("grpc-")
        || lower.starts_with(':')
        || RESERVED_HEADERS.contains(&lower.as_str())
    {
        problems.error(path, "is reserved for the gRPC transport and cannot be set");
        return;
    }
    if value.parse::<AsciiMetadataValue>().is_err() {
        problems.error(
            path,
            "value must be visible ASCII (no control characters or non-ASCII)",
        );
    }
}

/// Splits `scheme://rest` into its parts; a bare `host:port` has no scheme.
fn split_scheme(endpoint: &str) -> (Option<&str>, &str) {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest.trim_end_matches('/')),
        None => (None, endpoint),
    }
}
