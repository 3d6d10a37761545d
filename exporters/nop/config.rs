//! The nop exporter has no settings; unknown keys are still errors.

use crate::component::ComponentConfig;

/// No keys: the nop exporter discards everything it is given.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NopConfig {}

impl ComponentConfig for NopConfig {}
