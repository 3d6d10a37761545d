//! Binding the listeners and running the gRPC and HTTP servers until shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::{GrpcConfig, HttpConfig, OtlpReceiverConfig};
use super::grpc::TraceGrpcService;
use super::http_server::router;
use super::tenant::TenantResolver;
use crate::component::{ComponentError, Receiver, ReceiverContext, TraceConsumer};

/// How long to wait before accepting again after a failed accept (out of file descriptors,
/// usually), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The `otlp` receiver: an OTLP/gRPC server, an OTLP/HTTP server, or both.
pub struct OtlpReceiver {
    id: String,
    config: OtlpReceiverConfig,
    tenants: Arc<TenantResolver>,
}

impl OtlpReceiver {
    /// Builds the receiver; reads `auth::api_keys_file` if one is configured.
    pub fn new(id: impl Into<String>, config: OtlpReceiverConfig) -> Result<Self, ComponentError> {
        let id = id.into();
        let tenants = TenantResolver::new(&id, &config.auth, &config.tenant)?;
        Ok(Self {
            id,
            config,
            tenants: Arc::new(tenants),
        })
    }

    /// Binds the listener of every enabled protocol; serving starts with [`BoundOtlp::serve`].
    pub async fn bind(self) -> Result<BoundOtlp, ComponentError> {
        let mut bound = BoundOtlp {
            id: self.id,
            tenants: self.tenants,
            grpc: None,
            http: None,
        };
        if let Some(grpc) = self.config.protocols.grpc {
            let listener = bind(&bound.id, &grpc.endpoint).await?;
            bound.grpc = Some((listener, grpc));
        }
        if let Some(http) = self.config.protocols.http {
            let listener = bind(&bound.id, &http.endpoint).await?;
            bound.http = Some((listener, http));
        }
        Ok(bound)
    }
}

#[async_trait]
impl Receiver for OtlpReceiver {
    async fn start(
        self: Box<Self>,
        ctx: ReceiverContext,
    ) -> Result<JoinHandle<()>, ComponentError> {
        Ok(self.bind().await?.serve(ctx))
    }
}

async fn bind(id: &str, endpoint: &str) -> Result<TcpListener, ComponentError> {
    TcpListener::bind(endpoint)
        .await
        .map_err(|source| ComponentError::Bind {
            id: id.to_string(),
            address: endpoint.to_string(),
            source,
        })
}

/// The receiver with its sockets bound, not yet serving.
pub struct BoundOtlp {
    id: String,
    tenants: Arc<TenantResolver>,
    grpc: Option<(TcpListener, GrpcConfig)>,
    http: Option<(TcpListener, HttpConfig)>,
}

impl BoundOtlp {
    /// The address the gRPC server listens on, if gRPC is enabled.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The address the HTTP server listens on, if HTTP is enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `ctx.shutdown` is cancelled, then lets in-flight requests finish; the
    /// handle completes once both servers have stopped.
    pub fn serve(self, ctx: ReceiverContext) -> JoinHandle<()> {
        let mut servers = Vec::new();
        if let Some((listener, config)) = self.grpc {
            log_listening(&self.id, "grpc", &listener);
            let service = TraceGrpcService::new(
                ctx.consumer.clone(),
                self.tenants.clone(),
                config.max_recv_msg_size.as_usize(),
            );
            servers.push(tokio::spawn(serve_grpc(
                self.id.clone(),
                listener,
                service,
                ctx.shutdown.clone(),
            )));
        }
        if let Some((listener, config)) = self.http {
            log_listening(&self.id, "http", &listener);
            servers.push(tokio::spawn(serve_http(
                self.id.clone(),
                listener,
                config,
                ctx.consumer.clone(),
                self.tenants.clone(),
                ctx.shutdown.clone(),
            )));
        }
        tokio::spawn(async move {
            for server in servers {
                if let Err(error) = server.await {
                    tracing::error!(%error, "otlp server task failed");
                }
            }
        })
    }
}

fn log_listening(id: &str, protocol: &str, listener: &TcpListener) {
    match listener.local_addr() {
        Ok(addr) => tracing::info!(receiver = id, protocol, %addr, "otlp receiver listening"),
        Err(error) => tracing::warn!(receiver = id, protocol, %error, "cannot read bound address"),
    }
}

async fn serve_grpc(
    id: String,
    listener: TcpListener,
    service: TraceGrpcService,
    shutdown: CancellationToken,
) {
    let result = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(accept_nodelay(listener), shutdown.cancelled_owned())
        .await;
    if let Err(error) = result {
        tracing::error!(receiver = %id, %error, "otlp grpc server stopped");
    }
}

async fn serve_http(
    id: String,
    listener: TcpListener,
    config: HttpConfig,
    consumer: TraceConsumer,
    tenants: Arc<TenantResolver>,
    shutdown: CancellationToken,
) {
    let app = router(
        consumer,
        tenants,
        &config.traces_url_path,
        config.max_request_body_size.as_usize(),
    );
    let result = axum::serve(nodelay_listener(listener), app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(error) = result {
        tracing::error!(receiver = %id, %error, "otlp http server stopped");
    }
}

/// The HTTP listener, setting TCP_NODELAY on every accepted socket: responses are small
/// writes, and without it one can wait for the peer's delayed ACK.
pub(crate) fn nodelay_listener(
    listener: TcpListener,
) -> impl axum::serve::Listener<Io = TcpStream, Addr = SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    })
}

/// Accepted connections with TCP_NODELAY set: tonic's own nodelay flag only applies to
/// listeners it binds itself, and without it every response waits for a delayed ACK.
pub(crate) fn accept_nodelay(listener: TcpListener) -> impl Stream<Item = io::Result<TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, "cannot set TCP_NODELAY");
                    }
                    return Some((Ok(stream), listener));
                }
                Err(error) => {
                    tracing::warn!(%error, "otlp grpc accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    })
}
