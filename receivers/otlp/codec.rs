//! Request bytes to spans, shared by both transports: capped gzip inflation, protobuf and
//! JSON decoding, span id checks (partial success) and the hand-off to the pipelines.

use std::io::Read;

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use prost::Message;

use super::tenant::{Caller, TenantError, TenantResolver};
use crate::component::tenant::TENANT_ATTRIBUTE;
use crate::component::wire::{
    WireError, append_resource_attribute, decode_request, scan_request, span_ids_problem,
};
use crate::component::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse, Refusal,
    ResourceSpans, TraceBatch, TraceConsumer, Transport,
};

/// Why a request body could not be turned into spans.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("request is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("invalid gzip body: {0}")]
    Gzip(#[source] std::io::Error),
    #[error("invalid protobuf: {0}")]
    Protobuf(#[from] WireError),
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl DecodeError {
    /// The `reason` label this error is counted under.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            _ => "malformed",
        }
    }
}

/// Inflates a gzip body (one or more members), producing at most `limit` bytes.
pub(crate) fn gunzip_capped(body: &[u8], limit: usize) -> Result<Bytes, DecodeError> {
    // Typical OTLP payloads compress 5-10x; start there and let the buffer grow if needed.
    let capacity = body.len().saturating_mul(8).min(limit);
    read_capped(MultiGzDecoder::new(body), limit, capacity)
}

/// Reads a decompressing reader to the end, but stops after `limit + 1` bytes of output, so
/// a gzip bomb costs no more than a legitimate request of the largest allowed size.
pub(crate) fn read_capped(
    reader: impl Read,
    limit: usize,
    capacity: usize,
) -> Result<Bytes, DecodeError> {
    let mut out = Vec::with_capacity(capacity);
    let cap = (limit as u64).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(DecodeError::Gzip)?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

/// Why a request body cannot be made into a batch.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
}

/// Makes a protobuf request into a batch with its tenant written into every resource.
///
/// Where a pipeline reads spans (`reads_spans`), the request is decoded here, on the
/// receiver's task; the batch keeps the request's bytes too if nothing in it had to change.
/// Where nothing reads them, the request is scanned, not decoded: a well-formed request
/// whose spans all have valid ids becomes a batch of its own bytes (with `tenant.id`
/// appended to the resources that lack it). Either way, a request with invalid span ids or
/// a `tenant.id` to replace ends up decoded and changed as structs.
pub(crate) fn protobuf_batch(
    body: Bytes,
    caller: &Caller,
    tenants: &TenantResolver,
    reads_spans: bool,
) -> Result<TraceBatch, RequestError> {
    if reads_spans {
        let request = decode_request(&body).map_err(DecodeError::from)?;
        return decoded_batch(request, Some(body), caller, tenants);
    }
    let scan = scan_request(&body).map_err(DecodeError::from)?;
    if scan.invalid_spans == 0
        && let Some(plan) = tenants.plan(caller, &scan)?
    {
        let spans = scan.spans;
        let rewritten = plan
            .iter()
            .any(Option::is_some)
            .then(|| append_resource_attribute(&body, &scan, TENANT_ATTRIBUTE, &plan));
        drop(scan);
        let body = rewritten.map_or(body, Bytes::from);
        return Ok(TraceBatch::from_validated_request(body, spans));
    }
    drop(scan);
    let request = decode_request(&body).map_err(DecodeError::from)?;
    decoded_batch(request, Some(body), caller, tenants)
}

/// Whether every span has valid ids (see `span_ids_problem`).
fn ids_valid(resource_spans: &[ResourceSpans]) -> bool {
    let mut spans = resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans);
    spans.all(|span| span_ids_problem(&span.trace_id, &span.span_id).is_none())
}

/// Makes an OTLP/JSON request (hex ids, camelCase keys, enums as integers) into a batch with
/// its tenant written into every resource.
pub(crate) fn json_batch(
    body: &[u8],
    caller: &Caller,
    tenants: &TenantResolver,
) -> Result<TraceBatch, RequestError> {
    let request: ExportTraceServiceRequest =
        serde_json::from_slice(body).map_err(DecodeError::from)?;
    decoded_batch(request, None, caller, tenants)
}

/// A decoded request as a batch, tenants applied. `body` is its protobuf encoding (none for
/// JSON, whose protobuf size is measured); the batch keeps it when nothing had to change.
fn decoded_batch(
    mut request: ExportTraceServiceRequest,
    body: Option<Bytes>,
    caller: &Caller,
    tenants: &TenantResolver,
) -> Result<TraceBatch, RequestError> {
    let applied = tenants.apply(caller, &mut request.resource_spans)?;
    let spans = request.resource_spans;
    Ok(match body {
        Some(body) if !applied.changed && ids_valid(&spans) => {
            TraceBatch::from_decoded_request(body, spans)
        }
        Some(body) => TraceBatch::new(spans, body.len() + applied.added),
        None => TraceBatch::measured(spans),
    })
}

/// Hands a request's batch to the pipelines. Spans with invalid ids are rejected and
/// reported as a partial success; the rest go on.
pub(crate) async fn deliver(
    consumer: &TraceConsumer,
    transport: Transport,
    mut batch: TraceBatch,
) -> Result<ExportTraceServiceResponse, Refusal> {
    let mut first_problem: Option<(&'static str, String)> = None;
    // A batch with its wire form was checked and holds no span with invalid ids.
    let rejected =
        match batch.wire_parts() {
            Some(_) => 0,
            None => batch.retain_spans(|_, span| {
                match span_ids_problem(&span.trace_id, &span.span_id) {
                    None => true,
                    Some(problem) => {
                        if first_problem.is_none() {
                            first_problem = Some((problem, span.name.clone()));
                        }
                        false
                    }
                }
            }),
        };
    if !batch.is_empty() {
        consumer.consume(transport, batch).await?;
    }
    let Some((problem, name)) = first_problem else {
        return Ok(ExportTraceServiceResponse::default());
    };
    // Counted only once the rest is taken: a refused request is retried whole, and its
    // invalid spans would otherwise be counted again on every attempt.
    consumer.rejected_spans(transport, rejected as u64, "invalid_span");
    Ok(ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: rejected as i64,
            error_message: format!(
                "rejected {rejected} span(s) with invalid ids: {problem} (first rejected span: {name:?})"
            ),
        }),
    })
}

/// `google.rpc.Status`, the error body of OTLP/HTTP and the details of a gRPC status.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`: how long a refused sender should wait (the Collector's exporters honour it).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

pub(crate) const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The `google.rpc.Status` of a refusal, carrying a `RetryInfo` with the refusal's delay.
pub(crate) fn refusal_status(code: i32, refusal: &Refusal) -> RpcStatus {
    let delay = refusal.retry_after;
    let retry = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            nanos: delay.subsec_nanos() as i32,
        }),
    };
    RpcStatus {
        code,
        message: refusal.message.clone(),
        details: vec![ProtoAny {
            type_url: RETRY_INFO_TYPE_URL.to_string(),
            value: retry.encode_to_vec(),
        }],
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1.
pub(crate) fn retry_after_secs(refusal: &Refusal) -> u64 {
    let delay = refusal.retry_after;
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    secs.max(1)
}
