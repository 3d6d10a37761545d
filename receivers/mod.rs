//! Built-in receivers.
