//! `TraceBatch`: the unit that moves through a pipeline, by value.

use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::ack::Ack;
use super::wire::decode_request_into;

/// A batch of OpenTelemetry spans, grouped as they arrived (resource → scope → spans).
///
/// A batch holds its spans decoded (opentelemetry-proto's structs), in their protobuf wire
/// form, or both. A batch made by a receiver from a request it validated keeps the request's
/// bytes and decodes them only when something asks for the structs: the `batch` processor
/// joins wire forms, the `otlp` exporter sends them, the trace store logs them, and on a
/// path that only forwards or drops spans no struct is ever built. Changing the spans
/// ([`TraceBatch::resource_spans_mut`]) drops the wire form.
///
/// `size_hint` approximates the batch's protobuf size in bytes; it bounds queues and is
/// kept up to date by the batch operations here without re-encoding.
///
/// `acks` are the acknowledgement handles of the requests whose spans the batch holds:
/// merging batches merges them, splitting copies them to both parts, and a receiver waits
/// until every holder has released them (see `component::ack`).
#[derive(Debug, Clone, Default)]
pub struct TraceBatch {
    /// The decoded spans; filled on first use when the batch came as wire bytes.
    decoded: OnceLock<Vec<ResourceSpans>>,
    /// The spans as `ExportTraceServiceRequest` bytes, when nothing has changed them since.
    wire: Option<Wire>,
    size_hint: usize,
    acks: Vec<Ack>,
}

/// Validated `ExportTraceServiceRequest` encodings; their concatenation is one too
/// (a request is a repeated field, and protobuf concatenation appends to it).
#[derive(Debug, Clone, Default)]
struct Wire {
    parts: Vec<Bytes>,
    spans: usize,
}

impl Wire {
    fn decode(&self) -> Vec<ResourceSpans> {
        let mut out = Vec::new();
        for part in &self.parts {
            decode_request_into(part, &mut out)
                .expect("wire bytes in a batch should have been validated by scan_request");
        }
        out
    }
}

impl PartialEq for TraceBatch {
    /// Batches are equal when they hold the same spans; acknowledgement handles do not count.
    fn eq(&self, other: &Self) -> bool {
        self.resource_spans() == other.resource_spans()
    }
}

impl TraceBatch {
    /// Wraps decoded resource spans whose encoded size is `size_hint` bytes.
    pub fn new(resource_spans: Vec<ResourceSpans>, size_hint: usize) -> Self {
        Self {
            decoded: OnceLock::from(resource_spans),
            wire: None,
            size_hint,
            acks: Vec::new(),
        }
    }

    /// Wraps an `ExportTraceServiceRequest` encoding holding `spans` spans, without decoding it.
    ///
    /// The bytes must be accepted by `wire::scan_request` (which counts the spans): they
    /// are decoded later, when something asks for the structs, and that cannot fail then.
    pub(crate) fn from_validated_request(bytes: Bytes, spans: usize) -> Self {
        debug_assert!(super::wire::scan_request(&bytes).is_ok_and(|s| s.spans == spans));
        Self {
            decoded: OnceLock::new(),
            size_hint: bytes.len(),
            wire: Some(Wire {
                parts: vec![bytes],
                spans,
            }),
            acks: Vec::new(),
        }
    }

    /// Wraps a request's spans together with the bytes they were decoded from (unchanged
    /// since), so that what writes or forwards the batch as bytes need not encode it again.
    pub(crate) fn from_decoded_request(bytes: Bytes, resource_spans: Vec<ResourceSpans>) -> Self {
        let mut batch = Self::new(resource_spans, bytes.len());
        let spans = batch.span_count();
        batch.wire = Some(Wire {
            parts: vec![bytes],
            spans,
        });
        batch
    }

    /// Adds an acknowledgement handle that this batch now holds.
    pub fn hold_ack(&mut self, ack: Ack) {
        self.acks.push(ack);
    }

    /// Releases every acknowledgement this batch holds: the data is accepted and its
    /// senders need not wait for it any longer (it is not durable past this point).
    pub fn release_acks(&mut self) {
        self.acks.clear();
    }

    /// True while some sender still waits on this batch.
    pub fn holds_acks(&self) -> bool {
        !self.acks.is_empty()
    }

    /// Wraps resource spans and measures their encoded size.
    pub fn measured(resource_spans: Vec<ResourceSpans>) -> Self {
        let size_hint = encoded_len(&resource_spans);
        Self::new(resource_spans, size_hint)
    }

    /// The spans, decoded on first use if the batch holds only their wire form.
    pub fn resource_spans(&self) -> &[ResourceSpans] {
        self.decoded
            .get_or_init(|| self.wire.as_ref().map(Wire::decode).unwrap_or_default())
    }

    /// The spans, to change: the wire form no longer matches, so it is dropped.
    pub fn resource_spans_mut(&mut self) -> &mut Vec<ResourceSpans> {
        self.resource_spans();
        self.wire = None;
        self.decoded
            .get_mut()
            .expect("resource_spans() should have filled the decoded spans")
    }

    /// Takes the spans out of the batch (its acknowledgements are released with it).
    pub fn into_resource_spans(mut self) -> Vec<ResourceSpans> {
        self.resource_spans();
        self.decoded.take().unwrap_or_default()
    }

    /// The batch as `ExportTraceServiceRequest` encodings whose concatenation holds its
    /// spans, if the batch still has its wire form.
    pub fn wire_parts(&self) -> Option<&[Bytes]> {
        self.wire.as_ref().map(|wire| wire.parts.as_slice())
    }

    /// The batch as one `ExportTraceServiceRequest` encoding: its wire form joined (no copy
    /// when it is one piece), or its spans encoded.
    pub fn encode_request(&self) -> Bytes {
        if let Some([only]) = self.wire_parts() {
            return only.clone();
        }
        let mut buf = BytesMut::with_capacity(self.encoded_request_len());
        self.encode_request_into(&mut buf);
        buf.freeze()
    }

    /// The size of `encode_request`'s output, without encoding.
    pub fn encoded_request_len(&self) -> usize {
        match self.wire_parts() {
            Some(parts) => parts.iter().map(Bytes::len).sum(),
            None => encoded_len(self.resource_spans()),
        }
    }

    /// Appends what `encode_request` returns to `buf`, without an intermediate copy.
    pub fn encode_request_into(&self, buf: &mut impl BufMut) {
        match self.wire_parts() {
            Some(parts) => parts.iter().for_each(|part| buf.put_slice(part)),
            None => {
                for rs in self.resource_spans() {
                    prost::encoding::message::encode(1, rs, buf);
                }
            }
        }
    }

    /// The number of spans in the batch.
    pub fn span_count(&self) -> usize {
        if let Some(wire) = &self.wire {
            return wire.spans;
        }
        let mut count = 0;
        for rs in self.resource_spans() {
            for ss in &rs.scope_spans {
                count += ss.spans.len();
            }
        }
        count
    }

    /// The approximate encoded size in bytes.
    pub fn size_hint(&self) -> usize {
        self.size_hint
    }

    /// Re-measures the encoded size after a processor changed the spans.
    pub fn remeasure(&mut self) {
        self.size_hint = self.encoded_request_len();
    }

    pub fn is_empty(&self) -> bool {
        self.span_count() == 0
    }

    /// Moves every span of `other` into this batch. Two batches in wire form are joined
    /// without decoding either.
    pub fn append(&mut self, mut other: TraceBatch) {
        self.size_hint += other.size_hint;
        self.acks.append(&mut other.acks);
        if self.wire.is_none() && self.decoded.get().is_none_or(Vec::is_empty) {
            // Nothing here yet: take the other batch's form as it is.
            self.decoded = std::mem::take(&mut other.decoded);
            self.wire = other.wire.take();
            return;
        }
        match (&mut self.wire, other.wire.take()) {
            (Some(mine), Some(theirs)) => {
                mine.parts.extend(theirs.parts);
                mine.spans += theirs.spans;
                // Keep the decoded spans only where both sides have them already.
                match (self.decoded.get_mut(), other.decoded.take()) {
                    (Some(decoded), Some(mut more)) => decoded.append(&mut more),
                    _ => self.decoded = OnceLock::new(),
                }
            }
            (_, theirs) => {
                other.wire = theirs;
                let mut more = other.into_resource_spans();
                self.resource_spans_mut().append(&mut more);
            }
        }
    }

    /// Splits off the first `max_spans` spans into a new batch, keeping the rest here.
    /// Resource and scope are copied onto both sides where a split falls inside them.
    pub fn split_front(&mut self, max_spans: usize) -> TraceBatch {
        let total = self.span_count();
        if max_spans >= total {
            return std::mem::take(self);
        }
        let resource_spans = self.resource_spans_mut();
        let mut front = Vec::new();
        let mut remaining = max_spans;
        let mut taken_rs = 0;
        for rs in resource_spans.iter_mut() {
            if remaining == 0 {
                break;
            }
            let rs_spans: usize = rs.scope_spans.iter().map(|ss| ss.spans.len()).sum();
            if rs_spans <= remaining {
                remaining -= rs_spans;
                taken_rs += 1;
                continue;
            }
            front.push(split_resource(rs, remaining));
            remaining = 0;
        }
        let mut whole: Vec<ResourceSpans> = resource_spans.drain(..taken_rs).collect();
        whole.append(&mut front);
        let front_hint = self.size_hint * max_spans / total.max(1);
        self.size_hint -= front_hint;
        let mut front = TraceBatch::new(whole, front_hint);
        front.acks = self.acks.clone();
        front
    }

    /// Removes spans for which `keep` returns false; returns how many were removed.
    /// Empty scopes and resources are removed too.
    pub fn retain_spans(&mut self, mut keep: impl FnMut(&ResourceSpans, &Span) -> bool) -> usize {
        let before = self.span_count();
        let resource_spans = self.resource_spans_mut();
        for rs in resource_spans.iter_mut() {
            let mut scopes = std::mem::take(&mut rs.scope_spans);
            for ss in scopes.iter_mut() {
                ss.spans.retain(|span| keep(rs, span));
            }
            scopes.retain(|ss| !ss.spans.is_empty());
            rs.scope_spans = scopes;
        }
        resource_spans.retain(|rs| !rs.scope_spans.is_empty());
        let removed = before - self.span_count();
        if removed > 0 && before > 0 {
            self.size_hint -= self.size_hint * removed / before;
        }
        removed
    }
}

/// Takes the first `n` spans of a resource (which holds more than `n`) into a new one.
fn split_resource(rs: &mut ResourceSpans, mut n: usize) -> ResourceSpans {
    let mut scopes = Vec::new();
    let mut whole_scopes = 0;
    for ss in rs.scope_spans.iter_mut() {
        if n == 0 {
            break;
        }
        if ss.spans.len() <= n {
            n -= ss.spans.len();
            whole_scopes += 1;
            continue;
        }
        let rest = ss.spans.split_off(n);
        let front_spans = std::mem::replace(&mut ss.spans, rest);
        scopes.push(ScopeSpans {
            scope: ss.scope.clone(),
            spans: front_spans,
            schema_url: ss.schema_url.clone(),
        });
        n = 0;
    }
    let mut taken: Vec<ScopeSpans> = rs.scope_spans.drain(..whole_scopes).collect();
    taken.append(&mut scopes);
    ResourceSpans {
        resource: rs.resource.clone(),
        scope_spans: taken,
        schema_url: rs.schema_url.clone(),
    }
}

/// The protobuf size of an `ExportTraceServiceRequest` holding these resource spans.
pub fn encoded_len(resource_spans: &[ResourceSpans]) -> usize {
    prost::encoding::message::encoded_len_repeated(1, resource_spans)
}

#[cfg(test)]
mod tests;
