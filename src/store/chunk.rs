//! Spans waiting to become a block, kept as the protobuf bytes they arrived in, with where
//! each span is, sorted by (trace id, start time). The span table's columns and the trace
//! summaries are made once, when the block is encoded, straight from the bytes (columns
//! built per batch took twice the bytes' memory and a second, sorted copy; summaries made
//! per batch took another half, in small allocations, and were merged again per block).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::component::tenant::validate_tenant_id;
use crate::component::wire::view::{SpanView, request_layout};

use super::StoreError;
use super::convert::{OriginView, SpanRef};
use super::layout::{NANOS_PER_HOUR, Partition};
use super::summary::{Summariser, TraceSummary, fixed_id};

/// Where a resource and scope are in a chunk's bytes (each occurrence of them), shared by
/// their spans.
#[derive(Debug)]
struct OriginAt {
    resource: Vec<Range<usize>>,
    scope: Vec<Range<usize>>,
}

/// Where one span is, with its sort key.
#[derive(Debug, Clone, Copy)]
pub(super) struct SpanAt {
    /// The trace id read as a big-endian number: sorts like the bytes, compares faster.
    pub trace_id: u128,
    pub start: u64,
    origin: u32,
    body: (u32, u32),
}

/// The spans of one partition from one batch.
#[derive(Debug)]
pub struct Chunk {
    /// The protobuf bodies of the spans and of their resources and scopes: the batch's
    /// request when all its spans are in this partition, else a copy of this partition's
    /// share (so a committed block frees its spans' bytes whatever other partitions hold).
    bytes: Bytes,
    origins: Vec<OriginAt>,
    /// In (trace id, start time) order.
    spans: Vec<SpanAt>,
}

pub type Rows = Arc<Chunk>;

/// One partition's share of a batch, ready to buffer.
#[derive(Debug)]
pub struct Staged {
    pub partition: Partition,
    pub chunk: Chunk,
    /// The share of the batch's OTLP bytes these spans account for.
    pub bytes: u64,
}

/// How much of a span's body `Chunk::prefetch_body` asks for: reading its fields walks all
/// of it, and the CPU's own prefetcher follows once the walk has begun.
const PREFETCH_BYTES: usize = 256;

/// A hint that `at` will be read soon; no effect where the CPU has no such hint.
#[inline(always)]
fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally and cannot fault, whatever the
    // address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// The origins of a chunk's spans, read from its requests.
pub(super) struct Origins<'a>(Vec<OriginView<'a>>);

impl Chunk {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub(super) fn spans(&self) -> &[SpanAt] {
        &self.spans
    }

    /// Bytes this chunk keeps alive: its spans' bytes and where they are.
    pub fn memory_size(&self) -> usize {
        self.bytes.len() + self.spans.len() * size_of::<SpanAt>()
    }

    /// One summary per trace of the chunk, read from its spans (the parts of a trace in
    /// several chunks merge by `TraceSummary::merge`).
    pub fn summaries(&self, indexed: &[String]) -> Result<Vec<TraceSummary>, StoreError> {
        let origins = self.origins()?;
        let mut summariser = Summariser::new(indexed);
        for i in 0..self.len() {
            summariser.push(&self.row(&origins, i)?)?;
        }
        Ok(summariser.finish().iter().map(|t| t.summary()).collect())
    }

    pub(super) fn origins(&self) -> Result<Origins<'_>, StoreError> {
        read_origins(&self.bytes, &self.origins)
    }

    /// The `i`th span, read from its request.
    pub(super) fn row<'a>(
        &'a self,
        origins: &'a Origins<'a>,
        i: usize,
    ) -> Result<SpanRef<'a>, StoreError> {
        let at = &self.spans[i];
        let body = &self.bytes[at.body.0 as usize..at.body.1 as usize];
        Ok(SpanRef {
            span: SpanView::read(body)?,
            origin: &origins.0[at.origin as usize],
        })
    }

    /// Asks the CPU to fetch where row `i` is (see `prefetch_body`).
    pub(super) fn prefetch_place(&self, i: usize) {
        prefetch(self.spans.as_ptr().wrapping_add(i).cast());
    }

    /// Asks the CPU to fetch the first lines of row `i`'s body, once its place is cached.
    /// A block's rows are read in trace order, scattered over all its chunks: each read
    /// waited on memory.
    pub(super) fn prefetch_body(&self, i: usize) {
        let Some(at) = self.spans.get(i) else { return };
        let (start, end) = (at.body.0 as usize, at.body.1 as usize);
        for line in (start..end.min(start + PREFETCH_BYTES)).step_by(64) {
            prefetch(self.bytes.as_ptr().wrapping_add(line));
        }
    }

    /// The chunk's spans of one trace, decoded, grouped by resource and scope.
    pub fn trace(&self, trace_id: &[u8]) -> Result<Vec<ResourceSpans>, StoreError> {
        let wanted = u128::from_be_bytes(fixed_id(trace_id));
        let first = self.spans.partition_point(|s| s.trace_id < wanted);
        let mut out: Vec<(u32, ResourceSpans)> = Vec::new();
        for at in self.spans[first..]
            .iter()
            .take_while(|s| s.trace_id == wanted)
        {
            let origin = &self.origins[at.origin as usize];
            let span = Span::decode(&self.bytes[at.body.0 as usize..at.body.1 as usize])
                .map_err(|e| StoreError::Spans(e.to_string()))?;
            if out.last().is_none_or(|(o, _)| *o != at.origin) {
                out.push((at.origin, origin_group(&self.bytes, origin)?));
            }
            if let Some((_, rs)) = out.last_mut() {
                rs.scope_spans[0].spans.push(span);
            }
        }
        Ok(out.into_iter().map(|(_, rs)| rs).collect())
    }
}

/// Every origin read from the batch's bytes.
fn read_origins<'a>(bytes: &'a [u8], origins: &[OriginAt]) -> Result<Origins<'a>, StoreError> {
    let bodies = |ranges: &[Range<usize>]| -> Vec<&'a [u8]> {
        ranges.iter().map(|r| &bytes[r.clone()]).collect()
    };
    let views = origins
        .iter()
        .map(|o| OriginView::read(&bodies(&o.resource), &bodies(&o.scope)))
        .collect::<Result<_, _>>()?;
    Ok(Origins(views))
}

/// An empty resource-and-scope group for the spans of one origin.
fn origin_group(part: &[u8], origin: &OriginAt) -> Result<ResourceSpans, StoreError> {
    let invalid = |e: prost::DecodeError| StoreError::Spans(e.to_string());
    let mut resource = Resource::default();
    for r in &origin.resource {
        resource.merge(&part[r.clone()]).map_err(invalid)?;
    }
    let mut scope = InstrumentationScope::default();
    for r in &origin.scope {
        scope.merge(&part[r.clone()]).map_err(invalid)?;
    }
    Ok(ResourceSpans {
        resource: Some(resource),
        scope_spans: vec![ScopeSpans {
            scope: Some(scope),
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// `stage` for decoded spans (compaction, the write-ahead log's replay, tests): encoded
/// once, as one request.
pub fn stage_decoded(
    resource_spans: &[ResourceSpans],
    bytes: u64,
) -> Result<Vec<Staged>, StoreError> {
    let mut request = Vec::new();
    for rs in resource_spans {
        // `ExportTraceServiceRequest.resource_spans` is field 1.
        prost::encoding::message::encode(1, rs, &mut request);
    }
    stage_request(Bytes::from(request), bytes)
}

/// Splits a batch, given as the `ExportTraceServiceRequest` encodings it is made of, into
/// one chunk per partition. Pure and CPU-bound: callers run it outside the writer's lock.
/// Every tenant and time is checked first, so a refused batch leaves no partial trace.
/// The bytes must be valid requests (as a `TraceBatch`'s wire form always is: receivers
/// check requests whole before keeping them): what this pass does not read (attributes,
/// events, links) is read only when the block is encoded, too late to refuse the batch.
pub fn stage(parts: &[Bytes], bytes: u64) -> Result<Vec<Staged>, StoreError> {
    // Copied into one allocation of exactly the batch's bytes (requests joined are one
    // request): a receiver's request bytes may share a larger buffer of the connection
    // that buffering them would keep whole.
    stage_request(Bytes::from(parts.concat()), bytes)
}

fn stage_request(request: Bytes, bytes: u64) -> Result<Vec<Staged>, StoreError> {
    // Every resource and scope, and where the spans of each are.
    let (mut origins, mut span_bodies) = (Vec::new(), Vec::new());
    for resource in request_layout(&request)? {
        for scope in resource.scopes {
            origins.push(OriginAt {
                resource: resource.bodies.clone(),
                scope: scope.bodies,
            });
            span_bodies.push(scope.spans);
        }
    }
    let views = read_origins(&request, &origins)?;
    for origin in &views.0 {
        validate_tenant_id(origin.tenant).map_err(StoreError::Tenant)?;
    }
    // Each span's partition, (tenant, hour), by its index in `keys`: nearly always its
    // predecessor's (same origin, same hour), so the map is asked only when it changes.
    let mut partitions: HashMap<(&str, u64), u32> = HashMap::new();
    let mut keys: Vec<(&str, u64)> = Vec::new();
    let mut placed: Vec<(u32, SpanAt)> = Vec::with_capacity(span_bodies.iter().map(Vec::len).sum());
    let mut last: Option<((&str, u64), u32)> = None;
    for (o, (origin, bodies)) in views.0.iter().zip(span_bodies).enumerate() {
        for body in bodies {
            let (trace_id, start) = SpanView::sort_key(&request[body.clone()])?;
            let key = (origin.tenant, start / NANOS_PER_HOUR);
            let partition = match last {
                Some((k, p)) if k == key => p,
                _ => {
                    let p = *partitions.entry(key).or_insert_with(|| {
                        keys.push(key);
                        keys.len() as u32 - 1
                    });
                    last = Some((key, p));
                    p
                }
            };
            let at = SpanAt {
                trace_id: u128::from_be_bytes(fixed_id(trace_id)),
                start,
                origin: o as u32,
                body: (body.start as u32, body.end as u32),
            };
            placed.push((partition, at));
        }
    }
    // One sort puts each partition's spans together, in (trace id, start time) order;
    // each partition's list is then allocated once, at its length.
    let total = placed.len() as u64;
    placed.sort_unstable_by_key(|(p, s)| (*p, s.trace_id, s.start));
    let by_partition = placed
        .chunk_by(|a, b| a.0 == b.0)
        .map(|run| {
            (
                keys[run[0].0 as usize],
                run.iter().map(|(_, s)| *s).collect(),
            )
        })
        .collect::<Vec<((&str, u64), Vec<SpanAt>)>>();
    let whole = by_partition.len() == 1;
    let mut staged = Vec::with_capacity(by_partition.len());
    for ((tenant, _), spans) in by_partition {
        let partition = Partition::new(tenant, spans[0].start)?;
        let share = bytes.saturating_mul(spans.len() as u64) / total.max(1);
        let chunk = if whole {
            Chunk {
                bytes: request.clone(),
                origins: std::mem::take(&mut origins),
                spans,
            }
        } else {
            share_of(&request, &origins, spans)
        };
        staged.push(Staged {
            partition,
            chunk,
            bytes: share,
        });
    }
    Ok(staged)
}

/// A chunk of its own for some of a batch's spans: their bodies, and those of their
/// resources and scopes, copied out of the batch's request.
fn share_of(request: &[u8], origins: &[OriginAt], mut spans: Vec<SpanAt>) -> Chunk {
    let mut used: Vec<Option<u32>> = vec![None; origins.len()];
    let mut kept: Vec<&OriginAt> = Vec::new();
    for span in &spans {
        let slot = &mut used[span.origin as usize];
        if slot.is_none() {
            *slot = Some(kept.len() as u32);
            kept.push(&origins[span.origin as usize]);
        }
    }
    let origin_len = |o: &OriginAt| {
        o.resource
            .iter()
            .chain(&o.scope)
            .map(|r| r.len())
            .sum::<usize>()
    };
    let span_len: usize = spans.iter().map(|s| (s.body.1 - s.body.0) as usize).sum();
    let mut bytes =
        Vec::with_capacity(kept.iter().map(|o| origin_len(o)).sum::<usize>() + span_len);
    let mut copy = |range: Range<usize>| {
        let start = bytes.len();
        bytes.extend_from_slice(&request[range]);
        start..bytes.len()
    };
    let origins = kept
        .iter()
        .map(|o| OriginAt {
            resource: o.resource.iter().map(|r| copy(r.clone())).collect(),
            scope: o.scope.iter().map(|r| copy(r.clone())).collect(),
        })
        .collect();
    for span in &mut spans {
        let body = copy(span.body.0 as usize..span.body.1 as usize);
        span.body = (body.start as u32, body.end as u32);
        span.origin = used[span.origin as usize].unwrap_or_default();
    }
    Chunk {
        bytes: Bytes::from(bytes),
        origins,
        spans,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::store::testdata::{batch, flatten};

    const HOUR: u64 = NANOS_PER_HOUR;
    const START: u64 = 1_700_000_000_000_000_000 / HOUR * HOUR;

    /// Every span of every staged chunk, read back trace by trace.
    fn read_back(chunk: &Chunk) -> Vec<ResourceSpans> {
        let ids: BTreeSet<u128> = chunk.spans().iter().map(|s| s.trace_id).collect();
        ids.into_iter()
            .flat_map(|id| chunk.trace(&id.to_be_bytes()).unwrap())
            .collect()
    }

    #[test]
    fn a_batch_over_several_partitions_is_split_into_chunks_of_their_own_bytes() {
        let acme = batch(1, 30, 4, Some("acme"), START);
        let acme_later = batch(2, 10, 4, Some("acme"), START + HOUR);
        let other = batch(3, 20, 4, Some("other"), START);
        let all: Vec<ResourceSpans> = [&acme, &acme_later, &other]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let request_len: usize = all.iter().map(|rs| rs.encoded_len() + 4).sum();
        let mut staged = stage_decoded(&all, request_len as u64).unwrap();
        staged.sort_by_key(|s| (s.partition.tenant.clone(), s.partition.hour));
        assert_eq!(staged.len(), 3);
        for (s, sent) in staged.iter().zip([&acme, &acme_later, &other]) {
            // Each holds its own spans, resources and scopes, and nothing of the others.
            assert_eq!(flatten(&read_back(&s.chunk)), flatten(sent));
            let own: usize = sent.iter().map(|rs| rs.encoded_len()).sum();
            assert!(s.chunk.memory_size() < own + s.chunk.len() * size_of::<SpanAt>());
            let spans = s.chunk.spans();
            assert!(spans.is_sorted_by_key(|a| (a.trace_id, a.start)));
            let first = spans[0].trace_id.to_be_bytes();
            assert!(!s.chunk.trace(&first).unwrap().is_empty());
        }
        // The shares of the batch's bytes add up to (at most) the whole.
        let shares: u64 = staged.iter().map(|s| s.bytes).sum();
        assert!(shares <= request_len as u64 && shares > request_len as u64 * 9 / 10);
        let of_acme = staged[0].chunk.spans()[0].trace_id.to_be_bytes();
        assert!(staged[2].chunk.trace(&of_acme).unwrap().is_empty());
    }

    #[test]
    fn a_batch_of_one_partition_keeps_its_request_whole() {
        let sent = batch(4, 25, 3, Some("acme"), START);
        let staged = stage_decoded(&sent, 0).unwrap();
        assert_eq!(staged.len(), 1);
        let chunk = &staged[0].chunk;
        assert_eq!(flatten(&read_back(chunk)), flatten(&sent));
        let request: usize = sent
            .iter()
            .map(|rs| prost::encoding::message::encoded_len(1, rs))
            .sum();
        assert_eq!(chunk.bytes.len(), request);
        // Summaries made from a chunk name each of its traces once.
        let summaries = chunk.summaries(&[]).unwrap();
        assert_eq!(summaries.len(), 25);
        assert!(summaries.iter().all(|t| t.span_count == 3 && t.has_root));
    }
}
