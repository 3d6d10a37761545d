//! `TraceBatch`: the unit that moves through a pipeline, by value.

use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

use super::ack::Ack;

/// A batch of OpenTelemetry spans, grouped as they arrived (resource → scope → spans).
///
/// `size_hint` approximates the batch's protobuf size in bytes; it bounds queues and is
/// kept up to date by the batch operations here without re-encoding.
///
/// `acks` are the acknowledgement handles of the requests whose spans the batch holds:
/// merging batches merges them, splitting copies them to both parts, and a receiver waits
/// until every holder has released them (see `component::ack`).
#[derive(Debug, Clone, Default)]
pub struct TraceBatch {
    pub resource_spans: Vec<ResourceSpans>,
    size_hint: usize,
    acks: Vec<Ack>,
}

impl PartialEq for TraceBatch {
    /// Batches are equal when they hold the same spans; acknowledgement handles do not count.
    fn eq(&self, other: &Self) -> bool {
        self.resource_spans == other.resource_spans
    }
}

impl TraceBatch {
    /// Wraps decoded resource spans whose encoded size is `size_hint` bytes.
    pub fn new(resource_spans: Vec<ResourceSpans>, size_hint: usize) -> Self {
        Self {
            resource_spans,
            size_hint,
            acks: Vec::new(),
        }
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

    /// The number of spans in the batch.
    pub fn span_count(&self) -> usize {
        let mut count = 0;
        for rs in &self.resource_spans {
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
        self.size_hint = encoded_len(&self.resource_spans);
    }

    pub fn is_empty(&self) -> bool {
        self.span_count() == 0
    }

    /// Moves every span of `other` into this batch.
    pub fn append(&mut self, mut other: TraceBatch) {
        self.size_hint += other.size_hint;
        self.resource_spans.append(&mut other.resource_spans);
        self.acks.append(&mut other.acks);
    }

    /// Splits off the first `max_spans` spans into a new batch, keeping the rest here.
    /// Resource and scope are copied onto both sides where a split falls inside them.
    pub fn split_front(&mut self, max_spans: usize) -> TraceBatch {
        let total = self.span_count();
        if max_spans >= total {
            return std::mem::take(self);
        }
        let mut front = Vec::new();
        let mut remaining = max_spans;
        let mut taken_rs = 0;
        for rs in self.resource_spans.iter_mut() {
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
        let mut whole: Vec<ResourceSpans> = self.resource_spans.drain(..taken_rs).collect();
        whole.append(&mut front);
        let front_hint = self.size_hint * max_spans / total.max(1);
        self.size_hint -= front_hint;
        let mut front = TraceBatch::new(whole, front_hint);
        front.acks = self.acks.clone();
        front
    }

    /// Removes spans for which `keep` returns false; returns how many were removed.
    /// Empty scopes and resources are removed too.
    pub fn retain_spans(
        &mut self,
        mut keep: impl FnMut(&ResourceSpans, &opentelemetry_proto::tonic::trace::v1::Span) -> bool,
    ) -> usize {
        let before = self.span_count();
        for rs in self.resource_spans.iter_mut() {
            let mut scopes = std::mem::take(&mut rs.scope_spans);
            for ss in scopes.iter_mut() {
                ss.spans.retain(|span| keep(rs, span));
            }
            scopes.retain(|ss| !ss.spans.is_empty());
            rs.scope_spans = scopes;
        }
        self.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
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
