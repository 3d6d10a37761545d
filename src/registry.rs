//! The one explicit list of built-in components.
