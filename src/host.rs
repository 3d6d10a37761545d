//! Running a validated config: the admin server, the pipelines, and shutdown on a signal.

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::component::ComponentError;
use crate::config::Config;
use crate::query::engine::{QueryEngine, QueryLimits};
use crate::query::http::{ApiState, QueryAuth};
use crate::runtime::{Readiness, Service, ShutdownReport};
use crate::telemetry::server;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot start the admin server on {address}: {source}")]
    Admin {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start: {0}")]
    Start(#[from] ComponentError),
    #[error("cannot start the query API on {address}: {message}")]
    Query { address: String, message: String },
}

/// Runs `config` until `stop` completes, then drains everything accepted within the
/// config's `service.shutdown_timeout`.
pub async fn run_until(
    config: &Config,
    stop: impl Future<Output = ()>,
) -> Result<ShutdownReport, HostError> {
    let readiness = Arc::new(Readiness::default());
    let admin_stop = CancellationToken::new();
    let address = &config.service.telemetry.metrics.address;
    let admin = if address.is_empty() {
        None
    } else {
        let (bound, task) = server::serve(address, readiness.clone(), admin_stop.clone())
            .await
            .map_err(|source| HostError::Admin {
                address: address.clone(),
                source,
            })?;
        tracing::info!(address = %bound, "admin server listening (/metrics, /healthz, /readyz)");
        Some(task)
    };
    server::install_recorder();
    let mut service = match Service::start(config, readiness).await {
        Ok(service) => service,
        Err(err) => {
            admin_stop.cancel();
            return Err(err.into());
        }
    };
    let query_stop = CancellationToken::new();
    let query = match start_query(config, &service, query_stop.clone()).await {
        Ok(task) => task,
        Err(err) => {
            service
                .shutdown(config.service.shutdown_timeout.get())
                .await;
            admin_stop.cancel();
            return Err(err);
        }
    };
    tracing::info!(pipelines = config.pipelines.len(), "spanline is running");
    stop.await;
    // Queries are not part of the drain: stop answering them first.
    query_stop.cancel();
    if let Some(task) = query {
        let _ = task.await;
    }
    let timeout = config.service.shutdown_timeout;
    tracing::info!(%timeout, "shutting down: draining everything accepted");
    let report = service.shutdown(timeout.get()).await;
    admin_stop.cancel();
    if let Some(task) = admin {
        let _ = task.await;
    }
    Ok(report)
}

/// Serves the query API over the store of the configured `trace_store` exporter, if any.
async fn start_query(
    config: &Config,
    service: &Service,
    stop: CancellationToken,
) -> Result<Option<JoinHandle<()>>, HostError> {
    let query = &config.service.query;
    let address = query.address.clone();
    let failed = |message: String| HostError::Query {
        address: address.clone(),
        message,
    };
    let running = service.query_sources().iter().map(|(id, _)| id.as_str());
    let Some(id) = query.store_exporter(running).map_err(&failed)? else {
        return Ok(None);
    };
    let Some((_, source)) = service.query_sources().iter().find(|(i, _)| *i == id) else {
        return Ok(None);
    };
    let state = ApiState {
        engine: QueryEngine::new(source.clone(), QueryLimits::from(query)),
        auth: QueryAuth::new(query).map_err(&failed)?,
        timeout: query.timeout.get(),
    };
    let (bound, task) = crate::query::http::serve(&address, state, stop)
        .await
        .map_err(|e| failed(e.to_string()))?;
    tracing::info!(address = %bound, store = %id, "query API listening (Tempo and Jaeger APIs)");
    Ok(Some(task))
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("received SIGINT"),
        _ = term => tracing::info!("received SIGTERM"),
    }
}
