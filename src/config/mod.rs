//! Loading, resolving and validating the YAML configuration.

pub mod exporter_settings;
pub mod resolve;
pub mod service;
pub mod source;
pub mod units;

/// The config `spanline run` uses without `--config`.
pub const DEFAULT_CONFIG: &str = include_str!("default.yaml");

pub use exporter_settings::ExporterSettings;
pub use resolve::{
    ComponentSpec, Config, ConfigError, LocatedProblem, PipelineSpec, load_str, load_str_with_env,
};
pub use service::ServiceConfig;

use crate::registry::Registry;

/// Reads and loads a config file.
pub fn load_file(path: &std::path::Path, registry: &Registry) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
        source_name: name.clone(),
        problems: vec![LocatedProblem {
            path: String::new(),
            line: None,
            message: format!("cannot read the config file: {err}"),
            severity: crate::component::Severity::Error,
        }],
    })?;
    load_str(&text, &name, registry)
}

#[cfg(test)]
mod tests;
