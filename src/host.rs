//! Running a validated config: the admin server, the pipelines, and shutdown on a signal.

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::component::ComponentError;
use crate::config::Config;
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
    tracing::info!(pipelines = config.pipelines.len(), "spanline is running");
    stop.await;
    let timeout = config.service.shutdown_timeout;
    tracing::info!(%timeout, "shutting down: draining everything accepted");
    let report = service.shutdown(timeout.get()).await;
    admin_stop.cancel();
    if let Some(task) = admin {
        let _ = task.await;
    }
    Ok(report)
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
