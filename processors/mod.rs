//! Built-in processors.

pub mod batch;
