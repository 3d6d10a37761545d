//! Self-telemetry: metric names and the admin server (`/metrics`, `/healthz`, `/readyz`).

pub mod metrics;
pub mod server;
