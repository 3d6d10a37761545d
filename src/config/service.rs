//! The `service` section: pipelines, self-telemetry and shutdown.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::units::HumanDuration;
use crate::component::Problems;

/// `service:`: which components run in which pipeline, and the host's own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Pipelines by id (`traces` or `traces/name`).
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// Self-telemetry: metrics address and logs.
    pub telemetry: TelemetryConfig,
    /// Extensions to run (spanline has none built in; health endpoints are on the metrics address).
    pub extensions: Vec<String>,
    /// How long SIGTERM/SIGINT may take to drain everything accepted before exiting.
    pub shutdown_timeout: HumanDuration,
    /// The query API over the trace store.
    pub query: crate::query::config::QueryConfig,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            pipelines: BTreeMap::new(),
            telemetry: TelemetryConfig::default(),
            extensions: Vec::new(),
            shutdown_timeout: HumanDuration::from_secs(30),
            query: Default::default(),
        }
    }
}

/// One pipeline: receivers feed processors in order, whose output fans out to exporters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    pub receivers: Vec<String>,
    pub processors: Vec<String>,
    pub exporters: Vec<String>,
}

/// `service.telemetry`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    pub metrics: MetricsConfig,
    pub logs: LogsConfig,
}

/// `service.telemetry.metrics`: the admin server with `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// host:port of the admin server; empty disables it.
    pub address: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:8888".to_string(),
        }
    }
}

/// `service.telemetry.logs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// A tracing filter: `info`, `debug`, `spanline=debug,tonic=warn`.
    pub level: String,
    /// `text` or `json`.
    pub encoding: LogEncoding,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            level: "info".to_string(),
            encoding: LogEncoding::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogEncoding {
    Text,
    Json,
}

impl ServiceConfig {
    /// Checks the host's own settings (pipeline references are checked by the resolver).
    pub fn validate(&self, problems: &mut Problems) {
        if !self.telemetry.metrics.address.is_empty() {
            problems.check_socket_addr(
                "telemetry::metrics::address",
                &self.telemetry.metrics.address,
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&self.telemetry.logs.level).is_err() {
            problems.error(
                "telemetry::logs::level",
                format!(
                    "invalid log filter {:?}; use error, warn, info, debug or trace",
                    self.telemetry.logs.level
                ),
            );
        }
        self.query.validate(problems);
        if self.shutdown_timeout.is_zero() {
            problems.error("shutdown_timeout", "must be greater than 0");
        }
        for (index, name) in self.extensions.iter().enumerate() {
            problems.error(
                format!("extensions[{index}]"),
                format!(
                    "unknown extension {name:?}: spanline has no extensions; /healthz, /readyz and /metrics are served on service.telemetry.metrics.address"
                ),
            );
        }
    }
}
