//! The OTLP/HTTP endpoint: POST protobuf or JSON (optionally gzip) to `traces_url_path`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{
    ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prost::Message;

use super::codec::{
    DecodeError, RequestError, RpcStatus, deliver, gunzip_capped, json_batch, protobuf_batch,
    refusal_status, retry_after_secs,
};
use super::tenant::{Caller, TenantError, TenantResolver};
use crate::component::{
    ExportTraceServiceResponse, Refusal, RefusalReason, TraceConsumer, Transport,
};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// gRPC status codes used in `google.rpc.Status` bodies.
const CODE_INVALID_ARGUMENT: i32 = 3;
const CODE_RESOURCE_EXHAUSTED: i32 = 8;
const CODE_UNAVAILABLE: i32 = 14;
const CODE_UNAUTHENTICATED: i32 = 16;

/// The body format of a request, which is also the format of its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

struct HttpState {
    consumer: TraceConsumer,
    tenants: Arc<TenantResolver>,
    traces_path: String,
    max_body_size: usize,
}

/// The router for one HTTP endpoint. Paths are matched by hand rather than through axum's
/// route syntax, so any configured path works as written.
pub(crate) fn router(
    consumer: TraceConsumer,
    tenants: Arc<TenantResolver>,
    traces_path: &str,
    max_body_size: usize,
) -> Router {
    let state = Arc::new(HttpState {
        consumer,
        tenants,
        traces_path: traces_path.to_string(),
        max_body_size,
    });
    Router::new().fallback(handle).with_state(state)
}

async fn handle(State(state): State<Arc<HttpState>>, request: Request) -> Response {
    if request.uri().path() != state.traces_path {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    if request.method() != Method::POST {
        let mut response =
            (StatusCode::METHOD_NOT_ALLOWED, "only POST is allowed\n").into_response();
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let format = match request_format(request.headers()) {
        Ok(format) => format,
        Err(failure) => return state.refuse(failure, Format::Json),
    };
    // Authentication comes before the body is read: an unknown caller costs no decoding.
    let caller = match state.tenants.identify(request.headers()) {
        Ok(caller) => caller,
        Err(error) => return state.refuse(Failure::tenant(error), format),
    };
    match export(&state, format, &caller, request).await {
        Ok(response) => success(format, &response),
        Err(failure) => state.refuse(failure, format),
    }
}

/// Reads, inflates, decodes and delivers one request.
async fn export(
    state: &HttpState,
    format: Format,
    caller: &Caller,
    request: Request,
) -> Result<ExportTraceServiceResponse, Failure> {
    let gzip = is_gzip(request.headers())?;
    let limit = state.max_body_size;
    let mut body = read_body(request, limit).await?;
    if gzip {
        body = gunzip_capped(&body, limit).map_err(Failure::decode)?;
    }
    let batch = match format {
        Format::Protobuf => {
            protobuf_batch(body, caller, &state.tenants, state.consumer.reads_spans())
        }
        Format::Json => json_batch(&body, caller, &state.tenants),
    };
    let batch = batch.map_err(|error| match error {
        RequestError::Decode(error) => Failure::decode(error),
        RequestError::Tenant(error) => Failure::tenant(error),
    })?;
    deliver(&state.consumer, Transport::Http, batch)
        .await
        .map_err(Failure::refused)
}

/// Reads the whole body, refusing it as soon as it passes `limit` bytes.
async fn read_body(request: Request, limit: usize) -> Result<Bytes, Failure> {
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(Failure::decode(DecodeError::TooLarge { limit }));
    }
    match Limited::new(request.into_body(), limit).collect().await {
        // One chunk comes back as is; several are joined into one buffer of the exact size.
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => {
            Err(Failure::decode(DecodeError::TooLarge { limit }))
        }
        Err(error) => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            CODE_INVALID_ARGUMENT,
            Some("incomplete"),
            format!("cannot read request body: {error}"),
        )),
    }
}

/// The format named by `Content-Type` (parameters such as `charset` are ignored).
fn request_format(headers: &HeaderMap) -> Result<Format, Failure> {
    let value = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let media_type = value.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case(PROTOBUF) {
        Ok(Format::Protobuf)
    } else if media_type.eq_ignore_ascii_case(JSON) {
        Ok(Format::Json)
    } else {
        Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            CODE_INVALID_ARGUMENT,
            Some("unsupported_media_type"),
            format!("unsupported Content-Type {value:?}; use {PROTOBUF} or {JSON}"),
        ))
    }
}

/// Whether the body is gzip; identity (or no header) is plain, anything else is refused.
fn is_gzip(headers: &HeaderMap) -> Result<bool, Failure> {
    let Some(value) = headers.get(CONTENT_ENCODING) else {
        return Ok(false);
    };
    let value = value.to_str().unwrap_or("").trim();
    if value.eq_ignore_ascii_case("gzip") || value.eq_ignore_ascii_case("x-gzip") {
        Ok(true)
    } else if value.is_empty() || value.eq_ignore_ascii_case("identity") {
        Ok(false)
    } else {
        Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            CODE_INVALID_ARGUMENT,
            Some("unsupported_encoding"),
            format!("unsupported Content-Encoding {value:?}; use gzip or identity"),
        ))
    }
}

/// 200 with an `ExportTraceServiceResponse` in the request's format.
fn success(format: Format, response: &ExportTraceServiceResponse) -> Response {
    match format {
        Format::Protobuf => with_type(StatusCode::OK, PROTOBUF, response.encode_to_vec()),
        Format::Json => {
            // A full success is `{}`; serde would write `"partialSuccess": null`.
            let body = match &response.partial_success {
                None => b"{}".to_vec(),
                Some(_) => serde_json::to_vec(response).unwrap_or_else(|_| b"{}".to_vec()),
            };
            with_type(StatusCode::OK, JSON, body)
        }
    }
}

fn with_type(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = (status, Body::from(body)).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A request that is not accepted, with what the sender is told.
#[derive(Debug)]
struct Failure {
    http: StatusCode,
    /// The `google.rpc.Status` of the body.
    status: RpcStatus,
    /// The refused-request reason to count; `None` when the consumer counted already.
    reason: Option<&'static str>,
    retry_after: Option<u64>,
    /// Whether to ask for credentials (`WWW-Authenticate: Bearer`), as a 401 must.
    challenge: bool,
}

impl Failure {
    fn new(http: StatusCode, code: i32, reason: Option<&'static str>, message: String) -> Self {
        Self {
            http,
            status: RpcStatus {
                code,
                message,
                details: Vec::new(),
            },
            reason,
            retry_after: None,
            challenge: false,
        }
    }

    /// 401 for a missing or unknown API key, 400 naming what is wrong with a tenant id.
    fn tenant(error: TenantError) -> Self {
        let reason = Some(error.reason());
        match error {
            TenantError::Unauthenticated(message) => Self {
                challenge: true,
                ..Self::new(
                    StatusCode::UNAUTHORIZED,
                    CODE_UNAUTHENTICATED,
                    reason,
                    message,
                )
            },
            TenantError::InvalidTenant(message) => Self::new(
                StatusCode::BAD_REQUEST,
                CODE_INVALID_ARGUMENT,
                reason,
                message,
            ),
        }
    }

    fn decode(error: DecodeError) -> Self {
        let (http, code) = match error {
            DecodeError::TooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, CODE_RESOURCE_EXHAUSTED)
            }
            _ => (StatusCode::BAD_REQUEST, CODE_INVALID_ARGUMENT),
        };
        Self::new(http, code, Some(error.reason()), error.to_string())
    }

    /// 429, or 503 while shutting down, with `Retry-After`, as the OTLP spec asks.
    fn refused(refusal: Refusal) -> Self {
        let (http, code) = match refusal.reason {
            RefusalReason::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, CODE_UNAVAILABLE),
            _ => (StatusCode::TOO_MANY_REQUESTS, CODE_RESOURCE_EXHAUSTED),
        };
        Self {
            http,
            status: refusal_status(code, &refusal),
            reason: None,
            retry_after: Some(retry_after_secs(&refusal)),
            challenge: false,
        }
    }

    fn into_response(self, format: Format) -> Response {
        let mut response = match format {
            Format::Protobuf => with_type(self.http, PROTOBUF, self.status.encode_to_vec()),
            Format::Json => {
                let body = serde_json::json!({
                    "code": self.status.code,
                    "message": self.status.message,
                });
                with_type(self.http, JSON, body.to_string().into_bytes())
            }
        };
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.challenge {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl HttpState {
    fn refuse(&self, failure: Failure, format: Format) -> Response {
        if let Some(reason) = failure.reason {
            self.consumer.refused_request(Transport::Http, reason);
        }
        failure.into_response(format)
    }
}
