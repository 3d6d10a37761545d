//! Tempo's HTTP API: trace by id, search (tags and simple TraceQL), tag names and values.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::{ApiError, Shared};
use crate::query::otlp_json;
use crate::query::params;
use crate::query::search::{SearchRequest, SortOrder, TagFilter, TraceStatus};
use crate::query::traceql::{self, CmpOp, Condition};
use crate::store::TimeWindow;
use crate::store::convert::hex;
use crate::store::summary::TraceSummary;

type Params = Query<HashMap<String, String>>;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/traces/{trace_id}", get(trace_v1))
        .route("/api/v2/traces/{trace_id}", get(trace_v2))
        .route("/api/search", get(search))
        .route("/api/search/tags", get(tags_v1))
        .route("/api/v2/search/tags", get(tags_v2))
        .route("/api/search/tag/{name}/values", get(tag_values_v1))
        .route("/api/v2/search/tag/{name}/values", get(tag_values_v2))
        .route("/api/echo", get(|| async { "echo" }))
        .route("/ready", get(|| async { "ready" }))
        .route("/api/status/buildinfo", get(buildinfo))
}

/// `start`/`end` in unix seconds, either optional; `None` when neither is given.
pub(super) fn seconds_window(q: &HashMap<String, String>) -> Result<Option<TimeWindow>, ApiError> {
    let start = q
        .get("start")
        .map(|s| params::unix_seconds("start", s))
        .transpose()?;
    let end = q
        .get("end")
        .map(|s| params::unix_seconds("end", s))
        .transpose()?;
    Ok(window_of(start, end))
}

/// A window from optional bounds: a missing end is now, a missing start is unbounded.
pub(super) fn window_of(start: Option<u64>, end: Option<u64>) -> Option<TimeWindow> {
    if start.is_none() && end.is_none() {
        return None;
    }
    Some(TimeWindow {
        start_unix_nano: start.unwrap_or(0),
        end_unix_nano: end.unwrap_or_else(crate::query::engine::now_unix_nano),
    })
}

async fn find_trace(
    state: &Shared,
    headers: &HeaderMap,
    id: &str,
    q: &HashMap<String, String>,
) -> Result<(String, Vec<crate::component::ResourceSpans>), ApiError> {
    let tenant = state.tenant(headers)?;
    let trace_id = params::trace_id("traceID", id)?;
    let window = seconds_window(q)?;
    let spans = state
        .engine
        .trace(&tenant, &trace_id, window)
        .await?
        .ok_or_else(|| ApiError::not_found("trace"))?;
    Ok((tenant, spans))
}

fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/protobuf") || v.contains("application/x-protobuf"))
}

/// A trace in the encoding the request accepts: protobuf when asked, JSON otherwise.
type Encoders = (
    fn(&[crate::component::ResourceSpans]) -> Vec<u8>,
    fn(&[crate::component::ResourceSpans]) -> serde_json::Value,
);

async fn answer_trace(
    state: &Shared,
    headers: &HeaderMap,
    id: &str,
    q: &HashMap<String, String>,
    (protobuf, json): Encoders,
) -> Result<Response, ApiError> {
    let (_, spans) = find_trace(state, headers, id, q).await?;
    if wants_protobuf(headers) {
        let content_type = HeaderValue::from_static("application/protobuf");
        return Ok(([(header::CONTENT_TYPE, content_type)], protobuf(&spans)).into_response());
    }
    Ok(axum::Json(json(&spans)).into_response())
}

async fn trace_v1(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let encoders: Encoders = (otlp_json::tempo_trace_protobuf, otlp_json::tempo_trace_json);
    answer_trace(&state, &headers, &id, &q, encoders).await
}

async fn trace_v2(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let encoders: Encoders = (
        otlp_json::tempo_trace_v2_protobuf,
        otlp_json::tempo_trace_v2_json,
    );
    answer_trace(&state, &headers, &id, &q, encoders).await
}

/// Builds a search from Tempo's parameters: `tags` (logfmt), `q` (TraceQL), `minDuration`,
/// `maxDuration`, `start`, `end`, `limit`, and spanline's `sort=duration`.
pub(super) fn search_request(
    q: &HashMap<String, String>,
    max_limit: usize,
) -> Result<SearchRequest, ApiError> {
    let mut request = SearchRequest {
        window: seconds_window(q)?,
        ..Default::default()
    };
    if let Some(tags) = q.get("tags") {
        for (key, value) in params::logfmt_tags("tags", tags)? {
            apply_tag(&mut request, "tags", key, value, false)?;
        }
    }
    if let Some(text) = q.get("q").filter(|t| !t.trim().is_empty()) {
        let query = traceql::parse(text).map_err(|e| ApiError::bad("q", e.to_string()))?;
        for condition in query.conditions {
            apply_condition(&mut request, condition)?;
        }
    }
    if let Some(d) = q.get("minDuration").filter(|s| !s.is_empty()) {
        request.min_duration = Some(params::duration("minDuration", d)?);
    }
    if let Some(d) = q.get("maxDuration").filter(|s| !s.is_empty()) {
        request.max_duration = Some(params::duration("maxDuration", d)?);
    }
    if let Some(l) = q.get("limit") {
        request.limit = Some(params::limit("limit", l, max_limit)?);
    }
    request.sort = match q.get("sort").map(String::as_str) {
        None | Some("start") | Some("") => SortOrder::StartDesc,
        Some("duration") => SortOrder::DurationDesc,
        Some(other) => {
            return Err(ApiError::bad(
                "sort",
                format!("{other:?}; use start (newest first) or duration (slowest first)"),
            ));
        }
    };
    Ok(request)
}

/// Maps one `key=value` filter onto the request; the intrinsics become typed filters.
pub(super) fn apply_tag(
    request: &mut SearchRequest,
    param: &str,
    key: String,
    value: String,
    negated: bool,
) -> Result<(), ApiError> {
    let slot = match key.as_str() {
        "service.name" | "resource.service.name" | ".service.name" => {
            if negated {
                &mut request.not_service
            } else {
                &mut request.service
            }
        }
        "name" | "operation" => {
            if negated {
                &mut request.not_operation
            } else {
                &mut request.operation
            }
        }
        "rootServiceName" | "root.service.name" => &mut request.root_service,
        "rootName" | "root.name" => &mut request.root_name,
        "status" | "status.code" | "otel.status_code" => {
            request.status = Some(TraceStatus::parse(&value).ok_or_else(|| {
                ApiError::bad(param, format!("status {value:?}; use error, ok or unset"))
            })?);
            return Ok(());
        }
        // Jaeger's convention for failed spans.
        "error" if value == "true" => {
            request.status = Some(TraceStatus::Error);
            return Ok(());
        }
        _ => {
            request.tags.push(TagFilter {
                key,
                value,
                negated,
            });
            return Ok(());
        }
    };
    if slot.as_ref().is_some_and(|v| v != &value) {
        return Err(ApiError::bad(
            param,
            format!(
                "{key} is given twice with different values; spanline matches one value per filter"
            ),
        ));
    }
    *slot = Some(value);
    Ok(())
}

fn apply_condition(request: &mut SearchRequest, condition: Condition) -> Result<(), ApiError> {
    match condition {
        Condition::Service { value, negated } => {
            apply_tag(request, "q", "service.name".into(), value, negated)
        }
        Condition::Name { value, negated } => {
            apply_tag(request, "q", "name".into(), value, negated)
        }
        Condition::RootService(value) => {
            apply_tag(request, "q", "rootServiceName".into(), value, false)
        }
        Condition::RootName(value) => apply_tag(request, "q", "rootName".into(), value, false),
        Condition::Status(status) => {
            request.status = Some(match status {
                traceql::Status::Error => TraceStatus::Error,
                traceql::Status::Ok => TraceStatus::Ok,
                traceql::Status::Unset => TraceStatus::Unset,
            });
            Ok(())
        }
        // Search works on whole traces, so a span duration bound is applied to the trace.
        Condition::Duration { op, value } | Condition::TraceDuration { op, value } => {
            apply_duration(request, op, value);
            Ok(())
        }
        Condition::Kind(kind) => Err(ApiError::bad(
            "q",
            format!(
                "kind = {kind}: span kind is not searchable; search by name, service, status, duration or attributes"
            ),
        )),
        Condition::Attribute {
            key,
            value,
            negated,
            ..
        } => apply_tag(request, "q", key, value, negated),
    }
}

fn apply_duration(request: &mut SearchRequest, op: CmpOp, value: std::time::Duration) {
    let nano = std::time::Duration::from_nanos(1);
    match op {
        CmpOp::Gt => request.min_duration = Some(value + nano),
        CmpOp::Ge => request.min_duration = Some(value),
        CmpOp::Lt => request.max_duration = Some(value.saturating_sub(nano)),
        CmpOp::Le => request.max_duration = Some(value),
        CmpOp::Eq => {
            request.min_duration = Some(value);
            request.max_duration = Some(value);
        }
    }
}

/// One search result in Tempo's shape, plus spanline's counts.
pub(super) fn trace_metadata(t: &TraceSummary) -> Value {
    json!({
        "traceID": hex(&t.trace_id),
        "rootServiceName": t.root_service,
        "rootTraceName": t.root_name,
        "startTimeUnixNano": t.start_unix_nano.to_string(),
        "durationMs": t.duration_nanos() / 1_000_000,
        "spanCount": t.span_count,
        "errorCount": t.error_count,
        "status": t.status,
        "services": t.services,
    })
}

async fn search(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&headers)?;
    let request = search_request(&q, state.engine.limits().max_limit)?;
    let traces = state.engine.search(&tenant, &request).await?;
    let body = json!({
        "traces": traces.iter().map(trace_metadata).collect::<Vec<_>>(),
        "metrics": { "inspectedTraces": traces.len(), "completedJobs": 1, "totalJobs": 1 },
    });
    Ok(axum::Json(body).into_response())
}

async fn tags_v1(State(state): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    state.tenant(&headers)?;
    Ok(axum::Json(json!({ "tagNames": state.engine.tag_names() })).into_response())
}

async fn tags_v2(State(state): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    state.tenant(&headers)?;
    let names = state.engine.tag_names();
    let (intrinsic, attributes): (Vec<_>, Vec<_>) = names
        .into_iter()
        .partition(|n| n == "name" || n == "status");
    let body = json!({ "scopes": [
        { "name": "intrinsic", "tags": intrinsic.iter().chain(["duration".to_string()].iter()).collect::<Vec<_>>() },
        { "name": "resource", "tags": attributes.iter().filter(|n| n.as_str() == "service.name" || n.starts_with("deployment.")).collect::<Vec<_>>() },
        { "name": "span", "tags": attributes.iter().filter(|n| n.as_str() != "service.name" && !n.starts_with("deployment.")).collect::<Vec<_>>() },
    ]});
    Ok(axum::Json(body).into_response())
}

/// Tempo v2 names tags with their scope (`resource.service.name`, `span.http.route`, `.x`).
fn unscoped(name: &str) -> &str {
    ["resource.", "span.", "."]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name)
}

async fn values(
    state: &Shared,
    headers: &HeaderMap,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<Vec<String>, ApiError> {
    let tenant = state.tenant(headers)?;
    let window = seconds_window(q)?;
    Ok(state
        .engine
        .tag_values(&tenant, unscoped(name), window)
        .await?)
}

async fn tag_values_v1(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let values = values(&state, &headers, &name, &q).await?;
    Ok(axum::Json(json!({ "tagValues": values })).into_response())
}

async fn tag_values_v2(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let values = values(&state, &headers, &name, &q).await?;
    let typed: Vec<Value> = values
        .into_iter()
        .map(|v| json!({ "type": "string", "value": v }))
        .collect();
    Ok(axum::Json(json!({ "tagValues": typed })).into_response())
}

async fn buildinfo() -> impl IntoResponse {
    (
        StatusCode::OK,
        axum::Json(json!({
            "version": crate::VERSION,
            "revision": option_env!("SPANLINE_GIT_REVISION").unwrap_or("unknown"),
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
            "application": "spanline",
        })),
    )
}
