//! Sends pre-encoded OTLP bodies over gRPC (tonic, without re-encoding) or HTTP (hyper) and classifies the answer.

use crate::exporters::otlp::RawRequestCodec;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::pool::Encoding;

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const TENANT_HEADER: &str = "x-scope-orgid";

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; `rejected` spans were refused inside an accepted request (OTLP partial success).
    Acked { rejected: u64 },
    /// Refused for load (RESOURCE_EXHAUSTED / UNAVAILABLE, HTTP 429 / 503): the sender may retry.
    Refused,
    /// Anything else: transport errors, timeouts, other status codes.
    Failed(String),
}

/// A connected client for one protocol; cheap to clone, one clone per worker.
#[derive(Clone)]
pub enum Sender {
    Grpc(tonic::client::Grpc<Channel>),
    Http(Box<HttpSender>),
}

#[derive(Clone)]
pub struct HttpSender {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    content_type: HeaderValue,
    gzip: bool,
    timeout: Duration,
}

impl Sender {
    /// Connects a gRPC channel (failing fast if nothing listens) with a per-request timeout.
    pub async fn grpc(endpoint: &str, gzip: bool, timeout: Duration) -> anyhow::Result<Sender> {
        let channel = Endpoint::from_shared(endpoint.to_string())
            .with_context(|| format!("invalid endpoint {endpoint:?}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .connect()
            .await
            .with_context(|| format!("cannot connect to {endpoint}"))?;
        let mut client = tonic::client::Grpc::new(channel);
        if gzip {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        Ok(Sender::Grpc(client))
    }

    /// An HTTP/1.1 client posting to `endpoint` + `/v1/traces` (unless the endpoint has a path).
    pub fn http(
        endpoint: &str,
        encoding: Encoding,
        gzip: bool,
        timeout: Duration,
    ) -> anyhow::Result<Sender> {
        let uri = traces_uri(endpoint)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let content_type = match encoding {
            Encoding::Protobuf => HeaderValue::from_static("application/x-protobuf"),
            Encoding::Json => HeaderValue::from_static("application/json"),
        };
        Ok(Sender::Http(Box::new(HttpSender {
            client,
            uri,
            content_type,
            gzip,
            timeout,
        })))
    }

    pub async fn send(&mut self, body: Bytes, tenant: Option<&str>) -> Outcome {
        match self {
            Sender::Grpc(client) => send_grpc(client, body, tenant).await,
            Sender::Http(sender) => sender.send(body, tenant).await,
        }
    }
}

/// `http://host:4318` → `http://host:4318/v1/traces`; an explicit path is kept.
pub fn traces_uri(endpoint: &str) -> anyhow::Result<Uri> {
    let uri: Uri = endpoint
        .parse()
        .with_context(|| format!("invalid endpoint {endpoint:?}"))?;
    if uri.scheme_str() != Some("http") {
        anyhow::bail!("endpoint {endpoint:?} must start with http://");
    }
    match uri.path() {
        "" | "/" => format!("{}/v1/traces", endpoint.trim_end_matches('/'))
            .parse()
            .with_context(|| format!("invalid endpoint {endpoint:?}")),
        _ => Ok(uri),
    }
}

async fn send_grpc(
    client: &mut tonic::client::Grpc<Channel>,
    body: Bytes,
    tenant: Option<&str>,
) -> Outcome {
    let mut request = tonic::Request::new(body);
    if let Some(tenant) = tenant {
        match MetadataValue::try_from(tenant) {
            Ok(value) => {
                request.metadata_mut().insert(TENANT_HEADER, value);
            }
            Err(_) => {
                return Outcome::Failed(format!("tenant {tenant:?} is not a valid header value"));
            }
        }
    }
    if let Err(error) = client.ready().await {
        return Outcome::Failed(format!("channel not ready: {error}"));
    }
    let path = PathAndQuery::from_static(EXPORT_PATH);
    match client.unary(request, path, RawRequestCodec).await {
        Ok(response) => Outcome::Acked {
            rejected: rejected(response.get_ref()),
        },
        Err(status) => classify_status(&status),
    }
}

/// Load refusals come from the server as a status without a local cause; a broken
/// connection also maps to UNAVAILABLE but carries its transport error as the source.
fn classify_status(status: &Status) -> Outcome {
    let from_server = std::error::Error::source(status).is_none();
    match status.code() {
        Code::ResourceExhausted | Code::Unavailable if from_server => Outcome::Refused,
        code => Outcome::Failed(format!("grpc {code:?}: {}", status.message())),
    }
}

fn rejected(response: &ExportTraceServiceResponse) -> u64 {
    response
        .partial_success
        .as_ref()
        .map_or(0, |p| p.rejected_spans.max(0) as u64)
}

impl HttpSender {
    async fn send(&self, body: Bytes, tenant: Option<&str>) -> Outcome {
        let mut builder =
            Request::post(self.uri.clone()).header(header::CONTENT_TYPE, self.content_type.clone());
        if self.gzip {
            builder = builder.header(header::CONTENT_ENCODING, "gzip");
        }
        if let Some(tenant) = tenant {
            builder = builder.header(TENANT_HEADER, tenant);
        }
        let request = match builder.body(Full::new(body)) {
            Ok(request) => request,
            Err(error) => return Outcome::Failed(format!("cannot build request: {error}")),
        };
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Failed(format!("timed out after {:?}", self.timeout)),
        }
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Outcome {
        let response = match self.client.request(request).await {
            Ok(response) => response,
            Err(error) => return Outcome::Failed(format!("http: {error}")),
        };
        let status = response.status();
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        // The body is read in every case so the connection can be reused.
        let body = match response.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => return Outcome::Failed(format!("http body: {error}")),
        };
        classify_http(status, is_json, &body)
    }
}

fn classify_http(status: StatusCode, is_json: bool, body: &[u8]) -> Outcome {
    if status.is_success() {
        // An empty or unreadable success body means full success, as OTLP/HTTP allows.
        let response = if is_json {
            serde_json::from_slice(body).unwrap_or_default()
        } else {
            ExportTraceServiceResponse::decode(body).unwrap_or_default()
        };
        return Outcome::Acked {
            rejected: rejected(&response),
        };
    }
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Outcome::Refused,
        other => Outcome::Failed(format!(
            "http {other}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )),
    }
}
