//! spanline's own endpoints: aggregates for incident triage.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::tempo::search_request;
use super::{ApiError, Shared};
use crate::query::search::GroupBy;

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/api/aggregate", get(aggregate))
}

/// `GET /api/aggregate?by=service|root_service|operation` with the filters of
/// `/api/search`: traces, error traces and p50/p99 duration per group, most errors first.
async fn aggregate(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&headers)?;
    let by = match q.get("by").map(String::as_str) {
        None | Some("") => GroupBy::Service,
        Some(text) => GroupBy::parse(text).ok_or_else(|| {
            ApiError::bad(
                "by",
                format!("{text:?}; use service, root_service or operation"),
            )
        })?,
    };
    let request = search_request(&q, state.engine.limits().max_limit)?;
    let window = state.engine.search_window(request.window)?;
    let groups = state.engine.aggregate(&tenant, &request, by).await?;
    Ok(axum::Json(json!({
        "start": window.start_unix_nano / 1_000_000_000,
        "end": window.end_unix_nano / 1_000_000_000,
        "groups": groups,
    }))
    .into_response())
}
