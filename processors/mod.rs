//! Built-in processors.

pub mod batch;
pub mod memory_limiter;
pub mod tail_sampling;
