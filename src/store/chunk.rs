//! Spans waiting to become a block, kept as the request bytes they arrived in: where each
//! span is, sorted by (trace id, start time), and a partial summary of each trace. The
//! span table's columns are built once, when the block is encoded, straight from the
//! bytes (columns built per batch took twice the bytes' memory and a second, sorted copy).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::component::tenant::{DEFAULT_TENANT, validate_tenant_id};
use crate::component::wire::view::{SpanView, request_layout};

use super::StoreError;
use super::convert::{OriginView, SpanRef, spans_to_batch};
use super::layout::{NANOS_PER_HOUR, Partition};
use super::summary::{TraceSummary, fixed_id, summarise, trace_runs};

/// A resource and scope of one of a batch's requests, shared by its spans.
#[derive(Debug)]
struct OriginAt {
    part: u32,
    tenant: String,
    service: String,
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
    /// The batch's requests (shared by its partitions' chunks).
    parts: Arc<[Bytes]>,
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

    /// Bytes this chunk keeps alive: its requests (shared with the batch's other chunks)
    /// and where its spans are.
    pub fn memory_size(&self) -> usize {
        let parts: usize = self.parts.iter().map(Bytes::len).sum();
        parts + self.spans.len() * size_of::<SpanAt>()
    }

    pub(super) fn origins(&self) -> Result<Origins<'_>, StoreError> {
        let mut out = Vec::with_capacity(self.origins.len());
        for origin in self.origins.iter() {
            let part = &self.parts[origin.part as usize];
            let bodies = |ranges: &[Range<usize>]| -> Vec<&[u8]> {
                ranges.iter().map(|r| &part[r.clone()]).collect()
            };
            out.push(OriginView::read(
                &origin.tenant,
                &origin.service,
                &bodies(&origin.resource),
                &bodies(&origin.scope),
            )?);
        }
        Ok(Origins(out))
    }

    /// The `i`th span, read from its request.
    pub(super) fn row<'a>(
        &'a self,
        origins: &'a Origins<'a>,
        i: usize,
    ) -> Result<SpanRef<'a>, StoreError> {
        let at = &self.spans[i];
        let origin = &self.origins[at.origin as usize];
        let body = &self.parts[origin.part as usize][at.body.0 as usize..at.body.1 as usize];
        Ok(SpanRef {
            span: SpanView::read(body)?,
            origin: &origins.0[at.origin as usize],
        })
    }

    /// The chunk's spans as the span table's rows (for readers of uncommitted spans).
    pub fn spans_batch(&self) -> Result<RecordBatch, StoreError> {
        let origins = self.origins()?;
        let rows = (0..self.len())
            .map(|i| self.row(&origins, i))
            .collect::<Result<Vec<_>, _>>()?;
        spans_to_batch(&rows)
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
            let part = &self.parts[origin.part as usize];
            let span = Span::decode(&part[at.body.0 as usize..at.body.1 as usize])
                .map_err(|e| StoreError::Spans(e.to_string()))?;
            if out.last().is_none_or(|(o, _)| *o != at.origin) {
                out.push((at.origin, origin_group(part, origin)?));
            }
            if let Some((_, rs)) = out.last_mut() {
                rs.scope_spans[0].spans.push(span);
            }
        }
        Ok(out.into_iter().map(|(_, rs)| rs).collect())
    }
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
/// once into one request.
pub fn stage_decoded(
    resource_spans: &[ResourceSpans],
    bytes: u64,
    indexed: &[String],
) -> Result<Vec<Staged>, StoreError> {
    let request = ExportTraceServiceRequest {
        resource_spans: resource_spans.to_vec(),
    };
    stage(&[Bytes::from(request.encode_to_vec())], bytes, indexed)
}

/// Splits a batch, given as the `ExportTraceServiceRequest` encodings it is made of, into
/// one chunk per partition, with a partial summary of each trace. Pure and CPU-bound:
/// callers run it outside the writer's lock. Every tenant and time is checked first, so a
/// refused batch leaves no partial trace. The bytes must be valid requests (as a
/// `TraceBatch`'s wire form always is: receivers check requests whole before keeping
/// them): what this pass does not read (attributes, events, links) is read only when the
/// block is encoded, too late to refuse the batch.
pub fn stage(parts: &[Bytes], bytes: u64, indexed: &[String]) -> Result<Vec<Staged>, StoreError> {
    // One allocation of exactly the batch's bytes: a receiver's request bytes may share a
    // larger buffer that buffering them would keep whole.
    let parts: Arc<[Bytes]> = Arc::new([Bytes::from(parts.concat())]);
    let (origins, span_bodies) = locate(&parts)?;
    let origins: Arc<[OriginAt]> = origins.into();
    let views = Chunk {
        parts: parts.clone(),
        origins: origins.clone(),
        spans: Vec::new(),
        summaries: Vec::new(),
    };
    let origin_views = views.origins()?;
    // Spans by partition: (tenant, hour) → spans with their fields read.
    let mut by_partition: HashMap<(&str, u64), Vec<Located<'_>>> = HashMap::new();
    let mut total = 0u64;
    for (o, (origin, bodies)) in origins.iter().zip(span_bodies).enumerate() {
        let part = &parts[origin.part as usize];
        for body in bodies {
            let span = SpanView::read(&part[body.clone()])?;
            let key = (origin.tenant.as_str(), span.start / NANOS_PER_HOUR);
            by_partition.entry(key).or_default().push(Located {
                row: SpanRef {
                    span,
                    origin: &origin_views.0[o],
                },
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
                parts: parts.clone(),
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

/// Every resource and scope of the requests, with its tenant checked, and where the
/// spans of each are.
type Locations = (Vec<OriginAt>, Vec<Vec<Range<usize>>>);

fn locate(parts: &[Bytes]) -> Result<Locations, StoreError> {
    let (mut origins, mut spans) = (Vec::new(), Vec::new());
    for (p, part) in parts.iter().enumerate() {
        for resource in request_layout(part)? {
            let bodies: Vec<&[u8]> = resource.bodies.iter().map(|r| &part[r.clone()]).collect();
            let (service, tenant) = OriginView::service_and_tenant(&bodies)?;
            let tenant = tenant.unwrap_or(DEFAULT_TENANT);
            validate_tenant_id(tenant).map_err(StoreError::Tenant)?;
            for scope in resource.scopes {
                origins.push(OriginAt {
                    part: p as u32,
                    tenant: tenant.to_string(),
                    service: service.to_string(),
                    resource: resource.bodies.clone(),
                    scope: scope.bodies,
                });
                spans.push(scope.spans);
            }
        }
    }
    Ok((origins, spans))
}
