//! End-to-end tests: spanline binaries over loopback with real OTLP clients, configs and the
//! README validated, and every registered component through build → start → batch → shutdown.

mod backpressure;
mod compliance;
mod configs;
mod crash;
mod query;
mod quota;
mod sanitizer;
mod sdk;
mod shutdown;
mod support;
