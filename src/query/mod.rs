//! Reading the trace store: trace by id, search, tags and aggregates, served over Tempo's
//! and Jaeger's HTTP APIs and printed by `spanline query`.

pub mod cli;
pub mod client;
pub mod config;
pub mod engine;
pub mod http;
pub mod jaeger;
pub mod otlp_json;
pub mod params;
pub mod search;
pub mod table;
pub mod traceql;
pub mod waterfall;

#[cfg(test)]
pub(crate) mod tests;
