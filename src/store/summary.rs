//! The trace summary table: one row per trace per block, for search.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, FixedSizeBinaryBuilder, Int64Builder, ListArray, MapArray, RecordBatch,
    StringArray, StringBuilder, StructArray, TimestampNanosecondBuilder, UInt32Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::DataType;

use super::StoreError;
use super::convert::{SpanRow, encode_value};
use super::schema;

const STATUS_ERROR: i32 = 2;

/// What the summary keeps of one trace.
#[derive(Debug, Default)]
struct TraceSummary {
    trace_id: Vec<u8>,
    root_service: String,
    root_name: String,
    start: u64,
    end: u64,
    spans: u32,
    errors: u32,
    services: BTreeSet<String>,
    /// (indexed key, its distinct values).
    attributes: Vec<(String, BTreeSet<String>)>,
}

/// Splits rows sorted by trace id into runs of one trace each.
pub fn trace_runs(rows: &[SpanRow]) -> impl Iterator<Item = &[SpanRow]> {
    rows.chunk_by(|a, b| a.span.trace_id == b.span.trace_id)
}

fn summarise(run: &[SpanRow], indexed: &[String]) -> TraceSummary {
    let mut t = TraceSummary {
        trace_id: run[0].span.trace_id.clone(),
        start: u64::MAX,
        attributes: indexed
            .iter()
            .map(|k| (k.clone(), BTreeSet::new()))
            .collect(),
        ..Default::default()
    };
    // The root is the span without a parent; failing that (root not in this block), the
    // earliest span stands in for it.
    let root = run
        .iter()
        .find(|r| r.span.parent_span_id.is_empty())
        .unwrap_or(&run[0]);
    t.root_service = root.origin.service.clone();
    t.root_name = root.span.name.clone();
    for row in run {
        let span = &row.span;
        t.start = t.start.min(span.start_time_unix_nano);
        t.end = t.end.max(span.end_time_unix_nano);
        t.spans += 1;
        if span.status.as_ref().is_some_and(|s| s.code == STATUS_ERROR) {
            t.errors += 1;
        }
        t.services.insert(row.origin.service.clone());
        for (key, values) in &mut t.attributes {
            let all = span
                .attributes
                .iter()
                .chain(&row.origin.resource.attributes);
            for kv in all.filter(|kv| &kv.key == key) {
                values.insert(encode_value(kv.value.as_ref()).1);
            }
        }
    }
    t
}

/// Builds the summary batch of rows sorted by trace id.
pub fn summary_batch(
    tenant: &str,
    rows: &[SpanRow],
    indexed: &[String],
) -> Result<RecordBatch, StoreError> {
    let mut trace_id = FixedSizeBinaryBuilder::new(16);
    let mut strings: [StringBuilder; 4] = Default::default();
    let mut start = TimestampNanosecondBuilder::new();
    let mut end = TimestampNanosecondBuilder::new();
    let mut duration = Int64Builder::new();
    let mut counts: [UInt32Builder; 2] = Default::default();
    let mut services = ListBuilder::default();
    let mut attr_keys = StringBuilder::new();
    let mut attr_values = ListBuilder::default();
    let mut attr_offsets = vec![0i32];
    for run in trace_runs(rows) {
        let t = summarise(run, indexed);
        let mut id = [0u8; 16];
        if t.trace_id.len() == 16 {
            id.copy_from_slice(&t.trace_id);
        }
        trace_id.append_value(id)?;
        let status = if t.errors > 0 { "error" } else { "ok" };
        for (b, text) in strings
            .iter_mut()
            .zip([tenant, &t.root_service, &t.root_name, status])
        {
            b.append_value(text);
        }
        start.append_value(t.start as i64);
        end.append_value(t.end as i64);
        duration.append_value(t.end.saturating_sub(t.start) as i64);
        counts[0].append_value(t.spans);
        counts[1].append_value(t.errors);
        services.push(t.services);
        for (key, values) in t.attributes.into_iter().filter(|(_, v)| !v.is_empty()) {
            attr_keys.append_value(key);
            attr_values.push(values);
        }
        attr_offsets.push(attr_keys.len() as i32);
    }
    let [s_tenant, s_service, s_name, s_status] =
        strings.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let [spans, errors] = counts.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let attributes = attr_map(attr_keys, attr_values.finish(), attr_offsets)?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        s_tenant,
        s_service,
        s_name,
        Arc::new(start.finish().with_timezone("UTC")),
        Arc::new(end.finish().with_timezone("UTC")),
        Arc::new(duration.finish()),
        s_status,
        spans,
        errors,
        services.finish(),
        attributes,
    ];
    Ok(RecordBatch::try_new(schema::trace_schema(), columns)?)
}

fn attr_map(
    mut keys: StringBuilder,
    values: ArrayRef,
    offsets: Vec<i32>,
) -> Result<ArrayRef, StoreError> {
    let map_type = schema::trace_schema()
        .field_with_name("attributes")?
        .data_type()
        .clone();
    let entries_field = schema::map_entries(&map_type);
    let DataType::Struct(fields) = entries_field.data_type() else {
        unreachable!("map entries are a struct");
    };
    let entries =
        StructArray::try_new(fields.clone(), vec![Arc::new(keys.finish()), values], None)?;
    let map = MapArray::try_new(
        entries_field,
        OffsetBuffer::new(offsets.into()),
        entries,
        None,
        false,
    )?;
    Ok(Arc::new(map))
}

/// A `List<Utf8>` built from sets of strings.
#[derive(Default)]
struct ListBuilder {
    items: Vec<String>,
    offsets: Vec<i32>,
}

impl ListBuilder {
    fn push(&mut self, values: BTreeSet<String>) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.items.extend(values);
        self.offsets.push(self.items.len() as i32);
    }

    fn finish(mut self) -> ArrayRef {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let DataType::List(item) = schema::string_list() else {
            unreachable!("string_list is a list");
        };
        let values = Arc::new(StringArray::from(self.items));
        Arc::new(ListArray::new(
            item,
            OffsetBuffer::new(self.offsets.into()),
            values,
            None,
        ))
    }
}
