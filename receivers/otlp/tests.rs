//! Tests of the `otlp` receiver: config, and real requests over loopback sockets.

use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use flate2::write::GzEncoder;
use flate2::{Compress, Compression, Crc, FlushCompress};
use http::uri::PathAndQuery;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::codec::{RETRY_INFO_TYPE_URL, RetryInfo, RpcStatus, read_capped};
use super::server::{accept_nodelay, nodelay_listener};
use super::{
    AuthConfig, EXPORT_PATH, GrpcConfig, HttpConfig, OtlpReceiver, OtlpReceiverConfig,
    OtlpReceiverFactory, Protocols, TenantConfig,
};
use crate::component::tenant::{TENANT_ATTRIBUTE, tenant_of};
use crate::component::{
    AnyValue, ByteSize, ComponentError, ExportTraceServiceRequest, ExportTraceServiceResponse,
    InstrumentationScope, KeyValue, PipelineInlet, PipelineMsg, ReceiverContext, ReceiverFactory,
    Refusal, RefusalReason, Resource, ResourceSpans, ScopeSpans, Span, TraceBatch, TraceConsumer,
    any_value, names,
};
use futures::StreamExt;

const LIMIT: usize = 4 << 20;

// ---------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------

fn parse(yaml: &str) -> Result<OtlpReceiverConfig, serde_yaml::Error> {
    serde_yaml::from_str(yaml)
}

fn problems(config: &OtlpReceiverConfig) -> Vec<String> {
    crate::testing::problems_of(config)
}

#[test]
fn null_protocol_means_enabled_with_defaults() {
    let config = parse("protocols:\n  grpc:\n").unwrap();
    assert_eq!(config.protocols.grpc, Some(GrpcConfig::default()));
    assert_eq!(config.protocols.http, None);
    let grpc = config.protocols.grpc.unwrap();
    assert_eq!(grpc.endpoint, "127.0.0.1:4317");
    assert_eq!(grpc.max_recv_msg_size, ByteSize::mib(16));

    let config = parse("protocols:\n  http: {}\n").unwrap();
    let http = config.protocols.http.unwrap();
    assert_eq!(http.endpoint, "127.0.0.1:4318");
    assert_eq!(http.traces_url_path, "/v1/traces");
    assert_eq!(http.max_request_body_size, ByteSize::mib(16));
    assert_eq!(config.protocols.grpc, None);
}

#[test]
fn example_yaml_parses_and_validates() {
    let map: std::collections::HashMap<String, OtlpReceiverConfig> =
        serde_yaml::from_str(OtlpReceiverFactory::EXAMPLE_YAML).unwrap();
    let config = &map[OtlpReceiverFactory::TYPE];
    assert!(problems(config).is_empty(), "{:?}", problems(config));
    assert!(config.protocols.grpc.is_some() && config.protocols.http.is_some());
}

#[test]
fn sizes_and_paths_parse_in_human_units() {
    let config = parse(
        "protocols:\n  grpc:\n    max_recv_msg_size: 4MiB\n  http:\n    traces_url_path: /otlp/traces\n    max_request_body_size: 512KiB\n",
    )
    .unwrap();
    assert_eq!(
        config.protocols.grpc.unwrap().max_recv_msg_size.bytes(),
        4 << 20
    );
    let http = config.protocols.http.unwrap();
    assert_eq!(http.max_request_body_size.bytes(), 512 << 10);
    assert_eq!(http.traces_url_path, "/otlp/traces");
}

#[test]
fn no_protocol_is_an_error() {
    for yaml in ["{}", "protocols: {}", "protocols:\n"] {
        let config = parse(yaml).unwrap();
        assert_eq!(
            problems(&config),
            ["protocols: must enable at least one protocol (grpc or http)"],
            "{yaml}"
        );
    }
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let config = parse(
        "protocols:\n  grpc:\n    endpoint: nowhere\n    max_recv_msg_size: 0\n  http:\n    endpoint: 127.0.0.1:99999\n    traces_url_path: v1/traces\n    max_request_body_size: 0\n",
    )
    .unwrap();
    let found = problems(&config);
    let expected = [
        "protocols::grpc::endpoint: must be host:port",
        "protocols::grpc::max_recv_msg_size: must be greater than 0, got 0",
        "protocols::http::endpoint: must be host:port",
        "protocols::http::max_request_body_size: must be greater than 0, got 0",
        "protocols::http::traces_url_path: must start with '/', got \"v1/traces\"",
    ];
    assert_eq!(found.len(), expected.len(), "{found:?}");
    for (found, expected) in found.iter().zip(expected) {
        assert!(found.starts_with(expected), "{found} vs {expected}");
    }
}

#[test]
fn unknown_keys_are_refused() {
    let error = parse("protocols:\n  grpc:\n    endpont: 1.2.3.4:1\n").unwrap_err();
    assert!(
        error.to_string().contains("unknown field `endpont`"),
        "{error}"
    );
    let error = parse("protocols:\n  thrift: {}\n").unwrap_err();
    assert!(
        error.to_string().contains("unknown field `thrift`"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------
// Harness: a receiver on 127.0.0.1:0 feeding a pipeline task the test controls
// ---------------------------------------------------------------------------------------

/// Runs a test on a current-thread runtime with a local metrics recorder: every task of
/// the runtime runs on this thread, so the receiver's counters land in `handle`.
fn run<F: Future<Output = ()>>(test: impl FnOnce(PrometheusHandle) -> F) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(test(handle)));
}

/// The value of one counter series whose labels include `labels`, 0 when absent.
fn counter(handle: &PrometheusHandle, name: &str, labels: &[(&str, &str)]) -> u64 {
    for line in handle.render().lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(rest) = series.strip_prefix(name) else {
            continue;
        };
        if !rest.starts_with('{') {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        {
            return value.parse::<f64>().unwrap() as u64;
        }
    }
    0
}

fn refused_requests(handle: &PrometheusHandle, transport: &str, reason: &str) -> u64 {
    counter(
        handle,
        names::RECEIVER_REFUSED_REQUESTS,
        &[("transport", transport), ("reason", reason)],
    )
}

/// How the fake pipeline answers the next batches.
#[derive(Clone)]
enum Answer {
    Accept,
    Refuse(Refusal),
}

struct Running {
    grpc: SocketAddr,
    http: SocketAddr,
    shutdown: CancellationToken,
    handle: JoinHandle<()>,
    answer: Arc<Mutex<Answer>>,
    accepted: mpsc::UnboundedReceiver<TraceBatch>,
}

fn test_config() -> OtlpReceiverConfig {
    OtlpReceiverConfig {
        protocols: Protocols {
            grpc: Some(GrpcConfig {
                endpoint: "127.0.0.1:0".into(),
                max_recv_msg_size: ByteSize(LIMIT as u64),
            }),
            http: Some(HttpConfig {
                endpoint: "127.0.0.1:0".into(),
                traces_url_path: "/v1/traces".into(),
                max_request_body_size: ByteSize(LIMIT as u64),
            }),
        },
        ..Default::default()
    }
}

/// Binds the receiver and serves; returns its addresses, shutdown token and join handle,
/// with the pipeline's input for the caller to answer. The pipeline reads spans if
/// `reads_spans` (the receiver decodes requests), else it takes them as they are encoded.
async fn start_raw(
    config: OtlpReceiverConfig,
    reads_spans: bool,
) -> (
    SocketAddr,
    SocketAddr,
    CancellationToken,
    JoinHandle<()>,
    mpsc::Receiver<PipelineMsg>,
) {
    let (inlet, rx) = PipelineInlet::channel("traces", 8);
    let inlet = inlet.reading_spans(reads_spans);
    let shutdown = CancellationToken::new();
    let ctx = ReceiverContext {
        id: "otlp".into(),
        consumer: TraceConsumer::new("otlp", vec![inlet]),
        shutdown: shutdown.clone(),
    };
    let bound = OtlpReceiver::new("otlp", config)
        .unwrap()
        .bind()
        .await
        .unwrap();
    let grpc = bound.grpc_addr().unwrap();
    let http = bound.http_addr().unwrap();
    (grpc, http, shutdown, bound.serve(ctx), rx)
}

async fn start() -> Running {
    start_with(test_config()).await
}

/// A receiver feeding a pipeline that takes batches as they are encoded (requests are
/// scanned, not decoded).
async fn start_with(config: OtlpReceiverConfig) -> Running {
    start_mode(config, false).await
}

async fn start_mode(config: OtlpReceiverConfig, reads_spans: bool) -> Running {
    let (grpc, http, shutdown, handle, mut rx) = start_raw(config, reads_spans).await;
    let answer = Arc::new(Mutex::new(Answer::Accept));
    let (tx, accepted) = mpsc::unbounded_channel();
    let mode = answer.clone();
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let current = mode.lock().unwrap().clone();
            match current {
                Answer::Accept => {
                    // The test keeps the batch: release its acknowledgement as a pipeline does.
                    let mut batch = msg.batch;
                    batch.release_acks();
                    let _ = tx.send(batch);
                    let _ = msg.reply.send(Ok(()));
                }
                Answer::Refuse(refusal) => {
                    let _ = msg.reply.send(Err(refusal));
                }
            }
        }
    });
    Running {
        grpc,
        http,
        shutdown,
        handle,
        answer,
        accepted,
    }
}

impl Running {
    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    async fn next_batch(&mut self) -> TraceBatch {
        tokio::time::timeout(Duration::from_secs(5), self.accepted.recv())
            .await
            .expect("a batch should arrive")
            .expect("the pipeline should be running")
    }

    fn nothing_accepted(&mut self) -> bool {
        self.accepted.try_recv().is_err()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.handle)
            .await
            .expect("the receiver should stop")
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------

fn span(trace: u8, id: u8, name: &str) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        name: name.into(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_250_000_000,
        ..Default::default()
    }
}

fn string_attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_attr("service.name", "checkout")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "tests".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// The request as the receiver passes it on: every resource stamped with `tenant`.
fn with_tenant(sent: &ExportTraceServiceRequest, tenant: &str) -> ExportTraceServiceRequest {
    let mut stamped = sent.clone();
    for rs in &mut stamped.resource_spans {
        let resource = rs.resource.get_or_insert_with(Default::default);
        resource.attributes.retain(|kv| kv.key != "tenant.id");
        resource.attributes.push(string_attr("tenant.id", tenant));
    }
    stamped
}

fn valid_request() -> ExportTraceServiceRequest {
    request(vec![span(1, 1, "GET /cart"), span(1, 2, "SELECT cart")])
}

/// A valid request whose protobuf encoding is larger than [`LIMIT`].
fn oversized_request() -> ExportTraceServiceRequest {
    let mut big = span(2, 1, "big");
    big.attributes
        .push(string_attr("payload", &"x".repeat(LIMIT + 1024)));
    request(vec![big])
}

fn span_names(batch: &TraceBatch) -> Vec<String> {
    let mut names = Vec::new();
    for rs in batch.resource_spans() {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                names.push(span.name.clone());
            }
        }
    }
    names
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A gzip stream of `mib` MiB of zeros, made from one compressed MiB repeated (a full
/// flush leaves byte-aligned blocks that do not refer back), so a 1 GiB bomb takes
/// milliseconds to build rather than a minute of compressing.
fn gzip_bomb(mib: u32) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut compress = Compress::new(Compression::best(), false);
    let mut block = Vec::with_capacity(64 << 10);
    compress
        .compress_vec(&zeros, &mut block, FlushCompress::Full)
        .unwrap();
    assert_eq!(compress.total_in(), zeros.len() as u64);
    let mut last = Vec::with_capacity(64);
    compress
        .compress_vec(&[], &mut last, FlushCompress::Finish)
        .unwrap();
    let mut one = Crc::new();
    one.update(&zeros);
    let mut crc = Crc::new();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for _ in 0..mib {
        out.extend_from_slice(&block);
        crc.combine(&one);
    }
    out.extend_from_slice(&last);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(mib << 20).to_le_bytes());
    out
}

// A request per the OTLP/JSON spec: hex ids (any case), camelCase keys, enums as integers,
// 64-bit integers as strings.
const JSON_FIXTURE: &str = r#"{
  "resourceSpans": [{
    "resource": {
      "attributes": [{ "key": "service.name", "value": { "stringValue": "my.service" } }]
    },
    "scopeSpans": [{
      "scope": { "name": "my.library", "version": "1.0.0" },
      "spans": [{
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "eee19b7ec3c1b174",
        "parentSpanId": "eee19b7ec3c1b173",
        "name": "I'm a server span",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "kind": 2,
        "attributes": [
          { "key": "http.status_code", "value": { "intValue": "503" } },
          { "key": "retry", "value": { "boolValue": true } },
          { "key": "ratio", "value": { "doubleValue": 0.25 } },
          { "key": "tags", "value": { "arrayValue": { "values": [{ "stringValue": "a" }] } } }
        ],
        "events": [{ "timeUnixNano": "1544712660500000000", "name": "retry" }],
        "status": { "code": 2, "message": "upstream unavailable" }
      }]
    }]
  }]
}"#;

// ---------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------

async fn grpc_client(addr: SocketAddr) -> TraceServiceClient<Channel> {
    TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .max_encoding_message_size(usize::MAX)
}

/// Sends arbitrary bytes as the Export request message, through tonic's client framing.
async fn grpc_raw(addr: SocketAddr, body: Bytes) -> Result<ExportTraceServiceResponse, Status> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = PathAndQuery::from_static(EXPORT_PATH);
    grpc.unary(tonic::Request::new(body), path, RawClientCodec)
        .await
        .map(|r| r.into_inner())
}

/// Sends one gRPC frame as is (flag, length, payload) over HTTP/2, for payloads tonic's
/// client would not produce, such as an already gzipped bomb.
async fn grpc_frame(
    addr: SocketAddr,
    path: &str,
    encoding: Option<&str>,
    payload: &[u8],
) -> Status {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let mut frame = Vec::with_capacity(payload.len() + 5);
    frame.push(u8::from(encoding.is_some()));
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    let mut builder = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(encoding) = encoding {
        builder = builder.header("grpc-encoding", encoding);
    }
    let response = client
        .request(builder.body(Full::new(Bytes::from(frame))).unwrap())
        .await
        .unwrap();
    if let Some(status) = Status::from_header_map(response.headers()) {
        return status;
    }
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    Status::from_header_map(&trailers).expect("a grpc-status trailer")
}

struct RawClientCodec;

impl Codec for RawClientCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawClientCodec;
    type Decoder = RawClientCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawClientCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawClientCodec
    }
}

impl Encoder for RawClientCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawClientCodec {
    type Item = ExportTraceServiceResponse;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        ExportTraceServiceResponse::decode(src.copy_to_bytes(src.remaining()))
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

struct HttpReply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl HttpReply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }
}

fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> HttpReply {
    send(client, "POST", addr, path, headers, body.into()).await
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> HttpReply {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = client
        .request(builder.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    HttpReply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// The batch kept the request's bytes, `tenant.id` appended to each resource: its size is
/// what it holds, a few bytes of framing more than encoding `stamped` afresh would take.
fn assert_wire_sized(batch: &TraceBatch, stamped: &ExportTraceServiceRequest) {
    let parts = batch
        .wire_parts()
        .expect("a scanned request keeps its wire form");
    let held: usize = parts.iter().map(|part| part.len()).sum();
    assert_eq!(batch.size_hint(), held);
    let framing = held - stamped.encoded_len();
    assert!(framing <= 3 * stamped.resource_spans.len(), "{framing}");
}

/// Request headers as name-value pairs.
type Headers<'a> = &'a [(&'a str, &'a str)];

const PROTOBUF: (&str, &str) = ("content-type", "application/x-protobuf");
const JSON: (&str, &str) = ("content-type", "application/json");
const GZIP: (&str, &str) = ("content-encoding", "gzip");

// ---------------------------------------------------------------------------------------
// gRPC
// ---------------------------------------------------------------------------------------

#[test]
fn grpc_export_reaches_the_pipeline() {
    run(|metrics| async move {
        let mut rx = start().await;
        let mut client = grpc_client(rx.grpc).await;
        let sent = valid_request();
        let response = client.export(sent.clone()).await.unwrap().into_inner();
        assert_eq!(response.partial_success, None);
        let batch = rx.next_batch().await;
        let stamped = with_tenant(&sent, "default");
        assert_eq!(batch.resource_spans(), stamped.resource_spans);
        assert_wire_sized(&batch, &stamped);

        let mut gzipped = grpc_client(rx.grpc)
            .await
            .send_compressed(CompressionEncoding::Gzip);
        gzipped.export(sent.clone()).await.unwrap();
        assert_eq!(
            rx.next_batch().await.resource_spans(),
            stamped.resource_spans
        );

        let accepted = counter(
            &metrics,
            names::RECEIVER_ACCEPTED_SPANS,
            &[("receiver", "otlp"), ("transport", "grpc")],
        );
        assert_eq!(accepted, 4);
        rx.stop().await;
    });
}

#[test]
fn grpc_malformed_protobuf_is_invalid_argument_with_the_decode_error() {
    run(|metrics| async move {
        let mut rx = start().await;
        let mut encoded = valid_request().encode_to_vec();
        encoded.truncate(encoded.len() - 3);
        let status = grpc_raw(rx.grpc, Bytes::from(encoded)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status
                .message()
                .starts_with("invalid protobuf: length past the end of the message in"),
            "{status:?}"
        );
        assert_eq!(refused_requests(&metrics, "grpc", "malformed"), 1);

        // Corrupt gzip is the sender's fault too.
        let status = grpc_frame(rx.grpc, EXPORT_PATH, Some("gzip"), b"not gzip at all").await;
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(refused_requests(&metrics, "grpc", "malformed"), 2);
        assert!(rx.nothing_accepted());
        rx.stop().await;
    });
}

#[test]
fn grpc_over_the_size_limit_is_resource_exhausted_compressed_or_not() {
    run(|metrics| async move {
        let mut rx = start().await;
        let big = oversized_request();
        let status = grpc_client(rx.grpc)
            .await
            .export(big.clone())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("max_recv_msg_size"), "{status:?}");

        // Gzip shrinks it far below the limit: the inflated size is what counts.
        let mut gzipped = grpc_client(rx.grpc)
            .await
            .send_compressed(CompressionEncoding::Gzip)
            .max_encoding_message_size(usize::MAX);
        let status = gzipped.export(big).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(refused_requests(&metrics, "grpc", "too_large"), 2);
        assert!(rx.nothing_accepted());
        rx.stop().await;
    });
}

#[test]
fn grpc_gzip_bomb_is_refused_without_inflating_it() {
    run(|metrics| async move {
        let mut rx = start().await;
        let bomb = gzip_bomb(1024);
        assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
        let started = Instant::now();
        let status = grpc_frame(rx.grpc, EXPORT_PATH, Some("gzip"), &bomb).await;
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        // Inflating 1 GiB takes many seconds in a debug build; stopping at 4 MiB does not.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(refused_requests(&metrics, "grpc", "too_large"), 1);
        assert!(rx.nothing_accepted());
        rx.stop().await;
    });
}

#[test]
fn grpc_partial_success_rejects_spans_with_invalid_ids() {
    run(|metrics| async move {
        let mut rx = start().await;
        let mut short_trace = span(3, 1, "short trace id");
        short_trace.trace_id.truncate(15);
        let zero_span = span(3, 0, "zero span id");
        let sent = request(vec![span(3, 2, "good"), short_trace, zero_span]);
        let response = grpc_client(rx.grpc)
            .await
            .export(sent)
            .await
            .unwrap()
            .into_inner();
        let partial = response.partial_success.expect("a partial success");
        assert_eq!(partial.rejected_spans, 2);
        assert!(
            partial.error_message.contains("trace_id must be 16 bytes"),
            "{partial:?}"
        );
        assert!(
            partial.error_message.contains("short trace id"),
            "{partial:?}"
        );
        assert_eq!(span_names(&rx.next_batch().await), ["good"]);
        let rejected = counter(
            &metrics,
            names::RECEIVER_REFUSED_SPANS,
            &[("transport", "grpc"), ("reason", "invalid_span")],
        );
        assert_eq!(rejected, 2);

        // Nothing valid at all: nothing is handed on, the answer still says why.
        let response = grpc_client(rx.grpc)
            .await
            .export(request(vec![span(0, 1, "zero trace id")]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.partial_success.unwrap().rejected_spans, 1);
        assert!(rx.nothing_accepted());
        rx.stop().await;
    });
}

#[test]
fn grpc_refusals_are_resource_exhausted_or_unavailable_with_retry_info() {
    run(|metrics| async move {
        let rx = start().await;
        let mut client = grpc_client(rx.grpc).await;
        rx.answer(Answer::Refuse(
            Refusal::new(
                RefusalReason::PipelineFull,
                "pipeline traces is full, retry later",
            )
            .with_retry_after(Duration::from_millis(2500)),
        ));
        let status = client.export(valid_request()).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "pipeline traces is full, retry later");
        let details = RpcStatus::decode(status.details()).unwrap();
        assert_eq!(details.details[0].type_url, RETRY_INFO_TYPE_URL);
        let retry = RetryInfo::decode(details.details[0].value.as_slice()).unwrap();
        let delay = retry.retry_delay.unwrap();
        assert_eq!((delay.seconds, delay.nanos), (2, 500_000_000));
        let refused = counter(
            &metrics,
            names::RECEIVER_REFUSED_SPANS,
            &[("transport", "grpc"), ("reason", "pipeline_full")],
        );
        assert_eq!(refused, 2);

        rx.answer(Answer::Refuse(Refusal::new(
            RefusalReason::ShuttingDown,
            "spanline is shutting down",
        )));
        let status = client.export(valid_request()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "spanline is shutting down");
        rx.stop().await;
    });
}

#[test]
fn grpc_other_signals_are_unimplemented() {
    run(|_| async move {
        let rx = start().await;
        let encoded = ExportTraceServiceRequest::default().encode_to_vec();
        for path in [
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            "/opentelemetry.proto.collector.trace.v1.TraceService/Other",
        ] {
            let status = grpc_frame(rx.grpc, path, None, &encoded).await;
            assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
        }
        rx.stop().await;
    });
}

/// Both servers set TCP_NODELAY on accepted sockets themselves: tonic's own flag does not
/// apply to a listener it did not bind.
#[test]
fn accepted_sockets_have_tcp_nodelay() {
    run(|_| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = Box::pin(accept_nodelay(listener));
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap(), "grpc socket");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = nodelay_listener(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = axum::serve::Listener::accept(&mut listener).await;
        assert!(accepted.nodelay().unwrap(), "http socket");
    });
}

/// Loopback round trips on one connection take about a millisecond, not tens.
#[test]
fn grpc_round_trips_are_fast() {
    run(|_| async move {
        let mut rx = start().await;
        let mut client = grpc_client(rx.grpc).await;
        let mut times = Vec::new();
        for _ in 0..15 {
            let started = Instant::now();
            client.export(valid_request()).await.unwrap();
            times.push(started.elapsed());
            rx.next_batch().await;
        }
        times.sort();
        assert!(
            times[times.len() / 2] < Duration::from_millis(25),
            "{times:?}"
        );
        rx.stop().await;
    });
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

#[test]
fn http_protobuf_export_reaches_the_pipeline_plain_or_gzip() {
    run(|metrics| async move {
        let mut rx = start().await;
        let client = http_client();
        let sent = valid_request();
        let encoded = sent.encode_to_vec();
        for (headers, body) in [
            (vec![PROTOBUF], encoded.clone()),
            (vec![PROTOBUF, GZIP], gzip(&encoded)),
            (
                vec![
                    ("content-type", "Application/X-Protobuf; charset=binary"),
                    ("content-encoding", "identity"),
                ],
                encoded.clone(),
            ),
        ] {
            let reply = post(&client, rx.http, "/v1/traces", &headers, body).await;
            assert_eq!(reply.status, StatusCode::OK, "{headers:?}");
            assert_eq!(reply.headers["content-type"], "application/x-protobuf");
            let response = ExportTraceServiceResponse::decode(reply.body).unwrap();
            assert_eq!(response.partial_success, None);
            let batch = rx.next_batch().await;
            let stamped = with_tenant(&sent, "default");
            assert_eq!(batch.resource_spans(), stamped.resource_spans);
            assert_wire_sized(&batch, &stamped);
        }
        let accepted = counter(
            &metrics,
            names::RECEIVER_ACCEPTED_SPANS,
            &[("transport", "http")],
        );
        assert_eq!(accepted, 6);
        rx.stop().await;
    });
}

#[test]
fn http_json_follows_the_otlp_json_encoding() {
    run(|_| async move {
        let mut rx = start().await;
        let client = http_client();
        let reply = post(&client, rx.http, "/v1/traces", &[JSON], JSON_FIXTURE).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers["content-type"], "application/json");
        assert_eq!(reply.json(), serde_json::json!({}));

        let batch = rx.next_batch().await;
        let rs = &batch.resource_spans()[0];
        assert_eq!(
            rs.resource.as_ref().unwrap().attributes[0],
            string_attr("service.name", "my.service")
        );
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.scope.as_ref().unwrap().version, "1.0.0");
        let span = &ss.spans[0];
        assert_eq!(span.trace_id, hex("5b8efff798038103d269b633813fc60c"));
        assert_eq!(span.span_id, hex("eee19b7ec3c1b174"));
        assert_eq!(span.parent_span_id, hex("eee19b7ec3c1b173"));
        assert_eq!(span.kind, 2);
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        let values: Vec<_> = span
            .attributes
            .iter()
            .map(|kv| kv.value.clone().unwrap().value.unwrap())
            .collect();
        assert_eq!(values[0], any_value::Value::IntValue(503));
        assert_eq!(values[1], any_value::Value::BoolValue(true));
        assert_eq!(values[2], any_value::Value::DoubleValue(0.25));
        assert!(matches!(values[3], any_value::Value::ArrayValue(_)));
        assert_eq!(span.events[0].time_unix_nano, 1_544_712_660_500_000_000);
        let status = span.status.as_ref().unwrap();
        assert_eq!(
            (status.code, status.message.as_str()),
            (2, "upstream unavailable")
        );
        // JSON is measured as protobuf, the unit queues are bounded in.
        assert_eq!(
            batch.size_hint(),
            crate::component::batch::encoded_len(batch.resource_spans())
        );

        let reply = post(
            &client,
            rx.http,
            "/v1/traces",
            &[JSON, GZIP],
            gzip(JSON_FIXTURE.as_bytes()),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(rx.next_batch().await.span_count(), 1);
        rx.stop().await;
    });
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn http_partial_success_in_the_request_format() {
    run(|metrics| async move {
        let mut rx = start().await;
        let client = http_client();
        let mut bad = span(4, 1, "bad");
        bad.span_id = vec![1, 2, 3];
        let sent = request(vec![span(4, 2, "good"), bad]);

        let reply = post(
            &client,
            rx.http,
            "/v1/traces",
            &[PROTOBUF],
            sent.encode_to_vec(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        let partial = ExportTraceServiceResponse::decode(reply.body)
            .unwrap()
            .partial_success
            .unwrap();
        assert_eq!(partial.rejected_spans, 1);
        assert!(
            partial.error_message.contains("span_id must be 8 bytes"),
            "{partial:?}"
        );
        assert_eq!(span_names(&rx.next_batch().await), ["good"]);

        let json = serde_json::to_vec(&sent).unwrap();
        let reply = post(&client, rx.http, "/v1/traces", &[JSON], json).await;
        assert_eq!(reply.status, StatusCode::OK);
        let body = reply.json();
        assert_eq!(body["partialSuccess"]["rejectedSpans"], 1);
        assert!(
            body["partialSuccess"]["errorMessage"]
                .as_str()
                .unwrap()
                .contains("span_id")
        );
        assert_eq!(span_names(&rx.next_batch().await), ["good"]);
        let rejected = counter(
            &metrics,
            names::RECEIVER_REFUSED_SPANS,
            &[("transport", "http"), ("reason", "invalid_span")],
        );
        assert_eq!(rejected, 2);
        rx.stop().await;
    });
}

#[test]
fn http_bad_requests_get_precise_statuses_and_are_counted() {
    run(|metrics| async move {
        let mut rx = start().await;
        let client = http_client();
        let mut truncated = valid_request().encode_to_vec();
        truncated.truncate(truncated.len() - 3);

        let reply = post(&client, rx.http, "/v1/traces", &[PROTOBUF], truncated).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let status = RpcStatus::decode(reply.body).unwrap();
        assert_eq!(status.code, Code::InvalidArgument as i32);
        assert!(
            status
                .message
                .starts_with("invalid protobuf: length past the end of the message in"),
            "{status:?}"
        );

        let reply = post(
            &client,
            rx.http,
            "/v1/traces",
            &[JSON],
            r#"{"resourceSpans": [{"#,
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let body = reply.json();
        assert_eq!(body["code"], 3);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("invalid JSON: EOF while parsing"),
            "{body}"
        );

        let reply = post(
            &client,
            rx.http,
            "/v1/traces",
            &[JSON],
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#,
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(refused_requests(&metrics, "http", "malformed"), 3);

        let reply = post(
            &client,
            rx.http,
            "/v1/traces",
            &[PROTOBUF, GZIP],
            "not gzip",
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert!(reply.body.len() > 2);
        assert_eq!(refused_requests(&metrics, "http", "malformed"), 4);

        for headers in [vec![("content-type", "text/plain")], vec![]] {
            let reply = post(&client, rx.http, "/v1/traces", &headers, "hello").await;
            assert_eq!(
                reply.status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{headers:?}"
            );
            assert!(
                reply.json()["message"]
                    .as_str()
                    .unwrap()
                    .contains("unsupported Content-Type")
            );
        }
        assert_eq!(
            refused_requests(&metrics, "http", "unsupported_media_type"),
            2
        );

        let reply = post(
            &client,
            rx.http,
            "/v1/traces",
            &[PROTOBUF, ("content-encoding", "br")],
            "x",
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(
            refused_requests(&metrics, "http", "unsupported_encoding"),
            1
        );

        let reply = send(&client, "GET", rx.http, "/v1/traces", &[], Bytes::new()).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(reply.headers["allow"], "POST");
        let reply = post(&client, rx.http, "/v1/metrics", &[PROTOBUF], "").await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert!(rx.nothing_accepted());
        rx.stop().await;
    });
}

#[test]
fn http_over_the_size_limit_is_413_compressed_or_not() {
    run(|metrics| async move {
        let mut rx = start().await;
        let client = http_client();
        let big = oversized_request().encode_to_vec();
        let reply = post(&client, rx.http, "/v1/traces", &[PROTOBUF], big.clone()).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            RpcStatus::decode(reply.body).unwrap().code,
            Code::ResourceExhausted as i32
        );

        let small = gzip(&big);
        assert!(small.len() < LIMIT);
        let reply = post(&client, rx.http, "/v1/traces", &[PROTOBUF, GZIP], small).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

        let bomb = gzip_bomb(1024);
        let started = Instant::now();
        let reply = post(&client, rx.http, "/v1/traces", &[JSON, GZIP], bomb).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            reply.json()["message"]
                .as_str()
                .unwrap()
                .contains("larger than the limit")
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(refused_requests(&metrics, "http", "too_large"), 3);
        assert!(rx.nothing_accepted());
        rx.stop().await;
    });
}

/// A chunked body announces no length: the limit applies while it is read.
#[test]
fn http_chunked_body_over_the_limit_is_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    run(|metrics| async move {
        let rx = start().await;
        let mut stream = tokio::net::TcpStream::connect(rx.http).await.unwrap();
        let head = "POST /v1/traces HTTP/1.1\r\nhost: test\r\ncontent-type: application/x-protobuf\r\ntransfer-encoding: chunked\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..5 {
            let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
            framed.extend_from_slice(&chunk);
            framed.extend_from_slice(b"\r\n");
            // The server may answer and stop reading before the last chunk.
            if stream.write_all(&framed).await.is_err() {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
        let mut response = vec![0u8; 12];
        stream.read_exact(&mut response).await.unwrap();
        assert_eq!(&response, b"HTTP/1.1 413");
        assert_eq!(refused_requests(&metrics, "http", "too_large"), 1);
        rx.stop().await;
    });
}

#[test]
fn http_refusals_are_429_or_503_with_retry_after() {
    run(|metrics| async move {
        let rx = start().await;
        let client = http_client();
        let body = valid_request().encode_to_vec();
        rx.answer(Answer::Refuse(
            Refusal::new(
                RefusalReason::MemoryLimit,
                "memory limit reached, retry later",
            )
            .with_retry_after(Duration::from_millis(2500)),
        ));
        let reply = post(
            &client,
            rx.http,
            "/v1/traces",
            &[JSON],
            serde_json::to_vec(&valid_request()).unwrap(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(reply.headers["retry-after"], "3");
        assert_eq!(
            reply.json(),
            serde_json::json!({"code": 8, "message": "memory limit reached, retry later"})
        );

        let reply = post(&client, rx.http, "/v1/traces", &[PROTOBUF], body.clone()).await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        let status = RpcStatus::decode(reply.body).unwrap();
        assert_eq!(status.message, "memory limit reached, retry later");
        assert_eq!(status.details[0].type_url, RETRY_INFO_TYPE_URL);
        let refused = counter(
            &metrics,
            names::RECEIVER_REFUSED_SPANS,
            &[("transport", "http"), ("reason", "memory_limit")],
        );
        assert_eq!(refused, 4);

        rx.answer(Answer::Refuse(Refusal::new(
            RefusalReason::ShuttingDown,
            "spanline is shutting down",
        )));
        let reply = post(&client, rx.http, "/v1/traces", &[PROTOBUF], body).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.headers["retry-after"], "1");
        rx.stop().await;
    });
}

#[test]
fn http_serves_only_the_configured_traces_path() {
    run(|_| async move {
        let mut config = test_config();
        config.protocols.grpc = None;
        config.protocols.http.as_mut().unwrap().traces_url_path = "/custom/traces".into();
        let (inlet, mut pipeline) = PipelineInlet::channel("traces", 8);
        let shutdown = CancellationToken::new();
        let ctx = ReceiverContext {
            id: "otlp/custom".into(),
            consumer: TraceConsumer::new("otlp/custom", vec![inlet]),
            shutdown: shutdown.clone(),
        };
        let bound = OtlpReceiver::new("otlp/custom", config)
            .unwrap()
            .bind()
            .await
            .unwrap();
        assert_eq!(bound.grpc_addr(), None);
        let http = bound.http_addr().unwrap();
        let handle = bound.serve(ctx);

        let body = valid_request().encode_to_vec();
        let reply = post(
            &http_client(),
            http,
            "/v1/traces",
            &[PROTOBUF],
            body.clone(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        let call = tokio::spawn(async move {
            post(&http_client(), http, "/custom/traces", &[PROTOBUF], body)
                .await
                .status
        });
        let msg = pipeline.recv().await.unwrap();
        assert_eq!(msg.batch.span_count(), 2);
        drop(msg.batch);
        msg.reply.send(Ok(())).unwrap();
        assert_eq!(call.await.unwrap(), StatusCode::OK);
        shutdown.cancel();
        handle.await.unwrap();
    });
}

// ---------------------------------------------------------------------------------------
// Robustness and lifecycle
// ---------------------------------------------------------------------------------------

#[test]
fn bad_input_does_not_affect_the_next_request() {
    run(|_| async move {
        let mut rx = start().await;
        let client = http_client();
        let mut truncated = valid_request().encode_to_vec();
        truncated.truncate(truncated.len() - 3);
        let big = oversized_request().encode_to_vec();
        let bomb = gzip_bomb(1024);

        let cases: [(Headers, Vec<u8>, StatusCode); 5] = [
            (&[PROTOBUF], truncated.clone(), StatusCode::BAD_REQUEST),
            (
                &[JSON],
                b"{\"resourceSpans\": [nope]}".to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                &[("content-type", "text/xml")],
                b"<spans/>".to_vec(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (&[PROTOBUF], big.clone(), StatusCode::PAYLOAD_TOO_LARGE),
            (
                &[PROTOBUF, GZIP],
                bomb.clone(),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        ];
        for (headers, body, expected) in cases {
            let reply = post(&client, rx.http, "/v1/traces", headers, body).await;
            assert_eq!(reply.status, expected, "{headers:?}");
        }
        let reply = post(
            &client,
            rx.http,
            "/v1/traces",
            &[PROTOBUF],
            valid_request().encode_to_vec(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(rx.next_batch().await.span_count(), 2);

        let mut grpc = grpc_client(rx.grpc).await;
        let status = grpc_raw(rx.grpc, Bytes::from(truncated)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let status = grpc.export(oversized_request()).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted);
        let status = grpc_frame(rx.grpc, EXPORT_PATH, Some("gzip"), &bomb).await;
        assert_eq!(status.code(), Code::ResourceExhausted);
        grpc.export(valid_request()).await.unwrap();
        assert_eq!(rx.next_batch().await.span_count(), 2);
        rx.stop().await;
    });
}

#[test]
fn shutdown_lets_in_flight_requests_finish() {
    run(|_| async move {
        let (grpc, http, shutdown, handle, mut pipeline) = start_raw(test_config(), false).await;
        let mut client = grpc_client(grpc).await;
        let grpc_call = tokio::spawn(async move { client.export(valid_request()).await });
        let first = pipeline.recv().await.unwrap();
        let body = valid_request().encode_to_vec();
        let http_call = tokio::spawn(async move {
            post(&http_client(), http, "/v1/traces", &[PROTOBUF], body)
                .await
                .status
        });
        let second = pipeline.recv().await.unwrap();

        shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!grpc_call.is_finished() && !http_call.is_finished());
        assert!(
            !handle.is_finished(),
            "the servers should wait for in-flight requests"
        );
        drop((first.batch, second.batch));
        first.reply.send(Ok(())).unwrap();
        second.reply.send(Ok(())).unwrap();

        grpc_call.await.unwrap().unwrap();
        assert_eq!(http_call.await.unwrap(), StatusCode::OK);
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("the receiver should stop once requests finished")
            .unwrap();
        assert!(tokio::net::TcpStream::connect(http).await.is_err());
        assert!(tokio::net::TcpStream::connect(grpc).await.is_err());
    });
}

#[test]
fn an_address_in_use_fails_at_start_with_a_bind_error() {
    run(|_| async move {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap().to_string();
        let mut config = test_config();
        config.protocols.http.as_mut().unwrap().endpoint = address.clone();
        let receiver = OtlpReceiverFactory
            .build(
                config,
                &crate::component::BuildContext {
                    id: "otlp/taken".into(),
                    pipeline: None,
                },
            )
            .unwrap();
        let (inlet, _rx) = PipelineInlet::channel("traces", 1);
        let ctx = ReceiverContext {
            id: "otlp/taken".into(),
            consumer: TraceConsumer::new("otlp/taken", vec![inlet]),
            shutdown: CancellationToken::new(),
        };
        match receiver.start(ctx).await {
            Err(ComponentError::Bind { id, address: a, .. }) => {
                assert_eq!((id.as_str(), a.as_str()), ("otlp/taken", address.as_str()));
            }
            Err(other) => panic!("expected a bind error, got {other}"),
            Ok(_) => panic!("expected a bind error, the receiver started"),
        }
    });
}

#[test]
fn gzip_bomb_helper_is_a_valid_gzip_stream() {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gzip_bomb(3).as_slice())
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out.len(), 3 << 20);
    assert!(out.iter().all(|b| *b == 0));
}

#[test]
fn capped_inflation_reads_only_a_sliver_of_a_bomb() {
    struct Counting<'a>(&'a [u8], usize);
    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1 += n;
            Ok(n)
        }
    }
    let bomb = gzip_bomb(1024);
    let mut counting = Counting(&bomb, 0);
    let result = read_capped(flate2::read::MultiGzDecoder::new(&mut counting), LIMIT, 0);
    assert!(matches!(
        result,
        Err(super::codec::DecodeError::TooLarge { limit: LIMIT })
    ));
    assert!(
        counting.1 < bomb.len() / 10,
        "read {} of {} bytes",
        counting.1,
        bomb.len()
    );
}

// ---------------------------------------------------------------------------------------
// Tenants and authentication
// ---------------------------------------------------------------------------------------

fn tenancy_config(required: bool) -> OtlpReceiverConfig {
    let mut config = test_config();
    config.auth = AuthConfig {
        api_keys: [("key-abc".to_string(), "acme".to_string())].into(),
        api_keys_file: None,
        required,
    };
    config.tenant = TenantConfig {
        default_tenant: "fallback".into(),
        ..Default::default()
    };
    config
}

/// A valid request whose resource claims `tenant.id = claimed`.
fn claiming(claimed: &str) -> ExportTraceServiceRequest {
    with_tenant(&valid_request(), claimed)
}

/// The `tenant.id` of every resource of a batch, failing on a resource with more than one.
fn batch_tenants(batch: &TraceBatch) -> Vec<String> {
    let mut tenants = Vec::new();
    for rs in batch.resource_spans() {
        let resource = rs.resource.as_ref().expect("a resource");
        let count = resource
            .attributes
            .iter()
            .filter(|kv| kv.key == TENANT_ATTRIBUTE)
            .count();
        assert_eq!(count, 1, "exactly one tenant.id per resource");
        tenants.push(tenant_of(Some(resource)).unwrap().to_string());
    }
    tenants
}

async fn grpc_with(
    addr: SocketAddr,
    metadata: &[(&'static str, &str)],
    sent: ExportTraceServiceRequest,
) -> Result<ExportTraceServiceResponse, Status> {
    let mut request = tonic::Request::new(sent);
    for (key, value) in metadata {
        request.metadata_mut().insert(*key, value.parse().unwrap());
    }
    grpc_client(addr)
        .await
        .export(request)
        .await
        .map(|r| r.into_inner())
}

fn overrides(metrics: &PrometheusHandle) -> u64 {
    counter(
        metrics,
        names::RECEIVER_TENANT_OVERRIDES,
        &[("receiver", "otlp")],
    )
}

#[test]
fn tenancy_config_parses_validates_and_reports_paths() {
    let config = parse(
        "protocols: { grpc: }\nauth: { api_keys: { k1: acme }, required: true }\ntenant: { header: X-Tenant, from_resource_attribute: false, default_tenant: anon }\n",
    )
    .unwrap();
    assert_eq!(config.auth.api_keys["k1"], "acme");
    assert!(config.auth.required);
    assert_eq!(config.tenant.header, "X-Tenant");
    assert!(!config.tenant.from_resource_attribute);
    assert!(problems(&config).is_empty());
    let defaults = parse("protocols: { grpc: }\n").unwrap();
    assert_eq!(defaults.tenant.header, "X-Scope-OrgID");
    assert_eq!(defaults.tenant.default_tenant, "default");
    assert!(defaults.tenant.from_resource_attribute);

    let broken = parse(
        "protocols: { grpc: }\nauth: { api_keys: { secret-key: 'a b' }, required: true }\ntenant: { header: 'bad header', default_tenant: '..' }\n",
    )
    .unwrap();
    let found = problems(&broken);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].starts_with("auth::api_keys::sec***: tenant id \"a b\" contains ' '"));
    assert!(found[1].starts_with("tenant::header: must be a valid header name"));
    assert!(found[2].starts_with("tenant::default_tenant: tenant id \"..\" is not allowed"));
    let keyless = parse("protocols: { grpc: }\nauth: { required: true }\n").unwrap();
    assert!(problems(&keyless)[0].starts_with("auth::required: is true but no api_keys"));
}

#[test]
fn grpc_api_keys_authenticate_and_name_the_tenant() {
    run(|metrics| async move {
        let mut rx = start_with(tenancy_config(true)).await;
        let missing = grpc_with(rx.grpc, &[], valid_request()).await.unwrap_err();
        assert_eq!(missing.code(), Code::Unauthenticated);
        assert!(missing.message().contains("missing API key"), "{missing:?}");
        let wrong = grpc_with(
            rx.grpc,
            &[("authorization", "Bearer key-abd")],
            valid_request(),
        )
        .await
        .unwrap_err();
        assert_eq!(wrong.code(), Code::Unauthenticated);
        // A header does not stand in for a required key.
        let header_only = grpc_with(rx.grpc, &[("x-scope-orgid", "acme")], valid_request())
            .await
            .unwrap_err();
        assert_eq!(header_only.code(), Code::Unauthenticated);
        assert_eq!(refused_requests(&metrics, "grpc", "unauthenticated"), 3);
        assert!(rx.nothing_accepted());

        // The key's tenant wins over what the client claims, and the attempt is counted.
        let keyed = [
            ("authorization", "Bearer key-abc"),
            ("x-scope-orgid", "beta"),
        ];
        grpc_with(rx.grpc, &keyed, claiming("other")).await.unwrap();
        assert_eq!(batch_tenants(&rx.next_batch().await), ["acme"]);
        assert_eq!(overrides(&metrics), 1);
        grpc_with(rx.grpc, &keyed, claiming("acme")).await.unwrap();
        assert_eq!(batch_tenants(&rx.next_batch().await), ["acme"]);
        assert_eq!(overrides(&metrics), 1, "a matching claim is no override");
        rx.stop().await;
    });
}

#[test]
fn http_api_keys_authenticate_and_name_the_tenant() {
    run(|metrics| async move {
        let mut rx = start_with(tenancy_config(true)).await;
        let client = http_client();
        let body = claiming("other").encode_to_vec();
        for headers in [
            vec![PROTOBUF],
            vec![PROTOBUF, ("authorization", "Bearer nope")],
        ] {
            let reply = post(&client, rx.http, "/v1/traces", &headers, body.clone()).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{headers:?}");
            assert_eq!(reply.headers["www-authenticate"], "Bearer");
            let status = RpcStatus::decode(reply.body).unwrap();
            assert_eq!(status.code, Code::Unauthenticated as i32);
        }
        assert_eq!(refused_requests(&metrics, "http", "unauthenticated"), 2);
        assert!(rx.nothing_accepted());

        let headers = [PROTOBUF, ("authorization", "Bearer key-abc")];
        let reply = post(&client, rx.http, "/v1/traces", &headers, body).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(batch_tenants(&rx.next_batch().await), ["acme"]);
        assert_eq!(overrides(&metrics), 1);
        rx.stop().await;
    });
}

#[test]
fn the_tenant_header_overrides_resources_when_no_key_is_given() {
    run(|metrics| async move {
        let mut rx = start_with(tenancy_config(false)).await;
        grpc_with(rx.grpc, &[("x-scope-orgid", "beta")], claiming("other"))
            .await
            .unwrap();
        assert_eq!(batch_tenants(&rx.next_batch().await), ["beta"]);
        // An unknown key is ignored when keys are optional: the header still applies.
        let unknown = [("authorization", "Bearer nope"), ("x-scope-orgid", "beta")];
        grpc_with(rx.grpc, &unknown, valid_request()).await.unwrap();
        assert_eq!(batch_tenants(&rx.next_batch().await), ["beta"]);

        let client = http_client();
        let headers = [PROTOBUF, ("X-Scope-OrgID", "gamma")];
        let body = claiming("other").encode_to_vec();
        let reply = post(&client, rx.http, "/v1/traces", &headers, body).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(batch_tenants(&rx.next_batch().await), ["gamma"]);
        assert_eq!(overrides(&metrics), 2);
        rx.stop().await;
    });
}

#[test]
fn resources_name_their_tenant_or_get_the_default() {
    run(|metrics| async move {
        let mut rx = start_with(tenancy_config(false)).await;
        let mut mixed = claiming("gamma");
        mixed.resource_spans.extend(valid_request().resource_spans);
        grpc_with(rx.grpc, &[], mixed.clone()).await.unwrap();
        assert_eq!(batch_tenants(&rx.next_batch().await), ["gamma", "fallback"]);

        let client = http_client();
        let body = serde_json::to_vec(&mixed).unwrap();
        let reply = post(&client, rx.http, "/v1/traces", &[JSON], body).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(batch_tenants(&rx.next_batch().await), ["gamma", "fallback"]);

        // With resource attributes not trusted, every resource gets the default.
        let mut config = tenancy_config(false);
        config.tenant.from_resource_attribute = false;
        let mut untrusting = start_with(config).await;
        grpc_with(untrusting.grpc, &[], mixed).await.unwrap();
        let batch = untrusting.next_batch().await;
        assert_eq!(batch_tenants(&batch), ["fallback", "fallback"]);
        assert_eq!(overrides(&metrics), 0);
        untrusting.stop().await;
        rx.stop().await;
    });
}

#[test]
fn invalid_tenant_ids_are_refused_with_the_problem_named() {
    run(|metrics| async move {
        let mut rx = start_with(tenancy_config(false)).await;
        let status = grpc_with(rx.grpc, &[("x-scope-orgid", "a/b")], valid_request())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("x-scope-orgid"), "{status:?}");
        assert!(status.message().contains("'/'"), "{status:?}");
        let status = grpc_with(rx.grpc, &[], claiming("..")).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("tenant.id"), "{status:?}");
        assert_eq!(refused_requests(&metrics, "grpc", "invalid_tenant"), 2);

        let client = http_client();
        let long = "x".repeat(151);
        let headers = [JSON, ("x-scope-orgid", long.as_str())];
        let reply = post(&client, rx.http, "/v1/traces", &headers, "{}").await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert!(
            reply.json()["message"]
                .as_str()
                .unwrap()
                .contains("limit is 150")
        );
        let body = claiming("has space").encode_to_vec();
        let reply = post(&client, rx.http, "/v1/traces", &[PROTOBUF], body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let status = RpcStatus::decode(reply.body).unwrap();
        assert!(status.message.contains("contains ' '"), "{status:?}");
        assert_eq!(refused_requests(&metrics, "http", "invalid_tenant"), 2);
        assert!(rx.nothing_accepted());
        rx.stop().await;
    });
}

#[test]
fn decoding_and_scanning_receivers_deliver_the_same_spans_and_answers() {
    run(|_| async move {
        let mut scanning = start_mode(tenancy_config(false), false).await;
        let mut decoding = start_mode(tenancy_config(false), true).await;
        let mut mixed = claiming("gamma");
        mixed.resource_spans.extend(valid_request().resource_spans);
        let mut invalid = valid_request();
        invalid.resource_spans[0].scope_spans[0].spans[0].span_id = vec![0; 8];
        let mut twice = claiming("gamma");
        let resource = twice.resource_spans[0].resource.as_mut().unwrap();
        resource
            .attributes
            .push(string_attr(TENANT_ATTRIBUTE, "gamma"));
        let header: &[(&str, &str)] = &[("x-scope-orgid", "beta")];
        // (metadata, request, whether the scanning and the decoding receiver keep the
        // request's bytes)
        let cases = [
            (&[][..], valid_request(), true, false),
            (&[], claiming("gamma"), true, true),
            (header, claiming("beta"), true, true),
            (header, claiming("other"), false, false),
            (&[], mixed, true, false),
            (&[], invalid, false, false),
            // Resources name their own tenant here, so a repeated claim stays as sent.
            (&[], twice, true, true),
        ];
        for (i, (metadata, sent, scan_keeps, decode_keeps)) in cases.into_iter().enumerate() {
            let scanned = grpc_with(scanning.grpc, metadata, sent.clone())
                .await
                .unwrap();
            let decoded = grpc_with(decoding.grpc, metadata, sent).await.unwrap();
            assert_eq!(scanned, decoded, "case {i}");
            let (a, b) = (scanning.next_batch().await, decoding.next_batch().await);
            assert_eq!(a.resource_spans(), b.resource_spans(), "case {i}");
            assert_eq!(a.wire_parts().is_some(), scan_keeps, "case {i}");
            assert_eq!(b.wire_parts().is_some(), decode_keeps, "case {i}");
            // Whatever form it kept, the batch's encoding decodes to its spans.
            for batch in [&a, &b] {
                let encoded = ExportTraceServiceRequest::decode(batch.encode_request()).unwrap();
                assert_eq!(encoded.resource_spans, batch.resource_spans(), "case {i}");
            }
        }
        scanning.stop().await;
        decoding.stop().await;
    });
}
