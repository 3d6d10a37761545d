//! Loading, resolving and validating the YAML configuration.

pub mod units;
