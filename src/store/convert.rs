//! OTLP spans → the span table's Arrow record batch, sorted by (trace_id, start time).

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, FixedSizeBinaryBuilder, Int64Builder, ListArray,
    MapArray, RecordBatch, StringBuilder, StructArray, TimestampNanosecondBuilder, UInt32Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Fields};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;

use super::StoreError;
use super::schema::{self, PROMOTED};

/// Where a span came from: shared by every span of one resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub tenant: String,
    pub service: String,
    pub resource: Resource,
    pub scope: InstrumentationScope,
}

/// An owned span with its origin (built by tests and by readers of decoded spans).
#[derive(Debug, Clone)]
pub struct SpanRow {
    pub origin: Arc<Origin>,
    pub span: Span,
}

impl SpanRow {
    pub fn borrowed(&self) -> SpanRef<'_> {
        SpanRef {
            span: &self.span,
            origin: self.origin.borrowed(),
        }
    }
}

impl Origin {
    pub fn borrowed(&self) -> OriginRef<'_> {
        OriginRef {
            tenant: &self.tenant,
            service: &self.service,
            resource: &self.resource,
            scope: &self.scope,
        }
    }
}

/// Where a span came from, borrowed from the request that carried it.
#[derive(Debug, Clone, Copy)]
pub struct OriginRef<'a> {
    pub tenant: &'a str,
    pub service: &'a str,
    pub resource: &'a Resource,
    pub scope: &'a InstrumentationScope,
}

/// A span and its origin, borrowed: what conversion and summaries read, so spans go from
/// a request into the span table's columns without being copied first.
#[derive(Debug, Clone, Copy)]
pub struct SpanRef<'a> {
    pub span: &'a Span,
    pub origin: OriginRef<'a>,
}

/// The `service.name` of a resource, or `""`.
pub fn service_of(resource: &Resource) -> String {
    string_attr(&resource.attributes, "service.name")
        .unwrap_or_default()
        .to_string()
}

pub fn string_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match find(attrs, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    let kv = attrs.iter().find(|kv| kv.key == key)?;
    kv.value.as_ref()?.value.as_ref()
}

/// Sorts spans by trace id, then start time, as the span table is laid out.
pub fn sort_spans(rows: &mut [SpanRef<'_>]) {
    rows.sort_by(|a, b| {
        (&a.span.trace_id, a.span.start_time_unix_nano)
            .cmp(&(&b.span.trace_id, b.span.start_time_unix_nano))
    });
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

/// Builds one `Map<Utf8, Utf8>` column and its type-letter column.
struct AttrColumn {
    keys: StringBuilder,
    values: StringBuilder,
    offsets: Vec<i32>,
    types: StringBuilder,
    letters: String,
    scratch: String,
}

/// What one attribute column will hold, measured before it is built so that its buffers
/// are allocated once: growing them meant copies and freshly faulted pages for every chunk.
#[derive(Debug, Default, Clone, Copy)]
struct AttrSize {
    rows: usize,
    items: usize,
    key_bytes: usize,
    value_bytes: usize,
}

/// Room for a value that is not a string (its text form is written later).
const NON_STRING_BYTES: usize = 24;

impl AttrSize {
    fn add(&mut self, attrs: &[KeyValue]) {
        use any_value::Value;
        self.rows += 1;
        self.items += attrs.len();
        for kv in attrs {
            self.key_bytes += kv.key.len();
            self.value_bytes += match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.len(),
                _ => NON_STRING_BYTES,
            };
        }
    }
}

impl AttrColumn {
    fn with_size(size: AttrSize) -> Self {
        let mut offsets = Vec::with_capacity(size.rows + 1);
        offsets.push(0);
        Self {
            keys: StringBuilder::with_capacity(size.items, size.key_bytes),
            values: StringBuilder::with_capacity(size.items, size.value_bytes),
            offsets,
            types: StringBuilder::with_capacity(size.rows, size.items),
            letters: String::new(),
            scratch: String::new(),
        }
    }

    fn push(&mut self, attrs: &[KeyValue]) {
        use any_value::Value;
        self.letters.clear();
        for kv in attrs {
            self.keys.append_value(&kv.key);
            // Strings, most values, go in without an intermediate copy.
            let letter = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => {
                    self.values.append_value(s);
                    's'
                }
                other => {
                    self.scratch.clear();
                    let letter = write_value(other, &mut self.scratch);
                    self.values.append_value(&self.scratch);
                    letter
                }
            };
            self.letters.push(letter);
        }
        self.offsets.push(self.keys.len() as i32);
        self.types.append_value(&self.letters);
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

#[derive(Default)]
struct Events {
    time: TimestampNanosecondBuilder,
    name: StringBuilder,
    dropped: UInt32Builder,
    offsets: Vec<i32>,
    count: i32,
}

#[derive(Default)]
struct Links {
    trace_id: Option<FixedSizeBinaryBuilder>,
    span_id: Option<FixedSizeBinaryBuilder>,
    trace_state: StringBuilder,
    dropped: UInt32Builder,
    flags: UInt32Builder,
    offsets: Vec<i32>,
    count: i32,
}

/// The plain text columns of a row, in schema order.
fn texts<'a>(row: &SpanRef<'a>) -> [&'a str; 8] {
    let (span, origin) = (row.span, &row.origin);
    let status = span.status.as_ref();
    [
        span.trace_state.as_str(),
        origin.tenant,
        origin.service,
        span.name.as_str(),
        kind_name(span.kind),
        status_name(status.map_or(0, |s| s.code)),
        status.map_or("", |s| s.message.as_str()),
        origin.scope.name.as_str(),
    ]
}

/// Exact sizes of every variable-length buffer of a batch of `rows`.
#[derive(Default)]
struct Sizes {
    texts: [usize; 8],
    scope_version: usize,
    resource: AttrSize,
    span: AttrSize,
    scope: AttrSize,
    events: usize,
    event_names: usize,
    event: AttrSize,
    links: usize,
    link_states: usize,
    link: AttrSize,
}

impl Sizes {
    fn of(rows: &[SpanRef<'_>]) -> Self {
        let mut sizes = Sizes::default();
        for row in rows {
            for (total, text) in sizes.texts.iter_mut().zip(texts(row)) {
                *total += text.len();
            }
            sizes.scope_version += row.origin.scope.version.len();
            sizes.resource.add(&row.origin.resource.attributes);
            sizes.span.add(&row.span.attributes);
            sizes.scope.add(&row.origin.scope.attributes);
            for event in &row.span.events {
                sizes.events += 1;
                sizes.event_names += event.name.len();
                sizes.event.add(&event.attributes);
            }
            for link in &row.span.links {
                sizes.links += 1;
                sizes.link_states += link.trace_state.len();
                sizes.link.add(&link.attributes);
            }
        }
        sizes
    }
}

/// Converts spans into one record batch of the span table, in the order given.
pub fn spans_to_batch(rows: &[SpanRef<'_>]) -> Result<RecordBatch, StoreError> {
    let n = rows.len();
    let sizes = Sizes::of(rows);
    let mut trace_id = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut span_id = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut parent = BinaryBuilder::with_capacity(n, n * 8);
    let mut strings: [StringBuilder; 8] =
        std::array::from_fn(|i| StringBuilder::with_capacity(n, sizes.texts[i]));
    let mut flags = UInt32Builder::with_capacity(n);
    let mut start = TimestampNanosecondBuilder::with_capacity(n);
    let mut end = TimestampNanosecondBuilder::with_capacity(n);
    let mut duration = Int64Builder::with_capacity(n);
    let (mut resource_attrs, mut span_attrs, mut scope_attrs) = (
        AttrColumn::with_size(sizes.resource),
        AttrColumn::with_size(sizes.span),
        AttrColumn::with_size(sizes.scope),
    );
    let mut promoted_str: Vec<StringBuilder> = (0..4)
        .map(|_| StringBuilder::with_capacity(n, n * 8))
        .collect();
    let mut promoted_int = Int64Builder::with_capacity(n);
    let mut dropped: Vec<UInt32Builder> = (0..3).map(|_| UInt32Builder::with_capacity(n)).collect();
    let mut events = Events {
        time: TimestampNanosecondBuilder::with_capacity(sizes.events),
        name: StringBuilder::with_capacity(sizes.events, sizes.event_names),
        dropped: UInt32Builder::with_capacity(sizes.events),
        offsets: Vec::with_capacity(n + 1),
        count: 0,
    };
    events.offsets.push(0);
    let mut event_attrs = AttrColumn::with_size(sizes.event);
    let mut links = Links {
        trace_id: Some(FixedSizeBinaryBuilder::with_capacity(sizes.links, 16)),
        span_id: Some(FixedSizeBinaryBuilder::with_capacity(sizes.links, 8)),
        trace_state: StringBuilder::with_capacity(sizes.links, sizes.link_states),
        dropped: UInt32Builder::with_capacity(sizes.links),
        flags: UInt32Builder::with_capacity(sizes.links),
        offsets: Vec::with_capacity(n + 1),
        count: 0,
    };
    links.offsets.push(0);
    let mut link_attrs = AttrColumn::with_size(sizes.link);

    for row in rows {
        let (span, origin) = (row.span, &row.origin);
        trace_id.append_value(fixed::<16>(&span.trace_id))?;
        span_id.append_value(fixed::<8>(&span.span_id))?;
        if span.parent_span_id.is_empty() {
            parent.append_null();
        } else {
            parent.append_value(&span.parent_span_id);
        }
        for (builder, text) in strings.iter_mut().zip(texts(row)) {
            builder.append_value(text);
        }
        flags.append_value(span.flags);
        let (s, e) = (span.start_time_unix_nano, span.end_time_unix_nano);
        start.append_value(s as i64);
        end.append_value(e as i64);
        duration.append_value(e.saturating_sub(s) as i64);
        resource_attrs.push(&origin.resource.attributes);
        span_attrs.push(&span.attributes);
        scope_attrs.push(&origin.scope.attributes);
        push_promoted(span, origin.resource, &mut promoted_str, &mut promoted_int);
        for (builder, value) in dropped.iter_mut().zip([
            span.dropped_attributes_count,
            span.dropped_events_count,
            span.dropped_links_count,
        ]) {
            builder.append_value(value);
        }
        push_events(span, &mut events, &mut event_attrs);
        push_links(span, &mut links, &mut link_attrs)?;
    }

    let mut scope_version = StringBuilder::with_capacity(n, sizes.scope_version);
    for row in rows {
        scope_version.append_value(&row.origin.scope.version);
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
    columns.push(finish_events(events, event_attrs)?);
    columns.push(finish_links(links, link_attrs)?);
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

/// Ids of the wrong length (malformed input) are stored as zeros rather than failing the block.
fn fixed<const N: usize>(id: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    if id.len() == N {
        out.copy_from_slice(id);
    }
    out
}

fn push_promoted(
    span: &Span,
    resource: &Resource,
    strings: &mut [StringBuilder],
    int: &mut Int64Builder,
) {
    let mut next = strings.iter_mut();
    for (key, newer, _, is_int) in PROMOTED {
        let value = lookup(span, resource, key).or_else(|| lookup(span, resource, newer));
        if is_int {
            int.append_option(match value {
                Some(any_value::Value::IntValue(i)) => Some(*i),
                Some(any_value::Value::StringValue(s)) => s.parse().ok(),
                _ => None,
            });
        } else if let Some(builder) = next.next() {
            builder.append_option(match value {
                Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
                _ => None,
            });
        }
    }
}

fn lookup<'a>(span: &'a Span, resource: &'a Resource, key: &str) -> Option<&'a any_value::Value> {
    if key.is_empty() {
        return None;
    }
    find(&span.attributes, key).or_else(|| find(&resource.attributes, key))
}

fn push_events(span: &Span, events: &mut Events, attrs: &mut AttrColumn) {
    for event in &span.events {
        events.time.append_value(event.time_unix_nano as i64);
        events.name.append_value(&event.name);
        events.dropped.append_value(event.dropped_attributes_count);
        attrs.push(&event.attributes);
        events.count += 1;
    }
    events.offsets.push(events.count);
}

fn push_links(span: &Span, links: &mut Links, attrs: &mut AttrColumn) -> Result<(), StoreError> {
    for link in &span.links {
        if let (Some(t), Some(s)) = (links.trace_id.as_mut(), links.span_id.as_mut()) {
            t.append_value(fixed::<16>(&link.trace_id))?;
            s.append_value(fixed::<8>(&link.span_id))?;
        }
        links.trace_state.append_value(&link.trace_state);
        links.dropped.append_value(link.dropped_attributes_count);
        links.flags.append_value(link.flags);
        attrs.push(&link.attributes);
        links.count += 1;
    }
    links.offsets.push(links.count);
    Ok(())
}

fn finish_events(mut e: Events, attrs: AttrColumn) -> Result<ArrayRef, StoreError> {
    let [a, t] = attrs.finish()?;
    let children: Vec<ArrayRef> = vec![
        Arc::new(e.time.finish().with_timezone("UTC")),
        Arc::new(e.name.finish()),
        a,
        t,
        Arc::new(e.dropped.finish()),
    ];
    list_of(schema::event_fields(), children, e.offsets)
}

fn finish_links(mut l: Links, attrs: AttrColumn) -> Result<ArrayRef, StoreError> {
    let [a, t] = attrs.finish()?;
    let mut ids: Vec<ArrayRef> = Vec::new();
    for builder in [l.trace_id.take(), l.span_id.take()].into_iter().flatten() {
        let mut builder = builder;
        ids.push(Arc::new(builder.finish()));
    }
    let mut children = ids;
    children.extend([
        Arc::new(l.trace_state.finish()) as ArrayRef,
        a,
        t,
        Arc::new(l.dropped.finish()),
        Arc::new(l.flags.finish()),
    ]);
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
