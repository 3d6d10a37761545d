//! Spans waiting to become a block, kept as the request bytes they arrived in: where each
//! span is, sorted by (trace id, start time), and a partial summary of each trace. The
//! span table's columns are built once, when the block is encoded, straight from the
//! bytes (columns built per batch took twice the bytes' memory and a second, sorted copy).

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
use super::summary::{TraceSummary, fixed_id, summarise, trace_runs};

/// Where a resource and scope of a batch are (each occurrence of them), shared by their
/// spans.
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
    /// The batch's requests, as one `ExportTraceServiceRequest` encoding (shared by its
    /// partitions' chunks).
    bytes: Bytes,
    origins: Arc<[OriginAt]>,
    /// In (trace id, start time) order.
    spans: Vec<SpanAt>,
    /// One summary per trace of the chunk (parts of one trace merge by `TraceSummary::merge`).
    pub summaries: Vec<TraceSummary>,
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

    /// Bytes this chunk keeps alive: its batch's requests (shared with the batch's other
    /// chunks) and where its spans are.
    pub fn memory_size(&self) -> usize {
        self.bytes.len() + self.spans.len() * size_of::<SpanAt>()
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
    indexed: &[String],
) -> Result<Vec<Staged>, StoreError> {
    let mut request = Vec::new();
    for rs in resource_spans {
        // `ExportTraceServiceRequest.resource_spans` is field 1.
        prost::encoding::message::encode(1, rs, &mut request);
    }
    stage_request(Bytes::from(request), bytes, indexed)
}

/// Splits a batch, given as the `ExportTraceServiceRequest` encodings it is made of, into
/// one chunk per partition, with a partial summary of each trace. Pure and CPU-bound:
/// callers run it outside the writer's lock. Every tenant and time is checked first, so a
/// refused batch leaves no partial trace. The bytes must be valid requests (as a
/// `TraceBatch`'s wire form always is: receivers check requests whole before keeping
/// them): what this pass does not read (attributes, events, links) is read only when the
/// block is encoded, too late to refuse the batch.
pub fn stage(parts: &[Bytes], bytes: u64, indexed: &[String]) -> Result<Vec<Staged>, StoreError> {
    // Copied into one allocation of exactly the batch's bytes (requests joined are one
    // request): a receiver's request bytes may share a larger buffer of the connection
    // that buffering them would keep whole.
    stage_request(Bytes::from(parts.concat()), bytes, indexed)
}

fn stage_request(
    request: Bytes,
    bytes: u64,
    indexed: &[String],
) -> Result<Vec<Staged>, StoreError> {
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
    // Spans by partition: (tenant, hour) → spans with their fields read.
    let mut by_partition: HashMap<(&str, u64), Vec<Located<'_>>> = HashMap::new();
    let mut total = 0u64;
    for (o, (origin, bodies)) in views.0.iter().zip(span_bodies).enumerate() {
        for body in bodies {
            let span = SpanView::read(&request[body.clone()])?;
            let key = (origin.tenant, span.start / NANOS_PER_HOUR);
            by_partition.entry(key).or_default().push(Located {
                row: SpanRef { span, origin },
                at: SpanAt {
                    trace_id: u128::from_be_bytes(fixed_id(span.trace_id)),
                    start: span.start,
                    origin: o as u32,
                    body: (body.start as u32, body.end as u32),
                },
            });
            total += 1;
        }
    }
    let origins: Arc<[OriginAt]> = origins.into();
    let mut staged = Vec::with_capacity(by_partition.len());
    for ((tenant, _), mut located) in by_partition {
        located.sort_unstable_by_key(|l| (l.at.trace_id, l.at.start));
        let partition = Partition::new(tenant, located[0].at.start)?;
        let rows: Vec<SpanRef<'_>> = located.iter().map(|l| l.row).collect();
        let summaries = trace_runs(&rows)
            .map(|run| summarise(run, indexed))
            .collect::<Result<_, _>>()?;
        let share = bytes.saturating_mul(rows.len() as u64) / total.max(1);
        staged.push(Staged {
            partition,
            chunk: Chunk {
                bytes: request.clone(),
                origins: origins.clone(),
                spans: located.iter().map(|l| l.at).collect(),
                summaries,
            },
            bytes: share,
        });
    }
    Ok(staged)
}

/// A span of a batch being staged: its fields and where it is.
struct Located<'a> {
    row: SpanRef<'a>,
    at: SpanAt,
}
