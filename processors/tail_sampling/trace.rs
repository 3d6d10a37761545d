//! A buffered trace: its spans with their resource and scope, and what policies look at.

use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, TracesData, status};
use tokio::time::Instant;

use crate::component::tenant::tenant_of;

/// The spans of one trace that arrived in one batch, already split from the rest.
#[derive(Debug, Clone)]
pub struct Piece {
    pub trace_id: u128,
    pub group: ResourceSpans,
    pub spans: usize,
    /// The bytes the group takes once encoded into a trace's buffer (as one `resource_spans`
    /// field of a `TracesData`): what the memory budget accounts.
    pub bytes: usize,
}

impl Piece {
    /// Wraps one group of spans of a single trace, measuring it.
    pub fn new(trace_id: u128, group: ResourceSpans) -> Self {
        let spans = group.scope_spans.iter().map(|ss| ss.spans.len()).sum();
        // The whole group, resource and scope included: each piece holds its own copy.
        let bytes = prost::encoding::message::encoded_len(1, &group);
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

    /// The group encoded alone, in a buffer of exactly its size.
    pub fn encode(&self) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(self.bytes);
        self.encode_into(&mut buffer);
        buffer
    }

    /// Appends the group as one `resource_spans` field: concatenated pieces stay a valid
    /// `TracesData`, so one buffer holds a whole trace and decodes in one call.
    fn encode_into(&self, buffer: &mut Vec<u8>) {
        prost::encoding::message::encode(1, &self.group, buffer);
    }
}

/// Decodes a buffer of concatenated pieces.
pub fn decode_groups(buffer: &[u8]) -> Vec<ResourceSpans> {
    <TracesData as prost::Message>::decode(buffer)
        .expect("spans the sampler encoded itself should decode")
        .resource_spans
}

fn spans_of(group: &ResourceSpans) -> impl Iterator<Item = &Span> {
    group.scope_spans.iter().flat_map(|ss| ss.spans.iter())
}

fn is_error(span: &Span) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == status::StatusCode::Error as i32)
}

/// A trace's spans: encoded while buffered, decoded once a decision needs them.
#[derive(Debug)]
enum Body {
    /// Concatenated pieces, a `TracesData` encoding (see `Piece::encode_into`).
    Encoded(Vec<u8>),
    Decoded(Vec<ResourceSpans>),
}

/// A trace waiting for its decision. Its spans are held encoded (about their wire size,
/// instead of the several times more a decoded span takes) with a summary that most
/// policies decide on; `decode` restores them for attribute policies and for output.
/// Kept small: a shard holds one per buffered trace in its map.
#[derive(Debug)]
pub struct Trace {
    pub trace_id: u128,
    body: Body,
    pub spans: usize,
    pub bytes: usize,
    pub first_at: Instant,
    pub last_at: Instant,
    pub root_at: Option<Instant>,
    /// Bit `1 << code` for each span status code seen.
    statuses: u8,
    /// True when the trace counts against the memory share of its tenant (`tenant`).
    pub shared: bool,
    min_start: u64,
    max_end: u64,
    tenant: Option<Box<str>>,
    /// Distinguishes this trace from an earlier one with the same id in lazy queues.
    pub seq: u64,
    /// The deadline the shard's timer queue currently holds for this trace.
    pub scheduled: Instant,
}

impl Trace {
    pub fn new(trace_id: u128, now: Instant, seq: u64) -> Self {
        Self {
            trace_id,
            body: Body::Encoded(Vec::new()),
            spans: 0,
            bytes: 0,
            first_at: now,
            last_at: now,
            root_at: None,
            statuses: 0,
            shared: false,
            min_start: u64::MAX,
            max_end: 0,
            tenant: None,
            seq,
            scheduled: now,
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
        if self.tenant.is_none() {
            self.tenant = tenant_of(piece.group.resource.as_ref()).map(Box::from);
        }
        self.spans += piece.spans;
        self.bytes += piece.bytes;
        self.last_at = now;
        match &mut self.body {
            Body::Encoded(buffer) => {
                reserve(buffer, piece.bytes);
                piece.encode_into(buffer);
            }
            Body::Decoded(groups) => groups.push(piece.group),
        }
    }

    /// Decodes the held spans (once) and hands back their encoding, which stays the cheaper
    /// way to hold them once decided.
    pub fn decode(&mut self) -> Option<Vec<u8>> {
        let Body::Encoded(buffer) = &mut self.body else {
            return None;
        };
        let buffer = std::mem::take(buffer);
        self.body = Body::Decoded(decode_groups(&buffer));
        Some(buffer)
    }

    /// The held spans, encoded (again, if `decode` ran and its encoding was not kept).
    pub fn into_encoded(self) -> Vec<u8> {
        match self.body {
            Body::Encoded(buffer) => buffer,
            Body::Decoded(resource_spans) => {
                prost::Message::encode_to_vec(&TracesData { resource_spans })
            }
        }
    }

    /// The decoded groups (empty before `decode`).
    pub fn groups(&self) -> &[ResourceSpans] {
        match &self.body {
            Body::Decoded(groups) => groups,
            Body::Encoded(_) => &[],
        }
    }

    pub fn has_error(&self) -> bool {
        self.has_status(status::StatusCode::Error as i32)
    }

    /// True when some span has this status code.
    pub fn has_status(&self, code: i32) -> bool {
        (0..8).contains(&code) && self.statuses & (1 << code) != 0
    }

    /// Every decoded span with the resource it came with (empty before `decode`).
    pub fn spans(&self) -> impl Iterator<Item = (&ResourceSpans, &Span)> {
        self.groups().iter().flat_map(|rs| {
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

/// Makes room for `need` more bytes. The first piece gets exactly its size (most traces
/// arrive in one piece); later ones grow the buffer by at least an eighth, which keeps
/// copying linear while leaving at most an eighth unused (memory the budget does not see).
fn reserve(buffer: &mut Vec<u8>, need: usize) {
    if buffer.capacity() - buffer.len() < need {
        buffer.reserve_exact(need.max(buffer.len() / 8));
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

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::trace::v1::ScopeSpans;

    use super::*;

    fn piece(name: &str) -> Piece {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: name.into(),
            ..Default::default()
        };
        let group = ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        };
        Piece::new(1, group)
    }

    #[test]
    fn pieces_share_one_buffer_that_decodes_in_order() {
        let now = Instant::now();
        let mut trace = Trace::new(1, now, 0);
        trace.add(piece("a"), now);
        let Body::Encoded(buffer) = &trace.body else {
            panic!("a buffered trace should be encoded");
        };
        assert_eq!(
            buffer.capacity(),
            trace.bytes,
            "one piece takes exactly its size"
        );
        trace.add(piece("bb"), now);
        trace.add(piece("ccc"), now);
        let Body::Encoded(buffer) = &trace.body else {
            panic!("a buffered trace should be encoded");
        };
        assert_eq!(
            buffer.len(),
            trace.bytes,
            "the budget counts every held byte"
        );
        let encoded = trace
            .decode()
            .expect("the first decode hands back the encoding");
        assert_eq!(encoded.len(), trace.bytes);
        assert_eq!(trace.decode(), None);
        let names: Vec<&str> = trace.spans().map(|(_, s)| s.name.as_str()).collect();
        assert_eq!(names, ["a", "bb", "ccc"]);
        assert_eq!(trace.spans, 3);
        assert_eq!(
            decode_groups(&trace.into_encoded()),
            decode_groups(&encoded)
        );
    }
}
