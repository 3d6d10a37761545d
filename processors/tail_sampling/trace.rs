//! A buffered trace: its spans with their resource and scope, and what policies look at.

use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, status};
use tokio::time::Instant;

use crate::component::tenant::tenant_of;

/// The spans of one trace that arrived in one batch, already split from the rest.
#[derive(Debug, Clone)]
pub struct Piece {
    pub trace_id: u128,
    pub group: ResourceSpans,
    pub spans: usize,
    /// The encoded size of the group: what the memory budget accounts.
    pub bytes: usize,
}

impl Piece {
    /// Wraps one group of spans of a single trace, measuring it.
    pub fn new(trace_id: u128, group: ResourceSpans) -> Self {
        let spans = group.scope_spans.iter().map(|ss| ss.spans.len()).sum();
        // The whole group, resource and scope included: each piece holds its own copy.
        let bytes = prost::Message::encoded_len(&group);
        Self {
            trace_id,
            group,
            spans,
            bytes,
        }
    }

    pub fn has_error(&self) -> bool {
        spans_of(&self.group).any(is_error)
    }
}

fn spans_of(group: &ResourceSpans) -> impl Iterator<Item = &Span> {
    group.scope_spans.iter().flat_map(|ss| ss.spans.iter())
}

fn is_error(span: &Span) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == status::StatusCode::Error as i32)
}

/// A trace waiting for its decision. Its spans are held encoded (about their wire size,
/// instead of the several times more a decoded span takes) with a summary that most
/// policies decide on; `decode` restores them for attribute policies and for output.
#[derive(Debug)]
pub struct Trace {
    pub trace_id: u128,
    /// Each piece's `ResourceSpans`, protobuf-encoded.
    chunks: Vec<Vec<u8>>,
    /// The decoded groups, once `decode` ran.
    pub groups: Vec<ResourceSpans>,
    pub spans: usize,
    pub bytes: usize,
    pub first_at: Instant,
    pub last_at: Instant,
    pub root_at: Option<Instant>,
    pub has_error: bool,
    /// Bit `1 << code` for each span status code seen.
    statuses: u8,
    min_start: u64,
    max_end: u64,
    tenant: Option<String>,
    /// Distinguishes this trace from an earlier one with the same id in lazy queues.
    pub seq: u64,
    /// The deadline the shard's timer queue currently holds for this trace.
    pub scheduled: Instant,
    /// The tenant whose memory share this trace counts against, if it has one.
    pub share: Option<String>,
}

impl Trace {
    pub fn new(trace_id: u128, now: Instant, seq: u64) -> Self {
        Self {
            trace_id,
            chunks: Vec::new(),
            groups: Vec::new(),
            spans: 0,
            bytes: 0,
            first_at: now,
            last_at: now,
            root_at: None,
            has_error: false,
            statuses: 0,
            min_start: u64::MAX,
            max_end: 0,
            tenant: None,
            seq,
            scheduled: now,
            share: None,
        }
    }

    pub fn add(&mut self, piece: Piece, now: Instant) {
        for span in spans_of(&piece.group) {
            if span.parent_span_id.is_empty() && self.root_at.is_none() {
                self.root_at = Some(now);
            }
            let code = span.status.as_ref().map_or(0, |s| s.code);
            self.statuses |= 1 << code.clamp(0, 7);
            self.min_start = self.min_start.min(span.start_time_unix_nano);
            self.max_end = self.max_end.max(span.end_time_unix_nano);
        }
        self.has_error |= self.has_status(status::StatusCode::Error as i32);
        if self.tenant.is_none() {
            self.tenant = tenant_of(piece.group.resource.as_ref()).map(str::to_owned);
        }
        self.spans += piece.spans;
        self.bytes += piece.bytes;
        self.last_at = now;
        self.chunks
            .push(prost::Message::encode_to_vec(&piece.group));
    }

    /// Decodes the held spans into `groups` (once).
    pub fn decode(&mut self) {
        for chunk in self.chunks.drain(..) {
            let group = <ResourceSpans as prost::Message>::decode(chunk.as_slice())
                .expect("spans the sampler encoded itself should decode");
            self.groups.push(group);
        }
    }

    /// The held spans: still-encoded chunks and already decoded groups.
    pub fn into_parts(self) -> (Vec<Vec<u8>>, Vec<ResourceSpans>) {
        (self.chunks, self.groups)
    }

    /// True when some span has this status code.
    pub fn has_status(&self, code: i32) -> bool {
        (0..8).contains(&code) && self.statuses & (1 << code) != 0
    }

    /// Every decoded span with the resource it came with (empty before `decode`).
    pub fn spans(&self) -> impl Iterator<Item = (&ResourceSpans, &Span)> {
        self.groups.iter().flat_map(|rs| {
            rs.scope_spans
                .iter()
                .flat_map(move |ss| ss.spans.iter().map(move |s| (rs, s)))
        })
    }

    /// The tenant named on the trace's first resource that names one.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Nanoseconds from the earliest span start to the latest span end.
    pub fn duration_nanos(&self) -> u64 {
        self.max_end.saturating_sub(self.min_start)
    }
}

/// A stable 64-bit hash of a trace id (FNV-1a), the same in every process and version, so
/// that shard choice and probabilistic decisions agree across instances.
pub fn trace_hash(trace_id: u128, salt: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in salt.iter().chain(trace_id.to_be_bytes().iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits mix poorly; a final avalanche spreads them over the whole range.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash
}

/// The trace id as a number; ids of the wrong length are padded or cut to 16 bytes.
pub fn trace_id_of(span: &Span) -> u128 {
    let mut bytes = [0u8; 16];
    let n = span.trace_id.len().min(16);
    bytes[..n].copy_from_slice(&span.trace_id[..n]);
    u128::from_be_bytes(bytes)
}
