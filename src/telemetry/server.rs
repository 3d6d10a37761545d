//! The admin server: `/metrics` (Prometheus text), `/healthz`, `/readyz` and `/debug/cardinality`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::cardinality::{self, PUBLISHED_SERIES, REPORTED_KEYS};
use super::metrics::{self, BUILD_INFO, EXPORTER_SEND_LATENCY, PROCESS_PREFIX};
use crate::runtime::Readiness;

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn install_recorder() -> PrometheusHandle {
    RECORDER
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(EXPORTER_SEND_LATENCY.to_string()),
                    &[
                        0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(metrics::BATCH_SEND_SIZE.to_string()),
                        &[
                            10.0, 100.0, 500.0, 1000.0, 2000.0, 4000.0, 8192.0, 16384.0, 65536.0,
                        ],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(metrics::QUERY_DURATION.to_string()),
                        &[
                            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                        ],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(metrics::TAIL_SAMPLING_POLICY_EVALUATION.to_string()),
                        &[
                            1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3,
                            2.5e-3, 5e-3, 1e-2,
                        ],
                    )
                })
                .expect("bucket lists should be non-empty")
                .install_recorder()
                .expect("the metrics recorder should be installed only here");
            metrics::describe_all();
            metrics_process::Collector::new(PROCESS_PREFIX).describe();
            ::metrics::gauge!(BUILD_INFO, "version" => crate::VERSION).set(1.0);
            handle
        })
        .clone()
}

#[derive(Clone)]
struct AdminState {
    handle: PrometheusHandle,
    process: Arc<metrics_process::Collector>,
    readiness: Arc<Readiness>,
}

/// Binds the admin server and serves it until `shutdown` is cancelled.
pub async fn serve(
    address: &str,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let handle = install_recorder();
    let state = AdminState {
        handle: handle.clone(),
        process: Arc::new(metrics_process::Collector::new(PROCESS_PREFIX)),
        readiness,
    };
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/debug/cardinality", get(debug_cardinality))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let upkeep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        upkeep.abort();
        if let Err(err) = result {
            tracing::error!(error = %err, "admin server failed");
        }
    });
    Ok((bound, task))
}

async fn render_metrics(State(state): State<AdminState>) -> impl IntoResponse {
    state.process.collect();
    let mut text = state.handle.render();
    text.push_str(&cardinality::global().render_prometheus(PUBLISHED_SERIES));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

#[derive(serde::Deserialize)]
struct CardinalityQuery {
    tenant: Option<String>,
}

/// The top keys by estimated distinct values, per tenant, optionally for one `?tenant=`.
async fn debug_cardinality(Query(query): Query<CardinalityQuery>) -> Json<cardinality::Report> {
    Json(cardinality::global().report(query.tenant.as_deref(), REPORTED_KEYS))
}

async fn ready(State(state): State<AdminState>) -> impl IntoResponse {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
