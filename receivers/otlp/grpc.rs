//! The OTLP/gRPC trace service. It decodes requests itself (tonic's prost codec turns decode
//! errors into INTERNAL and hides them), so bad input gets a precise, counted error.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures::future::BoxFuture;
use prost::Message;
use tonic::body::Body;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService};
use tonic::{Code, Request, Response, Status, Streaming};

use super::codec::{RequestError, deliver, protobuf_batch, refusal_status};
use super::tenant::{Caller, TenantError, TenantResolver};
use crate::component::{
    ExportTraceServiceResponse, Refusal, RefusalReason, TraceConsumer, Transport,
};

/// The gRPC service name of OTLP traces.
pub const SERVICE_NAME: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
/// The one method of the trace service.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Serves `TraceService/Export`; every other method of the service answers UNIMPLEMENTED.
#[derive(Clone)]
pub(crate) struct TraceGrpcService {
    consumer: TraceConsumer,
    tenants: Arc<TenantResolver>,
    max_msg_size: usize,
}

impl TraceGrpcService {
    pub(crate) fn new(
        consumer: TraceConsumer,
        tenants: Arc<TenantResolver>,
        max_msg_size: usize,
    ) -> Self {
        Self {
            consumer,
            tenants,
            max_msg_size,
        }
    }
}

impl NamedService for TraceGrpcService {
    const NAME: &'static str = SERVICE_NAME;
}

impl tower::Service<http::Request<Body>> for TraceGrpcService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != EXPORT_PATH {
            let status = Status::unimplemented(format!("{} is not served", request.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        // The caller is known from the metadata alone: an unauthenticated request is
        // answered before its body is read.
        let caller = match self.tenants.identify(request.headers()) {
            Ok(caller) => caller,
            Err(error) => {
                let status = self.tenant_status(&error);
                return Box::pin(async move { Ok(status.into_http()) });
            }
        };
        let handler = ExportHandler(self.clone(), caller);
        let max = self.max_msg_size;
        Box::pin(async move {
            // tonic checks the frame length against the limit and stops inflating gzip at
            // the limit (a bounded writer), so a bomb costs at most `max` bytes of output.
            let mut grpc = Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max);
            Ok(grpc.client_streaming(handler, request).await)
        })
    }
}

/// One Export call, served as a client stream so framing errors reach us and get counted.
struct ExportHandler(TraceGrpcService, Caller);

impl tower::Service<Request<Streaming<Bytes>>> for ExportHandler {
    type Response = Response<ExportTraceServiceResponse>;
    type Error = Status;
    type Future = BoxFuture<'static, Result<Self::Response, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let service = self.0.clone();
        let caller = self.1.clone();
        Box::pin(async move {
            service
                .export(request.into_inner(), &caller)
                .await
                .map(Response::new)
        })
    }
}

impl TraceGrpcService {
    async fn export(
        &self,
        mut stream: Streaming<Bytes>,
        caller: &Caller,
    ) -> Result<ExportTraceServiceResponse, Status> {
        let body = match stream.message().await {
            Ok(Some(body)) => body,
            Ok(None) => {
                return Err(self.refuse(
                    "malformed",
                    Code::InvalidArgument,
                    "request has no message",
                ));
            }
            Err(status) => return Err(self.framing_error(status)),
        };
        let reads_spans = self.consumer.reads_spans();
        let batch =
            protobuf_batch(body, caller, &self.tenants, reads_spans).map_err(
                |error| match error {
                    RequestError::Decode(error) => {
                        self.refuse(error.reason(), Code::InvalidArgument, error.to_string())
                    }
                    RequestError::Tenant(error) => self.tenant_status(&error),
                },
            )?;
        deliver(&self.consumer, Transport::Grpc, batch)
            .await
            .map_err(|refusal| refusal_to_status(&refusal))
    }

    /// Counts a request refused before decoding and builds its status.
    fn refuse(&self, reason: &'static str, code: Code, message: impl Into<String>) -> Status {
        self.consumer.refused_request(Transport::Grpc, reason);
        Status::new(code, message)
    }

    /// UNAUTHENTICATED or INVALID_ARGUMENT for a tenant that cannot be accepted, counted.
    fn tenant_status(&self, error: &TenantError) -> Status {
        let code = match error {
            TenantError::Unauthenticated(_) => Code::Unauthenticated,
            TenantError::InvalidTenant(_) => Code::InvalidArgument,
        };
        self.refuse(error.reason(), code, error.to_string())
    }

    /// Maps an error from tonic's framing layer (size limits, gzip, truncation) to the
    /// status OTLP clients expect, and counts it.
    fn framing_error(&self, status: Status) -> Status {
        match status.code() {
            // OUT_OF_RANGE: the frame header announces more than the limit;
            // RESOURCE_EXHAUSTED: inflating passed the limit.
            Code::OutOfRange | Code::ResourceExhausted => self.refuse(
                "too_large",
                Code::ResourceExhausted,
                format!(
                    "request message is larger than max_recv_msg_size ({} bytes): {}",
                    self.max_msg_size,
                    status.message()
                ),
            ),
            // Corrupt gzip, a truncated frame, an invalid compression flag: the sender's fault.
            Code::Internal | Code::InvalidArgument => {
                self.refuse("malformed", Code::InvalidArgument, status.message())
            }
            // The connection failed while the body was read; nothing reached us.
            _ => {
                self.consumer.refused_request(Transport::Grpc, "incomplete");
                status
            }
        }
    }
}

/// RESOURCE_EXHAUSTED (or UNAVAILABLE while shutting down) with a `RetryInfo`, as the
/// Collector answers, so clients back off and retry.
fn refusal_to_status(refusal: &Refusal) -> Status {
    let code = match refusal.reason {
        RefusalReason::ShuttingDown => Code::Unavailable,
        _ => Code::ResourceExhausted,
    };
    let details = refusal_status(code as i32, refusal).encode_to_vec();
    Status::with_details(code, refusal.message.clone(), Bytes::from(details))
}

/// Hands request messages over as raw bytes and encodes responses with prost.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|error| Status::internal(format!("cannot encode response: {error}")))
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // Splits the frame off tonic's buffer without copying it.
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
