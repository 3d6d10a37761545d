//! Self-telemetry: metric names, attribute cardinality estimates and the admin server.

pub mod cardinality;
pub mod metrics;
pub mod server;
