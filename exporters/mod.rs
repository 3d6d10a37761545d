//! Built-in exporters.

pub mod debug;
pub mod nop;
