//! Built-in exporters.

pub mod debug;
pub mod nop;
pub mod otlp;
pub mod trace_store;
