//! The span table's Arrow record batches → OTLP `ResourceSpans`, for reads and round trips.

use std::collections::HashMap;

use arrow::array::{
    Array, AsArray, BinaryArray, FixedSizeBinaryArray, ListArray, MapArray, RecordBatch,
    StringArray, StructArray, TimestampNanosecondArray, UInt32Array,
};
use arrow::datatypes::TimestampNanosecondType;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;

use super::StoreError;
use super::convert::{KINDS, STATUSES};

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, StoreError> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| StoreError::Column(name.to_string()))
}

fn downcast<'a, T: 'static>(array: &'a dyn Array, name: &str) -> Result<&'a T, StoreError> {
    array
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| StoreError::Column(name.to_string()))
}

fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, StoreError> {
    downcast(column(batch, name)?, name)
}

fn field<'a, T: 'static>(s: &'a StructArray, name: &str) -> Result<&'a T, StoreError> {
    let array = s
        .column_by_name(name)
        .ok_or_else(|| StoreError::Column(name.to_string()))?;
    downcast(array.as_ref(), name)
}

/// Decodes one attribute value from its type letter and text.
pub fn decode_value(letter: char, text: &str) -> Option<AnyValue> {
    use any_value::Value;
    let value = match letter {
        's' => Value::StringValue(text.to_string()),
        'b' => Value::BoolValue(text == "true"),
        'i' => Value::IntValue(text.parse().ok()?),
        'd' => Value::DoubleValue(text.parse().ok()?),
        'y' => Value::BytesValue(unhex(text)?),
        'a' => Value::ArrayValue(serde_json::from_str(text).ok()?),
        'k' => Value::KvlistValue(serde_json::from_str(text).ok()?),
        'x' => Value::StringValueStrindex(text.parse().ok()?),
        _ => return None,
    };
    Some(AnyValue { value: Some(value) })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 2);
    for i in (0..text.len()).step_by(2) {
        out.push(u8::from_str_radix(text.get(i..i + 2)?, 16).ok()?);
    }
    Some(out)
}

/// Reads row `row` of a map column plus its type letters back into key-values.
fn attrs(map: &MapArray, types: &StringArray, row: usize) -> Vec<KeyValue> {
    let entries = map.value(row);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_string::<i32>();
    let mut out = Vec::with_capacity(keys.len());
    for (i, letter) in types.value(row).chars().enumerate().take(keys.len()) {
        out.push(KeyValue {
            key: keys.value(i).to_string(),
            value: decode_value(letter, values.value(i)),
            ..Default::default()
        });
    }
    out
}

fn parse_kind(text: &str) -> i32 {
    KINDS.iter().position(|k| *k == text).unwrap_or(0) as i32
}

fn parse_status(text: &str) -> i32 {
    STATUSES.iter().position(|s| *s == text).unwrap_or(0) as i32
}

/// Column handles of one span-table batch.
struct SpanColumns<'a> {
    trace_id: &'a FixedSizeBinaryArray,
    span_id: &'a FixedSizeBinaryArray,
    parent: &'a BinaryArray,
    flags: &'a UInt32Array,
    start: &'a TimestampNanosecondArray,
    end: &'a TimestampNanosecondArray,
    strings: HashMap<&'static str, &'a StringArray>,
    maps: HashMap<&'static str, &'a MapArray>,
    dropped: [&'a UInt32Array; 3],
    events: &'a ListArray,
    links: &'a ListArray,
}

const STRINGS: [&str; 12] = [
    "trace_state",
    "tenant",
    "name",
    "kind",
    "status_code",
    "status_message",
    "scope_name",
    "scope_version",
    "resource_attribute_types",
    "attribute_types",
    "scope_attribute_types",
    "service",
];

impl<'a> SpanColumns<'a> {
    fn new(b: &'a RecordBatch) -> Result<Self, StoreError> {
        let mut strings = HashMap::new();
        for name in STRINGS {
            strings.insert(name, col::<StringArray>(b, name)?);
        }
        let mut maps = HashMap::new();
        for name in ["resource_attributes", "attributes", "scope_attributes"] {
            maps.insert(name, col::<MapArray>(b, name)?);
        }
        Ok(Self {
            trace_id: col(b, "trace_id")?,
            span_id: col(b, "span_id")?,
            parent: col(b, "parent_span_id")?,
            flags: col(b, "flags")?,
            start: col(b, "start_time")?,
            end: col(b, "end_time")?,
            strings,
            maps,
            dropped: [
                col(b, "dropped_attributes_count")?,
                col(b, "dropped_events_count")?,
                col(b, "dropped_links_count")?,
            ],
            events: col(b, "events")?,
            links: col(b, "links")?,
        })
    }

    fn s(&self, name: &str, row: usize) -> String {
        self.strings
            .get(name)
            .map(|a| a.value(row).to_string())
            .unwrap_or_default()
    }

    fn attrs(&self, prefix: &str, row: usize) -> Vec<KeyValue> {
        let map = self.maps.get(format!("{prefix}attributes").as_str());
        let types = self
            .strings
            .get(format!("{prefix}attribute_types").as_str());
        match (map, types) {
            (Some(map), Some(types)) => attrs(map, types, row),
            _ => Vec::new(),
        }
    }

    fn span(&self, row: usize) -> Result<Span, StoreError> {
        let status_code = parse_status(&self.s("status_code", row));
        let message = self.s("status_message", row);
        Ok(Span {
            trace_id: self.trace_id.value(row).to_vec(),
            span_id: self.span_id.value(row).to_vec(),
            trace_state: self.s("trace_state", row),
            parent_span_id: if self.parent.is_null(row) {
                Vec::new()
            } else {
                self.parent.value(row).to_vec()
            },
            flags: self.flags.value(row),
            name: self.s("name", row),
            kind: parse_kind(&self.s("kind", row)),
            start_time_unix_nano: self.start.value(row) as u64,
            end_time_unix_nano: self.end.value(row) as u64,
            attributes: self.attrs("", row),
            dropped_attributes_count: self.dropped[0].value(row),
            events: self.events(row)?,
            dropped_events_count: self.dropped[1].value(row),
            links: self.links(row)?,
            dropped_links_count: self.dropped[2].value(row),
            status: (status_code != 0 || !message.is_empty()).then_some(Status {
                code: status_code,
                message,
            }),
        })
    }

    fn events(&self, row: usize) -> Result<Vec<span::Event>, StoreError> {
        let items = self.events.value(row);
        let items: &StructArray = downcast(items.as_ref(), "events")?;
        let time = items
            .column_by_name("time")
            .ok_or_else(|| StoreError::Column("events.time".into()))?
            .as_primitive::<TimestampNanosecondType>();
        let name: &StringArray = field(items, "name")?;
        let map: &MapArray = field(items, "attributes")?;
        let types: &StringArray = field(items, "attribute_types")?;
        let dropped: &UInt32Array = field(items, "dropped_attributes_count")?;
        let mut out = Vec::with_capacity(items.len());
        for i in 0..items.len() {
            out.push(span::Event {
                time_unix_nano: time.value(i) as u64,
                name: name.value(i).to_string(),
                attributes: attrs(map, types, i),
                dropped_attributes_count: dropped.value(i),
            });
        }
        Ok(out)
    }

    fn links(&self, row: usize) -> Result<Vec<span::Link>, StoreError> {
        let items = self.links.value(row);
        let items: &StructArray = downcast(items.as_ref(), "links")?;
        let trace_id: &FixedSizeBinaryArray = field(items, "trace_id")?;
        let span_id: &FixedSizeBinaryArray = field(items, "span_id")?;
        let trace_state: &StringArray = field(items, "trace_state")?;
        let map: &MapArray = field(items, "attributes")?;
        let types: &StringArray = field(items, "attribute_types")?;
        let dropped: &UInt32Array = field(items, "dropped_attributes_count")?;
        let flags: &UInt32Array = field(items, "flags")?;
        let mut out = Vec::with_capacity(items.len());
        for i in 0..items.len() {
            out.push(span::Link {
                trace_id: trace_id.value(i).to_vec(),
                span_id: span_id.value(i).to_vec(),
                trace_state: trace_state.value(i).to_string(),
                attributes: attrs(map, types, i),
                dropped_attributes_count: dropped.value(i),
                flags: flags.value(i),
            });
        }
        Ok(out)
    }

    fn origin(&self, row: usize) -> (Resource, InstrumentationScope) {
        let resource = Resource {
            attributes: self.attrs("resource_", row),
            ..Default::default()
        };
        let scope = InstrumentationScope {
            name: self.s("scope_name", row),
            version: self.s("scope_version", row),
            attributes: self.attrs("scope_", row),
            dropped_attributes_count: 0,
        };
        (resource, scope)
    }
}

/// Decodes span-table batches, grouping spans of one resource and scope together.
pub fn batches_to_resource_spans(
    batches: &[RecordBatch],
) -> Result<Vec<ResourceSpans>, StoreError> {
    let mut out: Vec<ResourceSpans> = Vec::new();
    let mut groups: HashMap<Vec<u8>, usize> = HashMap::new();
    for batch in batches {
        let columns = SpanColumns::new(batch)?;
        for row in 0..batch.num_rows() {
            let (resource, scope) = columns.origin(row);
            let mut key = resource.encode_to_vec();
            key.extend(scope.encode_to_vec());
            let index = *groups.entry(key).or_insert_with(|| {
                out.push(ResourceSpans {
                    resource: Some(resource),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(scope),
                        ..Default::default()
                    }],
                    ..Default::default()
                });
                out.len() - 1
            });
            let span = columns.span(row)?;
            out[index].scope_spans[0].spans.push(span);
        }
    }
    Ok(out)
}
