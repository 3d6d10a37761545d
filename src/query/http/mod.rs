//! The query HTTP API: Tempo's and Jaeger's endpoints over the query engine.
//!
//! Tempo's and Jaeger's `GET /api/traces/{id}` share a path but not a shape, so the root
//! serves Tempo's (and the Jaeger routes that do not collide), and the whole Jaeger API is
//! also served under `/jaeger` for Grafana's Jaeger data source.

mod auth;
mod jaeger_api;
mod spanline_api;
mod tempo;
#[cfg(test)]
mod tests;

pub use auth::{AuthError, QueryAuth};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics::{counter, histogram};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::engine::{QueryEngine, QueryError};
use super::params::ParamError;
use crate::component::names::{QUERY_DURATION, QUERY_REQUESTS};

/// What every handler shares.
pub struct ApiState {
    pub engine: QueryEngine,
    pub auth: QueryAuth,
    pub timeout: Duration,
}

type Shared = Arc<ApiState>;

/// An error answer: its status and message, rendered in the shape of the API asked.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The parameter at fault, for 400s.
    pub param: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: format!("invalid parameter {param}: {}", message.into()),
            param: Some(param.to_string()),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::BadRequest { param, message } => Self::bad(&param, message),
            QueryError::Store(e) => {
                tracing::warn!(error = %e, "query failed reading the store");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reading the store: {e}"),
                )
            }
        }
    }
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        Self::bad(&e.param, e.message)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized(m) => Self::new(StatusCode::UNAUTHORIZED, m),
            AuthError::InvalidTenant(m) => Self::new(StatusCode::BAD_REQUEST, m),
        }
    }
}

impl IntoResponse for ApiError {
    /// Tempo-style JSON; the Jaeger routes convert to Jaeger's envelope themselves.
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(param) = self.param {
            body["parameter"] = param.into();
        }
        (self.status, axum::Json(body)).into_response()
    }
}

impl ApiState {
    /// The tenant of a request.
    pub fn tenant(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        Ok(self.auth.tenant(headers)?)
    }
}

/// Every route of the query API.
pub fn router(state: Shared) -> Router {
    let jaeger = jaeger_api::routes();
    Router::new()
        .merge(tempo::routes())
        .merge(jaeger_api::root_routes())
        .merge(spanline_api::routes())
        .nest("/jaeger", jaeger)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Times every query, answers 504 past the configured timeout, and counts outcomes.
async fn observe(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = match tokio::time::timeout(state.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the query took longer than {}; narrow its time window or filters",
                humantime::format_duration(state.timeout)
            ),
        )
        .into_response(),
    };
    histogram!(QUERY_DURATION, "endpoint" => endpoint.clone())
        .record(started.elapsed().as_secs_f64());
    counter!(QUERY_REQUESTS, "endpoint" => endpoint, "code" => response.status().as_u16().to_string())
        .increment(1);
    response
}

/// Binds `address` and serves the API until `stop` is cancelled.
pub async fn serve(
    address: &str,
    state: ApiState,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let app = router(Arc::new(state));
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "query API stopped");
        }
    });
    Ok((bound, task))
}
