//! The trace summary table: `TraceSummary` rows ↔ Arrow record batches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BooleanArray, BooleanBuilder, FixedSizeBinaryArray,
    FixedSizeBinaryBuilder, Int64Builder, ListArray, MapArray, RecordBatch, StringArray,
    StringBuilder, StructArray, TimestampNanosecondArray, TimestampNanosecondBuilder, UInt32Array,
    UInt32Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::DataType;

use super::StoreError;
use super::schema;
use super::summary::{TraceRow, TraceSummary};

/// Builds the summary batch of a block's traces (one row per trace); its rows are ordered
/// by start time, so a time window prunes row groups by their statistics.
pub(crate) fn summary_batch(
    tenant: &str,
    mut traces: Vec<TraceRow<'_>>,
) -> Result<RecordBatch, StoreError> {
    traces.sort_unstable_by_key(|t| (t.start, t.trace_id));
    let mut trace_id = FixedSizeBinaryBuilder::new(16);
    let mut strings: [StringBuilder; 4] = Default::default();
    let mut start = TimestampNanosecondBuilder::new();
    let mut end = TimestampNanosecondBuilder::new();
    let mut duration = Int64Builder::new();
    let mut counts: [UInt32Builder; 2] = Default::default();
    let mut has_root = BooleanBuilder::new();
    let (mut services, mut error_services) = (StringLists::default(), StringLists::default());
    let mut operations = (Vec::new(), Vec::new(), vec![0i32]);
    let mut attributes = (StringBuilder::new(), StringLists::default(), vec![0i32]);
    for t in &traces {
        trace_id.append_value(t.trace_id)?;
        let texts = [tenant, t.root.0, t.root.1, t.status()];
        for (b, text) in strings.iter_mut().zip(texts) {
            b.append_value(text);
        }
        start.append_value(t.start as i64);
        end.append_value(t.end as i64);
        duration.append_value(t.end.saturating_sub(t.start) as i64);
        counts[0].append_value(t.span_count);
        counts[1].append_value(t.error_count);
        has_root.append_value(t.has_root());
        services.push(t.services.iter().copied());
        error_services.push(t.error_services.iter().copied());
        for &(service, name) in &t.operations {
            operations.0.push(service);
            operations.1.push(name);
        }
        operations.2.push(operations.0.len() as i32);
        // Values come sorted by key: one map entry per run of a key.
        for run in t.values.chunk_by(|a, b| a.0 == b.0) {
            attributes.0.append_value(run[0].0);
            attributes.1.push(run.iter().map(|(_, v)| v.as_ref()));
        }
        attributes.2.push(attributes.0.len() as i32);
    }
    let [s_tenant, s_service, s_name, s_status] =
        strings.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let [spans, errors] = counts.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let (mut keys, values, offsets) = attributes;
    let attributes = attr_map(Arc::new(keys.finish()), values.finish(), offsets)?;
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
        Arc::new(has_root.finish()),
        operation_list(operations.0, operations.1, operations.2)?,
        error_services.finish(),
    ];
    Ok(RecordBatch::try_new(schema::trace_schema(), columns)?)
}

fn operation_list(
    services: Vec<&str>,
    names: Vec<&str>,
    offsets: Vec<i32>,
) -> Result<ArrayRef, StoreError> {
    let DataType::List(item) = schema::operation_list() else {
        unreachable!("operation_list is a list");
    };
    let children: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(services)),
        Arc::new(StringArray::from(names)),
    ];
    let items = StructArray::try_new(schema::operation_fields(), children, None)?;
    let list = ListArray::try_new(
        item,
        OffsetBuffer::new(offsets.into()),
        Arc::new(items),
        None,
    )?;
    Ok(Arc::new(list))
}

fn attr_map(keys: ArrayRef, values: ArrayRef, offsets: Vec<i32>) -> Result<ArrayRef, StoreError> {
    let map_type = schema::trace_schema()
        .field_with_name("attributes")?
        .data_type()
        .clone();
    let entries_field = schema::map_entries(&map_type);
    let DataType::Struct(fields) = entries_field.data_type() else {
        unreachable!("map entries are a struct");
    };
    let entries = StructArray::try_new(fields.clone(), vec![keys, values], None)?;
    let map = MapArray::try_new(
        entries_field,
        OffsetBuffer::new(offsets.into()),
        entries,
        None,
        false,
    )?;
    Ok(Arc::new(map))
}

/// A `List<Utf8>` built from lists of strings.
#[derive(Default)]
struct StringLists<'a> {
    items: Vec<&'a str>,
    offsets: Vec<i32>,
}

impl<'a> StringLists<'a> {
    fn push(&mut self, values: impl Iterator<Item = &'a str>) {
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

fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, StoreError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| StoreError::Column(name.to_string()))
}

/// A column that older (version 1) trace files lack.
fn optional<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Option<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
}

fn strings_at(list: &ListArray, row: usize) -> BTreeSet<String> {
    let values = list.value(row);
    let values = values.as_string::<i32>();
    values.iter().flatten().map(str::to_string).collect()
}

fn operations_at(list: &ListArray, row: usize) -> BTreeSet<(String, String)> {
    let items = list.value(row);
    let items = items.as_struct();
    let (services, names) = (
        items.column(0).as_string::<i32>(),
        items.column(1).as_string::<i32>(),
    );
    (0..items.len())
        .map(|i| (services.value(i).to_string(), names.value(i).to_string()))
        .collect()
}

fn attributes_at(map: &MapArray, row: usize) -> BTreeMap<String, BTreeSet<String>> {
    let entries = map.value(row);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_list::<i32>();
    let mut out = BTreeMap::new();
    for i in 0..entries.len() {
        out.insert(keys.value(i).to_string(), strings_at(values, i));
    }
    out
}

/// Decodes summary-table batches (of this or an older format version).
pub fn batch_to_summaries(batch: &RecordBatch) -> Result<Vec<TraceSummary>, StoreError> {
    let ids: &FixedSizeBinaryArray = col(batch, "trace_id")?;
    let root_service: &StringArray = col(batch, "root_service")?;
    let root_name: &StringArray = col(batch, "root_name")?;
    let start: &TimestampNanosecondArray = col(batch, "start_time")?;
    let end: &TimestampNanosecondArray = col(batch, "end_time")?;
    let status: &StringArray = col(batch, "status_code")?;
    let spans: &UInt32Array = col(batch, "span_count")?;
    let errors: &UInt32Array = col(batch, "error_count")?;
    let services: &ListArray = col(batch, "services")?;
    let attributes: &MapArray = col(batch, "attributes")?;
    let has_root: Option<&BooleanArray> = optional(batch, "has_root");
    let operations: Option<&ListArray> = optional(batch, "operations");
    let error_services: Option<&ListArray> = optional(batch, "error_services");
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let root_service = root_service.value(row).to_string();
        out.push(TraceSummary {
            trace_id: super::summary::fixed_id(ids.value(row)),
            // Version 1 always named a root (or its stand-in) and did not say which.
            has_root: has_root.map_or(!root_service.is_empty(), |a| a.value(row)),
            root_service,
            root_name: root_name.value(row).to_string(),
            start_unix_nano: start.value(row) as u64,
            end_unix_nano: end.value(row) as u64,
            status: status.value(row).to_string(),
            span_count: spans.value(row),
            error_count: errors.value(row),
            services: strings_at(services, row),
            error_services: error_services.map_or_else(BTreeSet::new, |l| strings_at(l, row)),
            operations: operations.map_or_else(BTreeSet::new, |l| operations_at(l, row)),
            attributes: attributes_at(attributes, row),
        });
    }
    Ok(out)
}
