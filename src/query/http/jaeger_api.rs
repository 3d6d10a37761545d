//! Jaeger's query JSON API (what Grafana's Jaeger data source and the Jaeger UI read).

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::stream::{self, StreamExt};
use serde_json::Value;

use super::tempo::{apply_tag, window_of};
use super::{ApiError, Shared};
use crate::query::engine::now_unix_nano;
use crate::query::jaeger::{jaeger_envelope, jaeger_error, jaeger_trace};
use crate::query::params;
use crate::query::search::SearchRequest;
use crate::store::TimeWindow;

/// How far back the service and operation lists look (Jaeger's API has no window for them).
const LIST_LOOKBACK: Duration = Duration::from_secs(24 * 3600);
/// Full traces fetched at once for one search.
const FETCH_CONCURRENCY: usize = 8;

type Params = Query<HashMap<String, String>>;

/// An error in Jaeger's envelope.
struct JaegerError(ApiError);

impl From<ApiError> for JaegerError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for JaegerError {
    fn into_response(self) -> Response {
        let status = self.0.status;
        (
            status,
            axum::Json(jaeger_error(status.as_u16(), &self.0.message)),
        )
            .into_response()
    }
}

type Answer = Result<Response, JaegerError>;

/// The complete Jaeger API, served under `/jaeger`.
pub(super) fn routes() -> Router<Shared> {
    root_routes().route("/api/traces/{trace_id}", get(trace))
}

/// The Jaeger routes whose paths Tempo does not use, served at the root as well.
pub(super) fn root_routes() -> Router<Shared> {
    Router::new()
        .route("/api/services", get(services))
        .route("/api/services/{service}/operations", get(operations))
        .route("/api/operations", get(operations_by_query))
        .route("/api/traces", get(search))
}

fn envelope(data: Value, total: usize) -> Response {
    axum::Json(jaeger_envelope(data, total)).into_response()
}

/// The window the service and operation lists cover, within the search limit.
fn list_window(state: &Shared) -> TimeWindow {
    let end = now_unix_nano();
    let back = LIST_LOOKBACK.min(state.engine.limits().max_search_window);
    TimeWindow {
        start_unix_nano: end.saturating_sub(back.as_nanos() as u64),
        end_unix_nano: end,
    }
}

async fn services(State(state): State<Shared>, headers: HeaderMap) -> Answer {
    let tenant = state.tenant(&headers)?;
    let window = Some(list_window(&state));
    let names = state
        .engine
        .tag_values(&tenant, "service.name", window)
        .await
        .map_err(ApiError::from)?;
    let total = names.len();
    Ok(envelope(names.into(), total))
}

async fn list_operations(
    state: &Shared,
    headers: &HeaderMap,
    service: &str,
) -> Result<Vec<String>, ApiError> {
    let tenant = state.tenant(headers)?;
    let window = Some(list_window(state));
    Ok(state.engine.operations(&tenant, service, window).await?)
}

async fn operations(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(service): Path<String>,
) -> Answer {
    let names = list_operations(&state, &headers, &service).await?;
    let total = names.len();
    Ok(envelope(names.into(), total))
}

/// `/api/operations?service=s`: the newer form, with a span kind per operation (unknown
/// to the summary table, so empty).
async fn operations_by_query(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Params,
) -> Answer {
    let service = q
        .get("service")
        .ok_or_else(|| ApiError::bad("service", "is required"))?;
    let names = list_operations(&state, &headers, service).await?;
    let data: Vec<Value> = names
        .iter()
        .map(|n| serde_json::json!({ "name": n, "spanKind": "" }))
        .collect();
    let total = data.len();
    Ok(envelope(data.into(), total))
}

async fn trace(State(state): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    let tenant = state.tenant(&headers)?;
    let trace_id = params::trace_id("traceID", &id).map_err(ApiError::from)?;
    let spans = state
        .engine
        .trace(&tenant, &trace_id, None)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::not_found("trace"))?;
    Ok(envelope(vec![jaeger_trace(&trace_id, &spans)].into(), 1))
}

/// Builds a search from Jaeger's parameters (times in µs, `lookback` like `1h`).
fn search_request(
    q: &HashMap<String, String>,
    max_limit: usize,
) -> Result<SearchRequest, ApiError> {
    let get = |k: &str| q.get(k).filter(|v| !v.is_empty());
    let start = get("start")
        .map(|s| params::unix_micros("start", s))
        .transpose()?;
    let end = get("end")
        .map(|s| params::unix_micros("end", s))
        .transpose()?;
    let mut window = window_of(start, end);
    if let (None, Some(lookback)) = (start, get("lookback").filter(|l| *l != "custom")) {
        let back = params::duration("lookback", lookback)?;
        let end = end.unwrap_or_else(now_unix_nano);
        window = Some(TimeWindow {
            start_unix_nano: end.saturating_sub(back.as_nanos() as u64),
            end_unix_nano: end,
        });
    }
    let mut request = SearchRequest {
        window,
        ..Default::default()
    };
    if let Some(service) = get("service") {
        request.service = Some(service.clone());
    }
    if let Some(operation) = get("operation").filter(|o| *o != "all") {
        request.operation = Some(operation.clone());
    }
    if let Some(tags) = get("tags") {
        for (key, value) in params::jaeger_tags("tags", tags)? {
            apply_tag(&mut request, "tags", key, value, false)?;
        }
    }
    if let Some(d) = get("minDuration") {
        request.min_duration = Some(params::duration("minDuration", d)?);
    }
    if let Some(d) = get("maxDuration") {
        request.max_duration = Some(params::duration("maxDuration", d)?);
    }
    if let Some(l) = get("limit") {
        request.limit = Some(params::limit("limit", l, max_limit)?);
    }
    Ok(request)
}

/// Jaeger's search answers with whole traces.
async fn search(State(state): State<Shared>, headers: HeaderMap, Query(q): Params) -> Answer {
    let tenant = state.tenant(&headers)?;
    let request = search_request(&q, state.engine.limits().max_limit)?;
    let found = state
        .engine
        .search(&tenant, &request)
        .await
        .map_err(ApiError::from)?;
    let engine = &state.engine;
    let tenant = &tenant;
    let traces: Vec<Result<Option<Value>, ApiError>> = stream::iter(found)
        .map(|summary| async move {
            let spans = engine.trace(tenant, &summary.trace_id, None).await?;
            Ok(spans.map(|s| jaeger_trace(&summary.trace_id, &s)))
        })
        .buffered(FETCH_CONCURRENCY)
        .collect()
        .await;
    let mut data = Vec::with_capacity(traces.len());
    for t in traces {
        // A trace deleted by retention between search and fetch is left out.
        if let Some(t) = t? {
            data.push(t);
        }
    }
    let total = data.len();
    Ok(envelope(data.into(), total))
}
