//! The trace store format: layout, schema, blocks, index, reader, write-ahead log, retention.

pub mod wal;
