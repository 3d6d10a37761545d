//! A pool of pre-encoded requests, re-sent with fresh trace ids and shifted timestamps at the cost of one copy.
//!
//! Encoding 500 spans costs about as much as decoding them, so a load generator that encoded every request
//! would measure itself. Instead each request is encoded once; the byte offsets of every trace id and
//! timestamp are recorded, and each later pass over the pool XORs the trace ids and span ids (with the
//! parent ids, so trees stay intact) with per-pass salts and adds the elapsed time to the timestamps.
//! Spans of one trace keep one id; neither traces nor span ids repeat across passes, so what a store
//! makes of the ids (they are most of what cannot be compressed) is what it makes of real ones. Pre-compressed bodies (HTTP with gzip) cannot be patched and are re-sent unchanged.

use std::io::Write;
use std::ops::Range;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::generate::{self, GenParams, GenSpan};
use super::topology;

/// How request bodies are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

/// What the pool is built from.
#[derive(Debug, Clone)]
pub struct PoolParams {
    pub size: usize,
    pub batch_spans: usize,
    pub tenants: usize,
    pub encoding: Encoding,
    /// Compress bodies once at build time (HTTP); such bodies are re-sent unchanged.
    pub precompress: bool,
    pub seed: u64,
    pub generator: GenParams,
}

/// A place in an encoded body to rewrite on each pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Patch {
    /// 16 raw trace-id bytes (protobuf): the first 8 are XORed with the salt.
    RawTraceId(usize),
    /// 8 raw span-id (or parent-span-id) bytes (protobuf): XORed with the span salt.
    RawSpanId(usize),
    /// A little-endian fixed64 nanosecond timestamp (protobuf).
    RawTime(usize),
    /// 32 hex digits (JSON): the first 16 are XORed with the salt.
    HexTraceId(usize),
    /// 16 hex digits of a span or parent span id (JSON): XORed with the span salt.
    HexSpanId(usize),
    /// A decimal nanosecond timestamp of `len` digits inside a JSON string.
    DecimalTime(usize, usize),
}

/// One encoded request.
#[derive(Debug, Clone)]
pub struct Pooled {
    pub body: Bytes,
    pub spans: u64,
    pub tenant: Option<String>,
    patches: Vec<Patch>,
}

/// The pool the senders cycle through.
#[derive(Debug)]
pub struct Pool {
    entries: Vec<Pooled>,
}

impl Pool {
    pub fn build(params: &PoolParams) -> Pool {
        let mut rng = StdRng::seed_from_u64(params.seed);
        let mut entries = Vec::with_capacity(params.size);
        for index in 0..params.size.max(1) {
            let tenant = (params.tenants > 0).then(|| format!("tenant-{}", index % params.tenants));
            let spans = batch_of_traces(&mut rng, params);
            let count = spans.len() as u64;
            let request = topology::request(spans, tenant.as_deref(), index as u32 * 7919);
            entries.push(encode(&request, params, count, tenant));
        }
        Pool { entries }
    }

    /// The request for sequence number `seq` and the pass over the pool it belongs to.
    pub fn get(&self, seq: u64) -> (&Pooled, u64) {
        let len = self.entries.len() as u64;
        (&self.entries[(seq % len) as usize], seq / len)
    }

    /// Average encoded (and, if so configured, compressed) bytes per span.
    pub fn bytes_per_span(&self) -> f64 {
        let bytes: usize = self.entries.iter().map(|e| e.body.len()).sum();
        let spans: u64 = self.entries.iter().map(|e| e.spans).sum();
        bytes as f64 / spans.max(1) as f64
    }
}

/// Whole traces until `batch_spans`; the last one is cut, which keeps a valid tree because
/// parents are generated before their children.
pub(super) fn batch_of_traces(rng: &mut StdRng, params: &PoolParams) -> Vec<GenSpan> {
    let mut spans = Vec::with_capacity(params.batch_spans);
    while spans.len() < params.batch_spans {
        let mut trace = generate::trace(rng, &params.generator);
        trace.truncate(params.batch_spans - spans.len());
        spans.extend(trace);
    }
    spans
}

fn encode(
    request: &ExportTraceServiceRequest,
    params: &PoolParams,
    spans: u64,
    tenant: Option<String>,
) -> Pooled {
    let raw = match params.encoding {
        Encoding::Protobuf => request.encode_to_vec(),
        // Serializing our own message cannot fail: every field is a plain value.
        Encoding::Json => serde_json::to_vec(request).unwrap_or_default(),
    };
    if params.precompress {
        return Pooled {
            body: gzip(&raw),
            spans,
            tenant,
            patches: Vec::new(),
        };
    }
    let patches = match params.encoding {
        Encoding::Protobuf => protobuf_patches(&raw),
        Encoding::Json => json_patches(&raw),
    };
    Pooled {
        body: Bytes::from(raw),
        spans,
        tenant,
        patches,
    }
}

fn gzip(raw: &[u8]) -> Bytes {
    let mut encoder = GzEncoder::new(Vec::with_capacity(raw.len() / 4), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(raw);
    Bytes::from(encoder.finish().unwrap_or_default())
}

impl Pooled {
    /// The body for pass `pass`, with timestamps moved `shift_nanos` forward.
    pub fn render(&self, pass: u64, shift_nanos: u64) -> Bytes {
        if self.patches.is_empty() || (pass == 0 && shift_nanos == 0) {
            return self.body.clone();
        }
        let salts = if pass == 0 {
            Salts::default()
        } else {
            let trace = splitmix64(pass);
            Salts {
                trace,
                span: splitmix64(trace),
            }
        };
        let mut body = self.body.to_vec();
        for patch in &self.patches {
            apply(&mut body, *patch, salts, shift_nanos);
        }
        Bytes::from(body)
    }

    /// How many places a pass rewrites (0 when the body is re-sent unchanged).
    pub fn patch_count(&self) -> usize {
        self.patches.len()
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What one pass XORs into trace ids and span ids.
#[derive(Debug, Default, Clone, Copy)]
struct Salts {
    trace: u64,
    span: u64,
}

fn apply(body: &mut [u8], patch: Patch, salts: Salts, shift: u64) {
    match patch {
        Patch::RawTraceId(at) => {
            for (byte, key) in body[at..at + 8].iter_mut().zip(salts.trace.to_le_bytes()) {
                *byte ^= key;
            }
        }
        Patch::RawSpanId(at) => {
            for (byte, key) in body[at..at + 8].iter_mut().zip(salts.span.to_le_bytes()) {
                *byte ^= key;
            }
        }
        Patch::RawTime(at) => {
            let mut word = [0u8; 8];
            word.copy_from_slice(&body[at..at + 8]);
            let moved = u64::from_le_bytes(word).wrapping_add(shift);
            body[at..at + 8].copy_from_slice(&moved.to_le_bytes());
        }
        Patch::HexTraceId(at) => {
            let Some(value) = parse_hex(&body[at..at + 16]) else {
                return;
            };
            write_hex(&mut body[at..at + 16], value ^ salts.trace);
        }
        Patch::HexSpanId(at) => {
            let Some(value) = parse_hex(&body[at..at + 16]) else {
                return;
            };
            write_hex(&mut body[at..at + 16], value ^ salts.span);
        }
        Patch::DecimalTime(at, len) => {
            let Some(value) = parse_decimal(&body[at..at + len]) else {
                return;
            };
            write_decimal(&mut body[at..at + len], value.saturating_add(shift));
        }
    }
}

fn parse_hex(digits: &[u8]) -> Option<u64> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
}

fn write_hex(out: &mut [u8], mut value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in out.iter_mut().rev() {
        *byte = DIGITS[(value & 0xf) as usize];
        value >>= 4;
    }
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
}

/// Writes `value` right-aligned; leaves the slot alone if it no longer fits (not before year 2286).
fn write_decimal(out: &mut [u8], value: u64) {
    let text = value.to_string();
    if text.len() == out.len() {
        out.copy_from_slice(text.as_bytes());
    }
}

/// Offsets of trace ids and timestamps in an encoded `ExportTraceServiceRequest`.
fn protobuf_patches(buf: &[u8]) -> Vec<Patch> {
    let mut patches = Vec::new();
    let walked = walk(buf, 0..buf.len(), &mut |field, wire, range| {
        // ExportTraceServiceRequest.resource_spans = 1
        if (field, wire) != (1, WIRE_LEN) {
            return Ok(());
        }
        walk(buf, range, &mut |field, wire, range| {
            // ResourceSpans.scope_spans = 2
            if (field, wire) != (2, WIRE_LEN) {
                return Ok(());
            }
            walk(buf, range, &mut |field, wire, range| {
                // ScopeSpans.spans = 2
                if (field, wire) != (2, WIRE_LEN) {
                    return Ok(());
                }
                span_patches(buf, range, &mut patches)
            })
        })
    });
    // A walk failure would mean prost wrote something we cannot read: send without patching.
    if walked.is_err() {
        patches.clear();
    }
    patches
}

fn span_patches(buf: &[u8], range: Range<usize>, patches: &mut Vec<Patch>) -> Result<(), ()> {
    walk(buf, range, &mut |field, wire, range| {
        match (field, wire) {
            // Span.trace_id = 1
            (1, WIRE_LEN) if range.len() == 16 => patches.push(Patch::RawTraceId(range.start)),
            // Span.span_id = 2, parent_span_id = 4
            (2 | 4, WIRE_LEN) if range.len() == 8 => patches.push(Patch::RawSpanId(range.start)),
            // Span.start_time_unix_nano = 7, end_time_unix_nano = 8
            (7 | 8, WIRE_I64) => patches.push(Patch::RawTime(range.start)),
            // Span.events = 11; Event.time_unix_nano = 1
            (11, WIRE_LEN) => walk(buf, range, &mut |field, wire, range| {
                if (field, wire) == (1, WIRE_I64) {
                    patches.push(Patch::RawTime(range.start));
                }
                Ok(())
            })?,
            _ => {}
        }
        Ok(())
    })
}

const WIRE_VARINT: u64 = 0;
const WIRE_I64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_I32: u64 = 5;

type FieldVisitor<'a> = dyn FnMut(u64, u64, Range<usize>) -> Result<(), ()> + 'a;

/// Calls `visit(field, wire_type, value_range)` for each field of the message in `range`.
fn walk(buf: &[u8], range: Range<usize>, visit: &mut FieldVisitor<'_>) -> Result<(), ()> {
    let mut at = range.start;
    while at < range.end {
        let key = varint(buf, &mut at)?;
        let (field, wire) = (key >> 3, key & 7);
        let start = at;
        match wire {
            WIRE_VARINT => {
                varint(buf, &mut at)?;
            }
            WIRE_I64 => at += 8,
            WIRE_I32 => at += 4,
            WIRE_LEN => {
                let len = usize::try_from(varint(buf, &mut at)?).map_err(|_| ())?;
                at += len;
                if at > range.end {
                    return Err(());
                }
                visit(field, wire, at - len..at)?;
                continue;
            }
            _ => return Err(()),
        }
        if at > range.end {
            return Err(());
        }
        visit(field, wire, start..at)?;
    }
    Ok(())
}

fn varint(buf: &[u8], at: &mut usize) -> Result<u64, ()> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*at).ok_or(())?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(())
}

/// Offsets of trace ids and timestamps in OTLP/JSON, found by their keys.
fn json_patches(buf: &[u8]) -> Vec<Patch> {
    const TRACE_ID: &[u8] = b"traceId\":\"";
    const SPAN_IDS: [&[u8]; 2] = [b"spanId\":\"", b"parentSpanId\":\""];
    const TIMES: [&[u8]; 3] = [
        b"startTimeUnixNano\":\"",
        b"endTimeUnixNano\":\"",
        b"timeUnixNano\":\"",
    ];
    let mut patches = Vec::new();
    for (quote, _) in buf.iter().enumerate().filter(|(_, b)| **b == b'"') {
        let rest = &buf[quote + 1..];
        if rest.starts_with(TRACE_ID) {
            let at = quote + 1 + TRACE_ID.len();
            if buf
                .get(at..at + 32)
                .is_some_and(|d| d.iter().all(u8::is_ascii_hexdigit))
            {
                patches.push(Patch::HexTraceId(at));
            }
            continue;
        }
        for key in SPAN_IDS {
            let at = quote + 1 + key.len();
            if rest.starts_with(key)
                && buf
                    .get(at..at + 16)
                    .is_some_and(|d| d.iter().all(u8::is_ascii_hexdigit))
            {
                patches.push(Patch::HexSpanId(at));
            }
        }
        for key in TIMES {
            if rest.starts_with(key) {
                let at = quote + 1 + key.len();
                let len = buf[at..].iter().take_while(|b| b.is_ascii_digit()).count();
                if len > 0 {
                    patches.push(Patch::DecimalTime(at, len));
                }
            }
        }
    }
    patches
}
