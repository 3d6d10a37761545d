//! Built-in receivers.

pub mod otlp;
