//! Protobuf `ExportTraceServiceRequest` bytes into opentelemetry-proto's structs.
//!
//! prost's generated decoder grows every repeated field one push at a time: a span's ten
//! attributes cost four allocations and three copies, a scope's spans a dozen more, and on
//! the OTLP → batch → nop path decoding was two thirds of the CPU. This decoder first counts
//! the entries of each repeated field (a scan of field headers) and allocates them once.
//! It accepts what prost accepts and refuses what prost refuses (malformed varints, lengths
//! past the end, invalid UTF-8, a known field with the wrong wire type, nesting deeper than
//! 100 messages), with the message, field and byte offset in the error. Unknown fields are
//! skipped; a field seen twice keeps its last value, and a message field seen twice is
//! merged, as protobuf specifies.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// Messages nested deeper than this are refused (prost's limit).
const MAX_DEPTH: u32 = 100;

/// Most entries of one repeated field allocated before they are decoded.
const MAX_RESERVED: usize = 1 << 16;

/// Why a request's bytes are not a valid `ExportTraceServiceRequest` (boxed: every read
/// returns a `Result`, and a small one is cheaper to pass back).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0)]
pub(crate) struct WireError(Box<Problem>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem} in {message}.{field} at byte {offset}")]
struct Problem {
    problem: &'static str,
    message: &'static str,
    field: &'static str,
    offset: usize,
}

type Result<T> = std::result::Result<T, WireError>;

/// Decodes a whole request.
pub(crate) fn decode_request(buf: &[u8]) -> Result<ExportTraceServiceRequest> {
    let mut request = ExportTraceServiceRequest::default();
    decode_request_into(buf, &mut request.resource_spans)?;
    Ok(request)
}

/// Decodes a whole request, appending its resource spans to `out` (on an error, what was
/// decoded before it stays there).
pub(crate) fn decode_request_into(buf: &[u8], out: &mut Vec<ResourceSpans>) -> Result<()> {
    let mut c = Cursor {
        buf,
        pos: 0,
        end: buf.len(),
        message: "ExportTraceServiceRequest",
    };
    let [count] = c.counts([1]);
    out.reserve(count);
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => {
                let mut value = ResourceSpans::default();
                c.nested(wire, "resource_spans", 1, &mut value, resource_spans)?;
                out.push(value);
            }
            _ => c.skip(field, wire, 1)?,
        }
    }
    Ok(())
}

/// Why a span's ids make it unacceptable, if they do: every span needs a 16-byte trace id
/// and an 8-byte span id, neither all zero (the OTLP specification's invalid ids).
pub(crate) fn span_ids_problem(trace_id: &[u8], span_id: &[u8]) -> Option<&'static str> {
    if trace_id.len() != 16 || all_zero(trace_id) {
        return Some("trace_id must be 16 bytes and not all zero");
    }
    if span_id.len() != 8 || all_zero(span_id) {
        return Some("span_id must be 8 bytes and not all zero");
    }
    None
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

/// `buf`, a request `scan` accepted, with a string attribute `key` appended to the resource
/// of each `ResourceSpans` whose entry in `values` is `Some` (protobuf merges a repeated
/// `resource` field, so the attribute is a few bytes at the end of the entry; nothing
/// else is decoded or re-encoded).
pub(crate) fn append_resource_attribute(
    buf: &[u8],
    scan: &Scan<'_>,
    key: &str,
    values: &[Option<&str>],
) -> Vec<u8> {
    use prost::encoding::encode_varint;
    const TAG_1_LEN: u8 = 0x0a;
    const TAG_2_LEN: u8 = 0x12;
    fn field_len(len: usize) -> usize {
        1 + prost::encoding::encoded_len_varint(len as u64) + len
    }
    let extra: usize = values
        .iter()
        .flatten()
        .map(|v| 32 + key.len() + v.len())
        .sum();
    let mut out = Vec::with_capacity(buf.len() + extra);
    let mut copied = 0;
    for (found, value) in scan.resources.iter().zip(values) {
        let Some(value) = value else { continue };
        let any_value = field_len(value.len());
        let key_value = field_len(key.len()) + field_len(any_value);
        let resource = field_len(key_value);
        let body = &buf[found.body.clone()];
        out.extend_from_slice(&buf[copied..found.field_start]);
        // ExportTraceServiceRequest.resource_spans, its body, then one more
        // ResourceSpans.resource holding Resource.attributes = [KeyValue].
        out.push(TAG_1_LEN);
        encode_varint((body.len() + field_len(resource)) as u64, &mut out);
        out.extend_from_slice(body);
        out.push(TAG_1_LEN);
        encode_varint(resource as u64, &mut out);
        out.push(TAG_1_LEN);
        encode_varint(key_value as u64, &mut out);
        out.push(TAG_1_LEN);
        encode_varint(key.len() as u64, &mut out);
        out.extend_from_slice(key.as_bytes());
        out.push(TAG_2_LEN);
        encode_varint(any_value as u64, &mut out);
        out.push(TAG_1_LEN);
        encode_varint(value.len() as u64, &mut out);
        out.extend_from_slice(value.as_bytes());
        copied = found.body.end;
    }
    out.extend_from_slice(&buf[copied..]);
    out
}

/// Protobuf wire types.
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const I32: u8 = 5;

/// A position in the request and the end of the message being read.
#[derive(Clone, Copy)]
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    /// The message being read, for errors.
    message: &'static str,
}

impl<'a> Cursor<'a> {
    #[cold]
    fn error(&self, problem: &'static str, field: &'static str) -> WireError {
        WireError(Box::new(Problem {
            problem,
            message: self.message,
            field,
            offset: self.pos,
        }))
    }

    /// Most varints (keys, lengths, small numbers) are one byte.
    #[inline(always)]
    fn varint(&mut self, field: &'static str) -> Result<u64> {
        if self.pos < self.end {
            let byte = self.buf[self.pos];
            if byte < 0x80 {
                self.pos += 1;
                return Ok(u64::from(byte));
            }
        }
        self.varint_slow(field)
    }

    #[inline(never)]
    fn varint_slow(&mut self, field: &'static str) -> Result<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            if self.pos >= self.end {
                return Err(self.error("truncated varint", field));
            }
            let byte = self.buf[self.pos];
            self.pos += 1;
            // The tenth byte may only hold the top bit of a 64-bit value.
            if i == 9 && byte > 1 {
                return Err(self.error("varint longer than 64 bits", field));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(self.error("varint longer than 64 bits", field))
    }

    /// The next field's number and wire type, or `None` at the end of the message.
    #[inline]
    fn key(&mut self) -> Result<Option<(u32, u8)>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let key = self.varint("key")?;
        let wire = (key & 7) as u8;
        let field = key >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(self.error("invalid field number", "key"));
        }
        Ok(Some((field as u32, wire)))
    }

    #[inline]
    fn expect(&self, wire: u8, want: u8, field: &'static str) -> Result<()> {
        if wire == want {
            Ok(())
        } else {
            Err(self.error("wrong wire type", field))
        }
    }

    /// The bytes of a length-delimited field.
    #[inline]
    fn bytes(&mut self, wire: u8, field: &'static str) -> Result<&'a [u8]> {
        self.expect(wire, LEN, field)?;
        let len = self.varint(field)?;
        let start = self.pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| start.checked_add(len))
            .filter(|end| *end <= self.end)
            .ok_or_else(|| self.error("length past the end of the message", field))?;
        self.pos = end;
        Ok(&self.buf[start..end])
    }

    #[inline]
    fn string(&mut self, wire: u8, field: &'static str) -> Result<String> {
        Ok(self.text(wire, field)?.to_owned())
    }

    /// A string field, checked to be UTF-8 but not copied.
    #[inline]
    fn text(&mut self, wire: u8, field: &'static str) -> Result<&'a str> {
        let start = self.pos;
        let bytes = self.bytes(wire, field)?;
        if bytes.is_ascii() {
            // SAFETY: ASCII is valid UTF-8. Nearly every key and value is ASCII, and this
            // word-at-a-time check inlines where `str::from_utf8` is a call per string
            // (a tenth of the decode).
            return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
        }
        std::str::from_utf8(bytes).map_err(|_| {
            self.pos = start;
            self.error("invalid UTF-8", field)
        })
    }

    #[inline]
    fn uint(&mut self, wire: u8, field: &'static str) -> Result<u64> {
        self.expect(wire, VARINT, field)?;
        self.varint(field)
    }

    #[inline]
    fn fixed64(&mut self, wire: u8, field: &'static str) -> Result<u64> {
        self.expect(wire, I64, field)?;
        let bytes = self.fixed::<8>(field)?;
        Ok(u64::from_le_bytes(bytes))
    }

    #[inline]
    fn fixed32(&mut self, wire: u8, field: &'static str) -> Result<u32> {
        self.expect(wire, I32, field)?;
        let bytes = self.fixed::<4>(field)?;
        Ok(u32::from_le_bytes(bytes))
    }

    #[inline]
    fn fixed<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let bytes = self
            .buf
            .get(self.pos..self.pos + N)
            .filter(|_| self.pos + N <= self.end)
            .ok_or_else(|| self.error("truncated fixed-width value", field))?;
        self.pos += N;
        Ok(bytes.try_into().expect("N bytes"))
    }

    /// Reads an embedded message with `decode`, merging into `value`.
    #[inline(always)]
    fn nested<T>(
        &mut self,
        wire: u8,
        field: &'static str,
        depth: u32,
        value: &mut T,
        decode: impl FnOnce(&mut Cursor<'a>, u32, &mut T) -> Result<()>,
    ) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(self.error("messages nested too deeply", field));
        }
        let bytes = self.bytes(wire, field)?;
        let mut inner = Cursor {
            buf: self.buf,
            pos: self.pos - bytes.len(),
            end: self.pos,
            message: self.message,
        };
        decode(&mut inner, depth + 1, value)
    }

    /// Skips a field this decoder does not know.
    fn skip(&mut self, field: u32, wire: u8, depth: u32) -> Result<()> {
        match wire {
            VARINT => self.varint("unknown field").map(drop),
            I64 => self.fixed::<8>("unknown field").map(drop),
            I32 => self.fixed::<4>("unknown field").map(drop),
            LEN => self.bytes(LEN, "unknown field").map(drop),
            START_GROUP => {
                if depth >= MAX_DEPTH {
                    return Err(self.error("messages nested too deeply", "unknown field"));
                }
                loop {
                    let Some((inner, inner_wire)) = self.key()? else {
                        return Err(self.error("group without its end", "unknown field"));
                    };
                    if inner_wire == END_GROUP {
                        if inner != field {
                            return Err(self.error("mismatched end of group", "unknown field"));
                        }
                        return Ok(());
                    }
                    self.skip(inner, inner_wire, depth + 1)?;
                }
            }
            END_GROUP => Err(self.error("end of a group never started", "unknown field")),
            _ => Err(self.error("invalid wire type", "unknown field")),
        }
    }

    /// How many times each of `fields` occurs as a length-delimited field in the rest of
    /// this message: the capacities of its repeated fields. Stops quietly at anything
    /// malformed (or a group), which the decoding pass then reports (or skips).
    fn counts<const N: usize>(&self, fields: [u32; N]) -> [usize; N] {
        let mut out = [0; N];
        let mut scan = *self;
        while let Ok(Some((field, wire))) = scan.key() {
            let len = match wire {
                LEN => {
                    if let Some(i) = fields.iter().position(|f| *f == field) {
                        out[i] += 1;
                    }
                    scan.varint("").map(|len| len as usize)
                }
                VARINT => scan.varint("").map(|_| 0),
                I64 => Ok(8),
                I32 => Ok(4),
                _ => break,
            };
            let Ok(len) = len else { break };
            scan.pos = scan.pos.saturating_add(len);
            if scan.pos > scan.end {
                break;
            }
        }
        // A message that claims millions of entries and then fails reserves no more than
        // this; past it the vector grows as entries are decoded.
        out.map(|n| n.min(MAX_RESERVED))
    }
}

fn resource_spans(c: &mut Cursor<'_>, depth: u32, out: &mut ResourceSpans) -> Result<()> {
    c.message = "ResourceSpans";
    let [scopes] = c.counts([2]);
    out.scope_spans.reserve_exact(scopes);
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => {
                let resource = out.resource.get_or_insert_with(Resource::default);
                c.nested(wire, "resource", depth, resource, self::resource)?;
            }
            2 => {
                let mut value = ScopeSpans::default();
                c.nested(wire, "scope_spans", depth, &mut value, scope_spans)?;
                out.scope_spans.push(value);
            }
            3 => out.schema_url = c.string(wire, "schema_url")?,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn resource(c: &mut Cursor<'_>, depth: u32, out: &mut Resource) -> Result<()> {
    c.message = "Resource";
    let [attributes, entities] = c.counts([1, 3]);
    out.attributes.reserve_exact(attributes);
    out.entity_refs.reserve_exact(entities);
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => push_key_value(c, wire, depth, &mut out.attributes)?,
            2 => out.dropped_attributes_count = c.uint(wire, "dropped_attributes_count")? as u32,
            3 => {
                let mut value = EntityRef::default();
                c.nested(wire, "entity_refs", depth, &mut value, entity_ref)?;
                out.entity_refs.push(value);
            }
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn entity_ref(c: &mut Cursor<'_>, depth: u32, out: &mut EntityRef) -> Result<()> {
    c.message = "EntityRef";
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => out.schema_url = c.string(wire, "schema_url")?,
            2 => out.r#type = c.string(wire, "type")?,
            3 => out.id_keys.push(c.string(wire, "id_keys")?),
            4 => out
                .description_keys
                .push(c.string(wire, "description_keys")?),
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn scope_spans(c: &mut Cursor<'_>, depth: u32, out: &mut ScopeSpans) -> Result<()> {
    c.message = "ScopeSpans";
    let [spans] = c.counts([2]);
    out.spans.reserve_exact(spans);
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => {
                let scope = out.scope.get_or_insert_with(InstrumentationScope::default);
                c.nested(wire, "scope", depth, scope, self::scope)?;
            }
            2 => {
                let mut value = Span::default();
                c.nested(wire, "spans", depth, &mut value, span)?;
                out.spans.push(value);
            }
            3 => out.schema_url = c.string(wire, "schema_url")?,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn scope(c: &mut Cursor<'_>, depth: u32, out: &mut InstrumentationScope) -> Result<()> {
    c.message = "InstrumentationScope";
    let [attributes] = c.counts([3]);
    out.attributes.reserve_exact(attributes);
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => out.name = c.string(wire, "name")?,
            2 => out.version = c.string(wire, "version")?,
            3 => push_key_value(c, wire, depth, &mut out.attributes)?,
            4 => out.dropped_attributes_count = c.uint(wire, "dropped_attributes_count")? as u32,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn span(c: &mut Cursor<'_>, depth: u32, out: &mut Span) -> Result<()> {
    c.message = "Span";
    let [attributes, events, links] = c.counts([9, 11, 13]);
    out.attributes.reserve_exact(attributes);
    out.events.reserve_exact(events);
    out.links.reserve_exact(links);
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => out.trace_id = c.bytes(wire, "trace_id")?.to_vec(),
            2 => out.span_id = c.bytes(wire, "span_id")?.to_vec(),
            3 => out.trace_state = c.string(wire, "trace_state")?,
            4 => out.parent_span_id = c.bytes(wire, "parent_span_id")?.to_vec(),
            5 => out.name = c.string(wire, "name")?,
            6 => out.kind = c.uint(wire, "kind")? as i32,
            7 => out.start_time_unix_nano = c.fixed64(wire, "start_time_unix_nano")?,
            8 => out.end_time_unix_nano = c.fixed64(wire, "end_time_unix_nano")?,
            9 => push_key_value(c, wire, depth, &mut out.attributes)?,
            10 => out.dropped_attributes_count = c.uint(wire, "dropped_attributes_count")? as u32,
            11 => {
                let mut value = Event::default();
                c.nested(wire, "events", depth, &mut value, event)?;
                out.events.push(value);
            }
            12 => out.dropped_events_count = c.uint(wire, "dropped_events_count")? as u32,
            13 => {
                let mut value = Link::default();
                c.nested(wire, "links", depth, &mut value, link)?;
                out.links.push(value);
            }
            14 => out.dropped_links_count = c.uint(wire, "dropped_links_count")? as u32,
            15 => {
                let status = out.status.get_or_insert_with(Status::default);
                c.nested(wire, "status", depth, status, self::status)?;
            }
            16 => out.flags = c.fixed32(wire, "flags")?,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn status(c: &mut Cursor<'_>, depth: u32, out: &mut Status) -> Result<()> {
    c.message = "Status";
    while let Some((field, wire)) = c.key()? {
        match field {
            2 => out.message = c.string(wire, "message")?,
            3 => out.code = c.uint(wire, "code")? as i32,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn event(c: &mut Cursor<'_>, depth: u32, out: &mut Event) -> Result<()> {
    c.message = "Event";
    let [attributes] = c.counts([3]);
    out.attributes.reserve_exact(attributes);
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => out.time_unix_nano = c.fixed64(wire, "time_unix_nano")?,
            2 => out.name = c.string(wire, "name")?,
            3 => push_key_value(c, wire, depth, &mut out.attributes)?,
            4 => out.dropped_attributes_count = c.uint(wire, "dropped_attributes_count")? as u32,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn link(c: &mut Cursor<'_>, depth: u32, out: &mut Link) -> Result<()> {
    c.message = "Link";
    let [attributes] = c.counts([4]);
    out.attributes.reserve_exact(attributes);
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => out.trace_id = c.bytes(wire, "trace_id")?.to_vec(),
            2 => out.span_id = c.bytes(wire, "span_id")?.to_vec(),
            3 => out.trace_state = c.string(wire, "trace_state")?,
            4 => push_key_value(c, wire, depth, &mut out.attributes)?,
            5 => out.dropped_attributes_count = c.uint(wire, "dropped_attributes_count")? as u32,
            6 => out.flags = c.fixed32(wire, "flags")?,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn push_key_value(
    c: &mut Cursor<'_>,
    wire: u8,
    depth: u32,
    attributes: &mut Vec<KeyValue>,
) -> Result<()> {
    let mut value = KeyValue::default();
    c.nested(wire, "attributes", depth, &mut value, key_value)?;
    attributes.push(value);
    Ok(())
}

fn key_value(c: &mut Cursor<'_>, depth: u32, out: &mut KeyValue) -> Result<()> {
    c.message = "KeyValue";
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => out.key = c.string(wire, "key")?,
            2 => {
                let value = out.value.get_or_insert_with(AnyValue::default);
                c.nested(wire, "value", depth, value, any_value)?;
            }
            3 => out.key_strindex = c.uint(wire, "key_strindex")? as i32,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn any_value(c: &mut Cursor<'_>, depth: u32, out: &mut AnyValue) -> Result<()> {
    use any_value::Value;
    c.message = "AnyValue";
    while let Some((field, wire)) = c.key()? {
        out.value = Some(match field {
            1 => Value::StringValue(c.string(wire, "string_value")?),
            2 => Value::BoolValue(c.uint(wire, "bool_value")? != 0),
            3 => Value::IntValue(c.uint(wire, "int_value")? as i64),
            4 => Value::DoubleValue(f64::from_bits(c.fixed64(wire, "double_value")?)),
            5 => {
                // A oneof's message seen twice is merged when the same member is set.
                let mut array = match out.value.take() {
                    Some(Value::ArrayValue(array)) => array,
                    _ => ArrayValue::default(),
                };
                c.nested(wire, "array_value", depth, &mut array, array_value)?;
                Value::ArrayValue(array)
            }
            6 => {
                let mut list = match out.value.take() {
                    Some(Value::KvlistValue(list)) => list,
                    _ => KeyValueList::default(),
                };
                c.nested(wire, "kvlist_value", depth, &mut list, key_value_list)?;
                Value::KvlistValue(list)
            }
            7 => Value::BytesValue(c.bytes(wire, "bytes_value")?.to_vec()),
            8 => Value::StringValueStrindex(c.uint(wire, "string_value_strindex")? as i32),
            _ => {
                c.skip(field, wire, depth)?;
                continue;
            }
        });
    }
    Ok(())
}

fn array_value(c: &mut Cursor<'_>, depth: u32, out: &mut ArrayValue) -> Result<()> {
    c.message = "ArrayValue";
    let [values] = c.counts([1]);
    out.values.reserve_exact(values);
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => {
                let mut value = AnyValue::default();
                c.nested(wire, "values", depth, &mut value, any_value)?;
                out.values.push(value);
            }
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn key_value_list(c: &mut Cursor<'_>, depth: u32, out: &mut KeyValueList) -> Result<()> {
    c.message = "KeyValueList";
    let [values] = c.counts([1]);
    out.values.reserve_exact(values);
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => push_key_value(c, wire, depth, &mut out.values)?,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

mod scan;
pub(crate) mod view;

pub(crate) use scan::{Scan, scan_request};

#[cfg(test)]
mod tests;
