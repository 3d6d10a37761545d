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

    pub fn has_root(&self) -> bool {
        spans_of(&self.group).any(|s| s.parent_span_id.is_empty())
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

/// A trace waiting for its decision.
#[derive(Debug)]
pub struct Trace {
    pub trace_id: u128,
    pub groups: Vec<ResourceSpans>,
    pub spans: usize,
    pub bytes: usize,
    pub first_at: Instant,
    pub last_at: Instant,
    pub root_at: Option<Instant>,
    pub has_error: bool,
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
            groups: Vec::new(),
            spans: 0,
            bytes: 0,
            first_at: now,
            last_at: now,
            root_at: None,
            has_error: false,
            seq,
            scheduled: now,
            share: None,
        }
    }

    pub fn add(&mut self, piece: Piece, now: Instant) {
        if self.root_at.is_none() && piece.has_root() {
            self.root_at = Some(now);
        }
        self.has_error |= piece.has_error();
        self.spans += piece.spans;
        self.bytes += piece.bytes;
        self.last_at = now;
        self.groups.push(piece.group);
    }

    /// Every span with the resource it came with.
    pub fn spans(&self) -> impl Iterator<Item = (&ResourceSpans, &Span)> {
        self.groups.iter().flat_map(|rs| {
            rs.scope_spans
                .iter()
                .flat_map(move |ss| ss.spans.iter().map(move |s| (rs, s)))
        })
    }

    /// The tenant named on the trace's resources, if any.
    pub fn tenant(&self) -> Option<&str> {
        self.groups
            .iter()
            .find_map(|rs| tenant_of(rs.resource.as_ref()))
    }

    /// Nanoseconds from the earliest span start to the latest span end.
    pub fn duration_nanos(&self) -> u64 {
        let mut start = u64::MAX;
        let mut end = 0;
        for (_, span) in self.spans() {
            start = start.min(span.start_time_unix_nano);
            end = end.max(span.end_time_unix_nano);
        }
        end.saturating_sub(start)
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
