//! Arrow schemas of the span table and the trace summary table.
//!
//! Attribute maps are `Map<Utf8, Utf8>` whose values are the value's text: a string as is,
//! an int, double or bool as it prints, bytes as hex, arrays and key-value lists as OTLP
//! JSON. A sibling `*_types` column holds one letter per entry (`s` string, `i` int, `d`
//! double, `b` bool, `y` bytes, `a` array, `k` kvlist, `x` string-table index, `n` empty). Why: SQL engines read
//! `attributes['http.route']` directly with no JSON unwrapping, the type letters restore
//! the exact OTLP value on the way back, and spans of one kind share one type string, so
//! the column dictionary-encodes to almost nothing. A typed union per value would cost more
//! bytes and most engines read unions poorly.
//!
//! Promoted columns use `_` for `.` (`http_route`) so they need no quoting in SQL.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use parquet::schema::types::ColumnPath;

/// Attribute keys copied into their own columns: (attribute key, column name, is integer).
/// A key's newer semantic-convention name is looked up when the older one is absent.
pub const PROMOTED: [(&str, &str, &str, bool); 5] = [
    ("http.route", "", "http_route", false),
    (
        "http.status_code",
        "http.response.status_code",
        "http_status_code",
        true,
    ),
    ("http.method", "http.request.method", "http_method", false),
    ("db.system", "db.system.name", "db_system", false),
    (
        "deployment.environment",
        "deployment.environment.name",
        "deployment_environment",
        false,
    ),
];

/// The on-disk format version written into every block index. Version 2 added the trace
/// table's `has_root`, `operations` and `error_services` columns and orders its rows by
/// start time; version-1 trace files are read with those columns empty.
pub const FORMAT_VERSION: u32 = 2;

/// Span table columns no reader prunes by their minimum and maximum: ids without order
/// (span, parent), free texts, flags and counts, and everything of events and links.
const UNPRUNED: [&str; 10] = [
    "span_id",
    "parent_span_id",
    "trace_state",
    "flags",
    "status_message",
    "scope_version",
    "dropped_attributes_count",
    "dropped_events_count",
    "dropped_links_count",
    "events",
];

/// Whether no reader prunes by a Parquet leaf column's statistics: it belongs to an
/// attribute map or its type letters (of a span, resource, scope, event or link, or the
/// trace table's indexed attributes: map lookups are not pushed down to statistics), or
/// is one of `UNPRUNED`, or a link's.
pub fn is_unpruned_leaf(path: &ColumnPath) -> bool {
    let parts = path.parts();
    let top = parts.first().map(String::as_str).unwrap_or_default();
    UNPRUNED.contains(&top)
        || top == "links"
        || parts
            .iter()
            .any(|part| part.ends_with("attributes") || part.ends_with("attribute_types"))
}

pub fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// `Map<Utf8, Utf8>` as Parquet and DuckDB expect it (`entries: {key, value}`).
pub fn string_map() -> DataType {
    map_of(DataType::Utf8)
}

fn map_of(value: DataType) -> DataType {
    let entries = Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", value, true),
    ]);
    DataType::Map(
        Arc::new(Field::new("entries", DataType::Struct(entries), false)),
        false,
    )
}

/// `List<Utf8>` with the conventional item name.
pub fn string_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The entries field of a map type (for building `MapArray`s).
pub fn map_entries(data_type: &DataType) -> FieldRef {
    match data_type {
        DataType::Map(field, _) => field.clone(),
        _ => unreachable!("map_entries is only called with map types"),
    }
}

fn attrs(prefix: &str) -> [Field; 2] {
    [
        Field::new(format!("{prefix}attributes"), string_map(), false),
        Field::new(format!("{prefix}attribute_types"), DataType::Utf8, false),
    ]
}

pub fn event_fields() -> Fields {
    let [a, t] = attrs("");
    Fields::from(vec![
        Field::new("time", timestamp(), false),
        Field::new("name", DataType::Utf8, false),
        a,
        t,
        Field::new("dropped_attributes_count", DataType::UInt32, false),
    ])
}

pub fn link_fields() -> Fields {
    let [a, t] = attrs("");
    Fields::from(vec![
        Field::new("trace_id", DataType::FixedSizeBinary(16), false),
        Field::new("span_id", DataType::FixedSizeBinary(8), false),
        Field::new("trace_state", DataType::Utf8, false),
        a,
        t,
        Field::new("dropped_attributes_count", DataType::UInt32, false),
        Field::new("flags", DataType::UInt32, false),
    ])
}

/// One row per span, sorted by (trace_id, start_time).
pub fn span_schema() -> SchemaRef {
    let [ra, rt] = attrs("resource_");
    let [sa, st] = attrs("");
    let [ca, ct] = attrs("scope_");
    let mut fields = vec![
        Field::new("trace_id", DataType::FixedSizeBinary(16), false),
        Field::new("span_id", DataType::FixedSizeBinary(8), false),
        Field::new("parent_span_id", DataType::Binary, true),
        Field::new("trace_state", DataType::Utf8, false),
        Field::new("flags", DataType::UInt32, false),
        Field::new("tenant", DataType::Utf8, false),
        Field::new("service", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("start_time", timestamp(), false),
        Field::new("end_time", timestamp(), false),
        Field::new("duration_ns", DataType::Int64, false),
        Field::new("status_code", DataType::Utf8, false),
        Field::new("status_message", DataType::Utf8, false),
        ra,
        rt,
        sa,
        st,
    ];
    for (_, _, column, is_int) in PROMOTED {
        let data_type = if is_int {
            DataType::Int64
        } else {
            DataType::Utf8
        };
        fields.push(Field::new(column, data_type, true));
    }
    let item = |fields: Fields| Arc::new(Field::new("item", DataType::Struct(fields), false));
    fields.extend([
        Field::new("events", DataType::List(item(event_fields())), false),
        Field::new("links", DataType::List(item(link_fields())), false),
        Field::new("scope_name", DataType::Utf8, false),
        Field::new("scope_version", DataType::Utf8, false),
        ca,
        ct,
        Field::new("dropped_attributes_count", DataType::UInt32, false),
        Field::new("dropped_events_count", DataType::UInt32, false),
        Field::new("dropped_links_count", DataType::UInt32, false),
    ]);
    Arc::new(Schema::new(fields))
}

/// One row per trace per block: the search index.
pub fn trace_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("trace_id", DataType::FixedSizeBinary(16), false),
        Field::new("tenant", DataType::Utf8, false),
        Field::new("root_service", DataType::Utf8, false),
        Field::new("root_name", DataType::Utf8, false),
        Field::new("start_time", timestamp(), false),
        Field::new("end_time", timestamp(), false),
        Field::new("duration_ns", DataType::Int64, false),
        Field::new("status_code", DataType::Utf8, false),
        Field::new("span_count", DataType::UInt32, false),
        Field::new("error_count", DataType::UInt32, false),
        Field::new("services", string_list(), false),
        Field::new("attributes", map_of(string_list()), false),
        Field::new("has_root", DataType::Boolean, false),
        Field::new("operations", operation_list(), false),
        Field::new("error_services", string_list(), false),
    ]))
}

/// The fields of one `operations` item: a (service, span name) pair.
pub fn operation_fields() -> Fields {
    Fields::from(vec![
        Field::new("service", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
    ])
}

/// `List<Struct{service, name}>`.
pub fn operation_list() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(operation_fields()),
        false,
    )))
}
