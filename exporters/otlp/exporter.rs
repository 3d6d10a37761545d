//! Sends batches to another collector over OTLP/gRPC and maps its answers to export outcomes.

use async_trait::async_trait;
use http::uri::PathAndQuery;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::codec::RawRequestCodec;
use super::config::Compression;
use crate::component::{
    ComponentError, ExportError, ExportTraceServiceResponse, Exporter, TraceBatch,
};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The `otlp` exporter: one lazily connected gRPC channel to the peer.
pub struct OtlpExporter {
    id: String,
    endpoint: Endpoint,
    compression: Compression,
    headers: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    client: Option<tonic::client::Grpc<Channel>>,
}

impl OtlpExporter {
    pub fn new(
        id: &str,
        endpoint: Endpoint,
        compression: Compression,
        headers: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    ) -> Self {
        Self {
            id: id.to_string(),
            endpoint,
            compression,
            headers,
            client: None,
        }
    }

    /// The client, created on first use; connecting waits for the first request, so a
    /// peer that is down does not stop spanline from starting.
    fn client(&mut self) -> &mut tonic::client::Grpc<Channel> {
        let endpoint = &self.endpoint;
        let compression = self.compression;
        self.client.get_or_insert_with(|| {
            let grpc = tonic::client::Grpc::new(endpoint.connect_lazy())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(4 << 20);
            match compression {
                Compression::Gzip => grpc.send_compressed(CompressionEncoding::Gzip),
                Compression::None => grpc,
            }
        })
    }

    fn request(&self, body: bytes::Bytes) -> tonic::Request<bytes::Bytes> {
        let mut request = tonic::Request::new(body);
        let metadata = request.metadata_mut();
        for (key, value) in &self.headers {
            metadata.insert(key.clone(), value.clone());
        }
        request
    }

    fn accepted(&self, response: ExportTraceServiceResponse) -> Result<(), ExportError> {
        let Some(partial) = response.partial_success else {
            return Ok(());
        };
        if partial.rejected_spans > 0 {
            return Err(ExportError::PartiallyRejected {
                rejected: u64::try_from(partial.rejected_spans).unwrap_or(0),
                message: partial.error_message,
            });
        }
        if !partial.error_message.is_empty() {
            // The spec makes a message without rejected spans a warning from the peer.
            tracing::warn!(exporter = %self.id, message = %partial.error_message, "peer accepted the batch with a warning");
        }
        Ok(())
    }
}

#[async_trait]
impl Exporter for OtlpExporter {
    /// Batches go out as they are encoded (the bytes they arrived in, when they still
    /// have them).
    fn reads_spans(&self) -> bool {
        false
    }

    async fn start(&mut self) -> Result<(), ComponentError> {
        self.client();
        Ok(())
    }

    async fn export(&mut self, batch: &TraceBatch) -> Result<(), ExportError> {
        if batch.is_empty() {
            return Ok(());
        }
        let request = self.request(batch.encode_request());
        let client = self.client();
        client
            .ready()
            .await
            .map_err(|e| ExportError::retryable(format!("peer not ready: {e}")))?;
        let path = PathAndQuery::from_static(EXPORT_PATH);
        match client.unary(request, path, RawRequestCodec).await {
            Ok(response) => self.accepted(response.into_inner()),
            Err(status) => Err(classify(&status)),
        }
    }

    async fn shutdown(&mut self) {
        self.client = None;
    }
}

/// Maps a gRPC status to retryable or permanent as the OTLP specification says.
pub fn classify(status: &Status) -> ExportError {
    let retry_info = status.get_details_retry_info();
    let retry_after = retry_info.as_ref().and_then(|info| info.retry_delay);
    let message = format!("{:?}: {}", status.code(), status.message());
    let retryable = match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        // Only a peer that says when to come back is merely overloaded.
        Code::ResourceExhausted => retry_info.is_some(),
        _ => false,
    };
    if retryable {
        ExportError::Retryable {
            message,
            retry_after,
        }
    } else {
        ExportError::Permanent { message }
    }
}
