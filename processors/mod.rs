//! Built-in processors.

pub mod attributes;
pub mod batch;
pub mod memory_limiter;
pub mod sanitizer;
pub mod tail_sampling;
pub mod tenant_quota;
