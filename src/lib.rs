//! spanline: an OpenTelemetry trace pipeline agent — receivers, processors and exporters
//! wired by YAML, with Prometheus self-metrics.

pub mod allocator;
pub mod cli;
pub mod component;
pub mod config;
pub mod factory;
pub mod graph;
pub mod host;
pub mod loadgen;
pub mod query;
pub mod registry;
pub mod runtime;
pub mod store;
pub mod telemetry;
pub mod testing;

#[path = "../receivers/mod.rs"]
pub mod receivers;

#[path = "../processors/mod.rs"]
pub mod processors;

#[path = "../exporters/mod.rs"]
pub mod exporters;

/// The version reported by `spanline --version` and `spanline_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
