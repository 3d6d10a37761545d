//! Spans read from their request bytes → the span table's Arrow record batch, in the order
//! given.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, FixedSizeBinaryBuilder, Int64Builder, ListArray,
    MapArray, RecordBatch, StringBuilder, StructArray, TimestampNanosecondBuilder, UInt32Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Fields};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message;

use super::StoreError;
use super::schema::{self, PROMOTED};
use super::summary::Summariser;
use crate::component::tenant::{DEFAULT_TENANT, TENANT_ATTRIBUTE};
use crate::component::wire::view::{
    EVENT_ATTRIBUTES, LINK_ATTRIBUTES, RESOURCE_ATTRIBUTES, SCOPE_ATTRIBUTES, ScopeView, SpanView,
    ValueView, for_each_attribute,
};

/// Where a span came from, read from its request: shared by every span of one resource
/// and scope, so their attributes are read once for all of them.
#[derive(Debug, Clone, Default)]
pub(crate) struct OriginView<'a> {
    pub tenant: &'a str,
    pub service: &'a str,
    /// The resource's attributes, from every occurrence of it (a decoder merges them).
    pub resource: Vec<Attribute<'a>>,
    pub scope: ScopeView<'a>,
    pub scope_attributes: Vec<Attribute<'a>>,
}

pub(crate) type Attribute<'a> = (&'a str, ValueView<'a>);

/// A span and its origin, both read in place from the request that carried them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanRef<'a> {
    pub span: SpanView<'a>,
    pub origin: &'a OriginView<'a>,
}

impl<'a> OriginView<'a> {
    /// Reads an origin from the bodies of its resource's and scope's occurrences. Its
    /// tenant is the first `tenant.id` attribute holding a string, else the default
    /// tenant; its service the first `service.name`'s string, else `""` (as `tenant_of`
    /// and the decoded form read them).
    pub fn read(resource: &[&'a [u8]], scope: &[&'a [u8]]) -> Result<Self, StoreError> {
        let mut out = OriginView {
            tenant: DEFAULT_TENANT,
            scope: ScopeView::read(scope.iter().copied())?,
            ..Default::default()
        };
        for body in resource {
            for_each_attribute(body, RESOURCE_ATTRIBUTES, |k, v| out.resource.push((k, v)))?;
        }
        for body in scope {
            for_each_attribute(body, SCOPE_ATTRIBUTES, |k, v| {
                out.scope_attributes.push((k, v));
            })?;
        }
        if let Some((_, ValueView::Text(service))) =
            out.resource.iter().find(|(k, _)| *k == "service.name")
        {
            out.service = service;
        }
        let tenant = out.resource.iter().find_map(|(k, v)| match v {
            ValueView::Text(text) if *k == TENANT_ATTRIBUTE => Some(*text),
            _ => None,
        });
        out.tenant = tenant.unwrap_or(DEFAULT_TENANT);
        Ok(out)
    }
}

/// The type letter and text of an attribute value (see `schema`).
pub fn encode_value(value: Option<&AnyValue>) -> (char, String) {
    let mut text = String::new();
    let letter = write_value(value.and_then(|v| v.value.as_ref()), &mut text);
    (letter, text)
}

/// Appends the text of an attribute value to `out` and returns its type letter.
fn write_value(value: Option<&any_value::Value>, out: &mut String) -> char {
    use any_value::Value;
    use std::fmt::Write;
    match value {
        None => 'n',
        Some(Value::StringValue(s)) => {
            out.push_str(s);
            's'
        }
        Some(Value::BoolValue(b)) => {
            out.push_str(if *b { "true" } else { "false" });
            'b'
        }
        Some(Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
            'i'
        }
        Some(Value::DoubleValue(d)) => {
            let _ = write!(out, "{d}");
            'd'
        }
        Some(Value::BytesValue(b)) => {
            out.push_str(&hex(b));
            'y'
        }
        Some(Value::ArrayValue(a)) => {
            out.push_str(&serde_json::to_string(a).unwrap_or_default());
            'a'
        }
        Some(Value::KvlistValue(k)) => {
            out.push_str(&serde_json::to_string(k).unwrap_or_default());
            'k'
        }
        Some(Value::StringValueStrindex(i)) => {
            let _ = write!(out, "{i}");
            'x'
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Appends the text of a value read from the wire to `out` and returns its type letter
/// (as `write_value` would for the decoded value).
pub(crate) fn write_view(value: ValueView<'_>, out: &mut String) -> char {
    use std::fmt::Write;
    match value {
        ValueView::Unset => 'n',
        ValueView::Text(s) => {
            out.push_str(s);
            's'
        }
        ValueView::Bool(b) => {
            out.push_str(if b { "true" } else { "false" });
            'b'
        }
        ValueView::Int(i) => {
            let _ = write!(out, "{i}");
            'i'
        }
        ValueView::Double(d) => {
            let _ = write!(out, "{d}");
            'd'
        }
        ValueView::Bytes(b) => {
            out.push_str(&hex(b));
            'y'
        }
        // Arrays, lists and string-table indexes are rare: decoded to print them as OTLP
        // JSON, as the decoded form does. The bytes were checked when the batch was staged.
        ValueView::Other(body) => {
            let decoded = AnyValue::decode(body).unwrap_or_default();
            write_value(decoded.value.as_ref(), out)
        }
    }
}

/// The text of a value read from the wire (see `write_view`).
pub(crate) fn view_text(value: ValueView<'_>) -> String {
    let mut text = String::new();
    write_view(value, &mut text);
    text
}

/// Builds one `Map<Utf8, Utf8>` column and its type-letter column, a row at a time.
struct AttrColumn {
    keys: StringBuilder,
    values: StringBuilder,
    offsets: Vec<i32>,
    types: StringBuilder,
    letters: String,
    scratch: String,
}

impl AttrColumn {
    /// Room for `rows` rows whose attributes take about `bytes` bytes on the wire (keys
    /// and values take less than their encoding, so the buffers are allocated once).
    fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        let items = bytes / 16;
        Self {
            keys: StringBuilder::with_capacity(items, bytes / 2),
            values: StringBuilder::with_capacity(items, bytes),
            offsets,
            types: StringBuilder::with_capacity(rows, items),
            letters: String::new(),
            scratch: String::new(),
        }
    }

    fn item(&mut self, key: &str, value: ValueView<'_>) {
        self.keys.append_value(key);
        // Strings, most values, go in without an intermediate copy.
        let letter = match value {
            ValueView::Text(s) => {
                self.values.append_value(s);
                's'
            }
            other => {
                self.scratch.clear();
                let letter = write_view(other, &mut self.scratch);
                self.values.append_value(&self.scratch);
                letter
            }
        };
        self.letters.push(letter);
    }

    /// Ends the row whose items were added since the last one.
    fn end_row(&mut self) {
        self.offsets.push(self.keys.len() as i32);
        self.types.append_value(&self.letters);
        self.letters.clear();
    }

    /// One row holding the attributes in `field` of each of `bodies`.
    fn push_bodies(&mut self, bodies: &[&[u8]], field: u32) -> Result<(), StoreError> {
        for body in bodies {
            for_each_attribute(body, field, |key, value| self.item(key, value))?;
        }
        self.end_row();
        Ok(())
    }

    fn finish(mut self) -> Result<[ArrayRef; 2], StoreError> {
        let entries_field = schema::map_entries(&schema::string_map());
        let DataType::Struct(fields) = entries_field.data_type() else {
            unreachable!("map entries are a struct");
        };
        let entries = StructArray::try_new(
            fields.clone(),
            vec![Arc::new(self.keys.finish()), Arc::new(self.values.finish())],
            None,
        )?;
        let offsets = OffsetBuffer::new(self.offsets.into());
        let map = MapArray::try_new(entries_field, offsets, entries, None, false)?;
        Ok([Arc::new(map), Arc::new(self.types.finish())])
    }
}

/// Builds a `List<Struct>` column from child arrays and per-row item counts.
fn list_of(
    fields: Fields,
    children: Vec<ArrayRef>,
    offsets: Vec<i32>,
) -> Result<ArrayRef, StoreError> {
    let items = StructArray::try_new(fields.clone(), children, None)?;
    let item = Arc::new(arrow::datatypes::Field::new(
        "item",
        DataType::Struct(fields),
        false,
    ));
    Ok(Arc::new(ListArray::try_new(
        item,
        OffsetBuffer::new(offsets.into()),
        Arc::new(items),
        None,
    )?))
}

struct Events {
    time: TimestampNanosecondBuilder,
    name: StringBuilder,
    dropped: UInt32Builder,
    attrs: AttrColumn,
    offsets: Vec<i32>,
    count: i32,
}

struct Links {
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    trace_state: StringBuilder,
    dropped: UInt32Builder,
    flags: UInt32Builder,
    attrs: AttrColumn,
    offsets: Vec<i32>,
    count: i32,
}

/// The plain text columns of a row, in schema order.
fn texts<'a>(row: &SpanRef<'a>) -> [&'a str; 8] {
    let span = &row.span;
    [
        span.trace_state,
        row.origin.tenant,
        row.origin.service,
        span.name,
        kind_name(span.kind),
        status_name(span.status_code),
        span.status_message,
        row.origin.scope.name,
    ]
}

/// The values of the promoted attributes of one span: for each, the first attribute with
/// its key among the span's, then the resource's; then the same for its newer name.
#[derive(Default)]
struct Promoted<'a> {
    /// [promoted column][key or newer key][span or resource]
    found: [[[Option<ValueView<'a>>; 2]; 2]; PROMOTED.len()],
}

impl<'a> Promoted<'a> {
    fn see(&mut self, source: usize, key: &str, value: ValueView<'a>) {
        for (slot, (old, newer, _, _)) in self.found.iter_mut().zip(PROMOTED) {
            let which = if key == old {
                0
            } else if !newer.is_empty() && key == newer {
                1
            } else {
                continue;
            };
            slot[which][source].get_or_insert(value);
        }
    }

    fn value(&self, column: usize) -> Option<ValueView<'a>> {
        let [key, newer] = &self.found[column];
        // The first attribute with a key decides for its source; one without a value
        // leaves the lookup to the next source.
        [key[0], key[1], newer[0], newer[1]]
            .into_iter()
            .flatten()
            .find(|value| *value != ValueView::Unset)
    }
}

/// Converts spans into one record batch of the span table, in the order given, handing
/// each to `summariser` on the way (with the attributes this reads anyway).
pub(crate) fn spans_to_batch<'a>(
    rows: &[SpanRef<'a>],
    summariser: &mut Summariser<'_, 'a>,
) -> Result<RecordBatch, StoreError> {
    let n = rows.len();
    let span_bytes: usize = rows.iter().map(|r| r.span.body.len()).sum();
    let resource_bytes: usize = rows.iter().map(|r| text_bytes(&r.origin.resource)).sum();
    let scope_bytes: usize = rows
        .iter()
        .map(|r| text_bytes(&r.origin.scope_attributes))
        .sum();
    let mut trace_id = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut span_id = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut parent = BinaryBuilder::with_capacity(n, n * 8);
    let mut strings: [StringBuilder; 8] = std::array::from_fn(|_| StringBuilder::new());
    let mut flags = UInt32Builder::with_capacity(n);
    let mut start = TimestampNanosecondBuilder::with_capacity(n);
    let mut end = TimestampNanosecondBuilder::with_capacity(n);
    let mut duration = Int64Builder::with_capacity(n);
    let mut resource_attrs = AttrColumn::with_capacity(n, resource_bytes);
    let mut span_attrs = AttrColumn::with_capacity(n, span_bytes);
    let mut scope_attrs = AttrColumn::with_capacity(n, scope_bytes);
    let mut promoted_str: Vec<StringBuilder> = (0..4)
        .map(|_| StringBuilder::with_capacity(n, n * 8))
        .collect();
    let mut promoted_int = Int64Builder::with_capacity(n);
    let mut dropped: Vec<UInt32Builder> = (0..3).map(|_| UInt32Builder::with_capacity(n)).collect();
    let mut events = Events {
        time: TimestampNanosecondBuilder::new(),
        name: StringBuilder::new(),
        dropped: UInt32Builder::new(),
        attrs: AttrColumn::with_capacity(0, 0),
        offsets: Vec::with_capacity(n + 1),
        count: 0,
    };
    events.offsets.push(0);
    let mut links = Links {
        trace_id: FixedSizeBinaryBuilder::new(16),
        span_id: FixedSizeBinaryBuilder::new(8),
        trace_state: StringBuilder::new(),
        dropped: UInt32Builder::new(),
        flags: UInt32Builder::new(),
        attrs: AttrColumn::with_capacity(0, 0),
        offsets: Vec::with_capacity(n + 1),
        count: 0,
    };
    links.offsets.push(0);

    for row in rows {
        summariser.push_fields(row);
        let span = &row.span;
        trace_id.append_value(fixed::<16>(span.trace_id))?;
        span_id.append_value(fixed::<8>(span.span_id))?;
        if span.parent_span_id.is_empty() {
            parent.append_null();
        } else {
            parent.append_value(span.parent_span_id);
        }
        for (builder, text) in strings.iter_mut().zip(texts(row)) {
            builder.append_value(text);
        }
        flags.append_value(span.flags);
        start.append_value(span.start as i64);
        end.append_value(span.end as i64);
        duration.append_value(span.end.saturating_sub(span.start) as i64);
        let mut promoted = Promoted::default();
        for &(key, value) in &row.origin.resource {
            resource_attrs.item(key, value);
            promoted.see(1, key, value);
        }
        resource_attrs.end_row();
        span.for_each_attribute(|key, value| {
            span_attrs.item(key, value);
            promoted.see(0, key, value);
            summariser.span_attribute(key, value);
        })?;
        span_attrs.end_row();
        for &(key, value) in &row.origin.scope_attributes {
            scope_attrs.item(key, value);
        }
        scope_attrs.end_row();
        push_promoted(&promoted, &mut promoted_str, &mut promoted_int);
        for (builder, value) in dropped.iter_mut().zip([
            span.dropped_attributes,
            span.dropped_events,
            span.dropped_links,
        ]) {
            builder.append_value(value);
        }
        push_events(span, &mut events)?;
        push_links(span, &mut links)?;
    }

    let mut scope_version = StringBuilder::new();
    for row in rows {
        scope_version.append_value(row.origin.scope.version);
    }
    let [
        s_trace_state,
        s_tenant,
        s_service,
        s_name,
        s_kind,
        s_code,
        s_message,
        s_scope,
    ] = strings.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let [ra, rt] = resource_attrs.finish()?;
    let [sa, st] = span_attrs.finish()?;
    let [ca, ct] = scope_attrs.finish()?;
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(parent.finish()),
        s_trace_state,
        Arc::new(flags.finish()),
        s_tenant,
        s_service,
        s_name,
        s_kind,
        Arc::new(start.finish().with_timezone("UTC")),
        Arc::new(end.finish().with_timezone("UTC")),
        Arc::new(duration.finish()),
        s_code,
        s_message,
        ra,
        rt,
        sa,
        st,
    ];
    let mut promoted_str = promoted_str.into_iter();
    for (_, _, _, is_int) in PROMOTED {
        if is_int {
            columns.push(Arc::new(promoted_int.finish()));
        } else if let Some(mut b) = promoted_str.next() {
            columns.push(Arc::new(b.finish()));
        }
    }
    columns.push(finish_events(events)?);
    columns.push(finish_links(links)?);
    columns.extend([
        s_scope,
        Arc::new(scope_version.finish()) as ArrayRef,
        ca,
        ct,
    ]);
    for mut b in dropped {
        columns.push(Arc::new(b.finish()));
    }
    Ok(RecordBatch::try_new(schema::span_schema(), columns)?)
}

/// About the bytes the keys and values of `attributes` take as text (room to allocate).
fn text_bytes(attributes: &[Attribute<'_>]) -> usize {
    let value = |v: &ValueView<'_>| match v {
        ValueView::Text(text) => text.len(),
        _ => NON_STRING_BYTES,
    };
    attributes.iter().map(|(k, v)| k.len() + value(v)).sum()
}

/// Room for a value that is not a string (its text form is written later).
const NON_STRING_BYTES: usize = 24;

/// Ids of the wrong length (malformed input) are stored as zeros rather than failing the block.
fn fixed<const N: usize>(id: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    if id.len() == N {
        out.copy_from_slice(id);
    }
    out
}

fn push_promoted(promoted: &Promoted<'_>, strings: &mut [StringBuilder], int: &mut Int64Builder) {
    let mut next = strings.iter_mut();
    for (column, (_, _, _, is_int)) in PROMOTED.into_iter().enumerate() {
        let value = promoted.value(column);
        if is_int {
            int.append_option(match value {
                Some(ValueView::Int(i)) => Some(i),
                Some(ValueView::Text(s)) => s.parse().ok(),
                _ => None,
            });
        } else if let Some(builder) = next.next() {
            builder.append_option(match value {
                Some(ValueView::Text(s)) => Some(s),
                _ => None,
            });
        }
    }
}

fn push_events(span: &SpanView<'_>, events: &mut Events) -> Result<(), StoreError> {
    let mut failed = None;
    span.for_each_event(|event| {
        events.time.append_value(event.time as i64);
        events.name.append_value(event.name);
        events.dropped.append_value(event.dropped_attributes);
        if let Err(e) = events.attrs.push_bodies(&[event.body], EVENT_ATTRIBUTES) {
            failed = Some(e);
        }
        events.count += 1;
    })?;
    events.offsets.push(events.count);
    failed.map_or(Ok(()), Err)
}

fn push_links(span: &SpanView<'_>, links: &mut Links) -> Result<(), StoreError> {
    let mut failed = None;
    span.for_each_link(|link| {
        let ids = links
            .trace_id
            .append_value(fixed::<16>(link.trace_id))
            .and_then(|()| links.span_id.append_value(fixed::<8>(link.span_id)));
        let attrs = links.attrs.push_bodies(&[link.body], LINK_ATTRIBUTES);
        if let Err(e) = ids.map_err(StoreError::from).and(attrs) {
            failed = Some(e);
        }
        links.trace_state.append_value(link.trace_state);
        links.dropped.append_value(link.dropped_attributes);
        links.flags.append_value(link.flags);
        links.count += 1;
    })?;
    links.offsets.push(links.count);
    failed.map_or(Ok(()), Err)
}

fn finish_events(mut e: Events) -> Result<ArrayRef, StoreError> {
    let [a, t] = e.attrs.finish()?;
    let children: Vec<ArrayRef> = vec![
        Arc::new(e.time.finish().with_timezone("UTC")),
        Arc::new(e.name.finish()),
        a,
        t,
        Arc::new(e.dropped.finish()),
    ];
    list_of(schema::event_fields(), children, e.offsets)
}

fn finish_links(mut l: Links) -> Result<ArrayRef, StoreError> {
    let [a, t] = l.attrs.finish()?;
    let children: Vec<ArrayRef> = vec![
        Arc::new(l.trace_id.finish()),
        Arc::new(l.span_id.finish()),
        Arc::new(l.trace_state.finish()),
        a,
        t,
        Arc::new(l.dropped.finish()),
        Arc::new(l.flags.finish()),
    ];
    list_of(schema::link_fields(), children, l.offsets)
}

pub const KINDS: [&str; 6] = [
    "unspecified",
    "internal",
    "server",
    "client",
    "producer",
    "consumer",
];
pub const STATUSES: [&str; 3] = ["unset", "ok", "error"];

fn kind_name(kind: i32) -> &'static str {
    usize::try_from(kind)
        .ok()
        .and_then(|k| KINDS.get(k))
        .copied()
        .unwrap_or("unspecified")
}

fn status_name(code: i32) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|c| STATUSES.get(c))
        .copied()
        .unwrap_or("unset")
}
