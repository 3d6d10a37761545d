//! Tests for the OTLP exporter against real tonic TraceService servers on loopback.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{Compression, OtlpExporterConfig, OtlpExporterFactory, TlsConfig, classify};
use crate::component::{
    AnyValue, BuildContext, ComponentConfig, ExportError, ExportTracePartialSuccess,
    ExportTraceServiceRequest, ExportTraceServiceResponse, Exporter, ExporterFactory,
    InstrumentationScope, KeyValue, Problems, Resource, ResourceSpans, ScopeSpans, Span,
    Status as SpanStatus, TraceBatch, any_value,
};

/// How a test server answers every export.
#[derive(Clone)]
enum Answer {
    Accept,
    Fail(Code),
    FailWithRetryInfo(Code, Duration),
    Partial(i64, &'static str),
}

/// What a test server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    request: ExportTraceServiceRequest,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
struct Recorder {
    answer: Answer,
    seen: Arc<Mutex<Vec<Seen>>>,
}

#[tonic::async_trait]
impl TraceService for Recorder {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
            .collect();
        self.seen.lock().unwrap().push(Seen {
            request: request.into_inner(),
            headers,
        });
        match &self.answer {
            Answer::Accept => Ok(Response::new(ExportTraceServiceResponse::default())),
            Answer::Fail(code) => Err(Status::new(*code, "test server says no")),
            Answer::FailWithRetryInfo(code, delay) => Err(Status::with_error_details(
                *code,
                "come back later",
                ErrorDetails::with_retry_info(Some(*delay)),
            )),
            Answer::Partial(rejected, message) => Ok(Response::new(ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans: *rejected,
                    error_message: message.to_string(),
                }),
            })),
        }
    }
}

/// A TraceService server on a loopback port; dropping `_stop` stops it.
struct Peer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _stop: oneshot::Sender<()>,
}

impl Peer {
    async fn start(answer: Answer, accept_gzip: bool) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, answer, accept_gzip)
    }

    fn serve(listener: TcpListener, answer: Answer, accept_gzip: bool) -> Peer {
        Self::serve_with(listener, answer, accept_gzip, Server::builder())
    }

    fn serve_with(
        listener: TcpListener,
        answer: Answer,
        accept_gzip: bool,
        mut server: Server,
    ) -> Peer {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = Recorder {
            answer,
            seen: Arc::clone(&seen),
        };
        let mut service = TraceServiceServer::new(recorder);
        if accept_gzip {
            service = service
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        tokio::spawn(
            server
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        Peer {
            addr,
            seen,
            _stop: stop,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// Two resources, three scopes, spans with every kind of attribute, events and links.
fn rich_batch() -> TraceBatch {
    let span = |i: u8| Span {
        trace_id: vec![i; 16],
        span_id: vec![i; 8],
        parent_span_id: vec![i + 1; 8],
        trace_state: "vendor=x".into(),
        name: format!("op-{i}"),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(i),
        end_time_unix_nano: 1_700_000_000_500_000_000,
        attributes: vec![
            kv(
                "http.route",
                any_value::Value::StringValue("/checkout".into()),
            ),
            kv("http.status_code", any_value::Value::IntValue(503)),
            kv("ratio", any_value::Value::DoubleValue(0.25)),
            kv("ok", any_value::Value::BoolValue(false)),
            kv("raw", any_value::Value::BytesValue(vec![0, 1, 255])),
            kv(
                "list",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(any_value::Value::IntValue(7)),
                    }],
                }),
            ),
            kv(
                "map",
                any_value::Value::KvlistValue(KeyValueList {
                    values: vec![kv("inner", any_value::Value::StringValue("v".into()))],
                }),
            ),
        ],
        dropped_attributes_count: 2,
        events: vec![Event {
            time_unix_nano: 1_700_000_000_100_000_000,
            name: "exception".into(),
            attributes: vec![kv(
                "exception.type",
                any_value::Value::StringValue("E".into()),
            )],
            dropped_attributes_count: 1,
        }],
        links: vec![Link {
            trace_id: vec![9; 16],
            span_id: vec![8; 8],
            trace_state: "a=b".into(),
            attributes: vec![kv(
                "link.kind",
                any_value::Value::StringValue("follows".into()),
            )],
            dropped_attributes_count: 0,
            flags: 1,
        }],
        status: Some(SpanStatus {
            message: "upstream failed".into(),
            code: 2,
        }),
        flags: 257,
        ..Default::default()
    };
    let scope = |name: &str, spans: Vec<Span>| ScopeSpans {
        scope: Some(InstrumentationScope {
            name: name.into(),
            version: "1.0".into(),
            ..Default::default()
        }),
        spans,
        schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
    };
    let resource = |service: &str, scopes: Vec<ScopeSpans>| ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv(
                "service.name",
                any_value::Value::StringValue(service.into()),
            )],
            ..Default::default()
        }),
        scope_spans: scopes,
        schema_url: String::new(),
    };
    TraceBatch::measured(vec![
        resource(
            "checkout",
            vec![
                scope("http", vec![span(1), span(2)]),
                scope("db", vec![span(3)]),
            ],
        ),
        resource("payments", vec![scope("grpc", vec![span(4)])]),
    ])
}

fn config(addr: SocketAddr, compression: Compression) -> OtlpExporterConfig {
    OtlpExporterConfig {
        endpoint: addr.to_string(),
        compression,
        tls: TlsConfig {
            insecure: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn exporter(config: OtlpExporterConfig) -> Box<dyn Exporter> {
    let mut problems = Problems::new();
    config.validate(&mut problems);
    assert!(!problems.has_errors(), "{:?}", problems.into_vec());
    let ctx = BuildContext {
        id: "otlp".into(),
        pipeline: None,
    };
    let mut exporter = OtlpExporterFactory.build(config, &ctx).unwrap();
    exporter.start().await.unwrap();
    exporter
}

fn problems_of(config: &OtlpExporterConfig) -> Vec<(String, String)> {
    let mut problems = Problems::new();
    config.validate(&mut problems);
    problems
        .into_vec()
        .into_iter()
        .map(|p| (p.path, p.message))
        .collect()
}

#[test]
fn encodes_the_request_byte_for_byte() {
    let batch = rich_batch();
    let expected = ExportTraceServiceRequest {
        resource_spans: batch.resource_spans().to_vec(),
    }
    .encode_to_vec();
    assert_eq!(batch.encode_request().as_ref(), expected.as_slice());
    assert!(TraceBatch::default().encode_request().is_empty());
}

#[test]
fn defaults_and_example() {
    let parsed: OtlpExporterConfig = serde_yaml::from_str("endpoint: gw:4317").unwrap();
    assert_eq!(parsed.compression, Compression::Gzip);
    assert!(!parsed.tls.insecure, "TLS is on unless turned off");
    assert_eq!(parsed.uri(), "https://gw:4317");
    assert!(problems_of(&parsed).is_empty());
    let doc: serde_yaml::Value = serde_yaml::from_str(OtlpExporterFactory::EXAMPLE_YAML).unwrap();
    let example: OtlpExporterConfig = serde_yaml::from_value(doc["otlp"].clone()).unwrap();
    assert!(
        problems_of(&example).is_empty(),
        "{:?}",
        problems_of(&example)
    );
    assert_eq!(example.uri(), "http://otel-gateway:4317");
    for unknown in [
        "timeout: 5s",
        "sending_queue: {}",
        "tls: {insecure_skip_verify: true}",
    ] {
        let yaml = format!("endpoint: gw:4317\n{unknown}");
        assert!(
            serde_yaml::from_str::<OtlpExporterConfig>(&yaml).is_err(),
            "{unknown}"
        );
    }
}

#[test]
fn validation_reports_every_problem() {
    let missing = problems_of(&OtlpExporterConfig::default());
    assert_eq!(missing[0].0, "endpoint");
    assert!(missing[0].1.starts_with("is required"));

    let mut bad = OtlpExporterConfig {
        endpoint: "http://gw:4317".into(),
        ..Default::default()
    };
    bad.headers.insert("bad header".into(), "x".into());
    bad.headers.insert("grpc-timeout".into(), "1S".into());
    bad.headers.insert("content-type".into(), "x".into());
    bad.headers.insert("x-token".into(), "line\nbreak".into());
    bad.headers.insert("X-Scope-OrgID".into(), "fine".into());
    bad.headers.insert("x-scope-orgid".into(), "twice".into());
    bad.tls.cert_file = Some("/c.pem".into());
    let problems = problems_of(&bad);
    let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "endpoint",
            "headers::bad header",
            "headers::content-type",
            "headers::grpc-timeout",
            "headers::x-scope-orgid",
            "headers::x-token",
            "tls::key_file"
        ],
        "{problems:?}"
    );
    assert!(
        problems[0]
            .1
            .contains("plaintext http:// but tls::insecure is false")
    );

    let https_insecure = OtlpExporterConfig {
        endpoint: "https://gw:4317".into(),
        tls: TlsConfig {
            insecure: true,
            ca_file: Some("/ca.pem".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let problems = problems_of(&https_insecure);
    assert!(
        problems[0].1.contains("https:// but tls::insecure is true"),
        "{problems:?}"
    );
    assert_eq!(problems[1].0, "tls::ca_file");

    for endpoint in [
        "gw",
        "ftp://gw:21",
        "http://gw:4317/v1/traces",
        "gw:notaport",
    ] {
        let config = OtlpExporterConfig {
            endpoint: endpoint.into(),
            tls: TlsConfig {
                insecure: true,
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(
            !problems_of(&config).is_empty(),
            "{endpoint} should be refused"
        );
    }
}

#[test]
fn classifies_status_codes_as_the_spec_says() {
    let retryable = [
        Code::Cancelled,
        Code::DeadlineExceeded,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unavailable,
        Code::DataLoss,
    ];
    for code in retryable {
        let err = classify(&Status::new(code, "x"));
        assert!(
            matches!(
                err,
                ExportError::Retryable {
                    retry_after: None,
                    ..
                }
            ),
            "{code:?}"
        );
    }
    let permanent = [
        Code::Unknown,
        Code::InvalidArgument,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Unimplemented,
        Code::Internal,
        Code::Unauthenticated,
    ];
    for code in permanent {
        assert!(
            matches!(
                classify(&Status::new(code, "x")),
                ExportError::Permanent { .. }
            ),
            "{code:?}"
        );
    }
    let throttled = Status::with_error_details(
        Code::ResourceExhausted,
        "slow down",
        ErrorDetails::with_retry_info(Some(Duration::from_secs(3))),
    );
    let ExportError::Retryable {
        retry_after,
        message,
    } = classify(&throttled)
    else {
        panic!("RESOURCE_EXHAUSTED with RetryInfo should be retryable");
    };
    assert_eq!(retry_after, Some(Duration::from_secs(3)));
    assert!(message.contains("slow down"));
}

#[tokio::test]
async fn delivers_every_span_and_attribute_with_gzip_and_headers() {
    let peer = Peer::start(Answer::Accept, true).await;
    let mut config = config(peer.addr, Compression::Gzip);
    config
        .headers
        .insert("X-Scope-OrgID".into(), "team-a".into());
    config
        .headers
        .insert("authorization".into(), "Bearer s3cret".into());
    let mut exporter = exporter(config).await;
    let batch = rich_batch();
    exporter.export(&batch).await.unwrap();
    exporter.export(&batch).await.unwrap();
    exporter.shutdown().await;

    let seen = peer.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].request.resource_spans,
        batch.into_resource_spans(),
        "every field intact"
    );
    assert_eq!(seen[0].header("grpc-encoding"), Some("gzip"));
    assert_eq!(seen[0].header("x-scope-orgid"), Some("team-a"));
    assert_eq!(seen[0].header("authorization"), Some("Bearer s3cret"));
    let agent = seen[0].header("user-agent").unwrap_or_default();
    assert!(agent.starts_with("spanline/"), "{agent}");
}

#[tokio::test]
async fn sends_uncompressed_when_asked() {
    let peer = Peer::start(Answer::Accept, false).await;
    let mut exporter = exporter(config(peer.addr, Compression::None)).await;
    exporter.export(&rich_batch()).await.unwrap();
    let seen = peer.seen();
    assert_eq!(
        seen[0].request.resource_spans,
        rich_batch().into_resource_spans()
    );
    assert_eq!(seen[0].header("grpc-encoding"), None);

    // A peer that cannot inflate gzip rejects it; that will not get better by retrying.
    let mut gzip = exporter_for(peer.addr, Compression::Gzip).await;
    let err = gzip.export(&rich_batch()).await.unwrap_err();
    assert!(matches!(err, ExportError::Permanent { .. }), "{err:?}");
}

async fn exporter_for(addr: SocketAddr, compression: Compression) -> Box<dyn Exporter> {
    exporter(config(addr, compression)).await
}

#[tokio::test]
async fn starts_while_the_peer_is_down_and_connects_when_it_is_up() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut exporter = exporter_for(addr, Compression::Gzip).await;
    let err = exporter.export(&rich_batch()).await.unwrap_err();
    assert!(matches!(err, ExportError::Retryable { .. }), "{err:?}");

    let listener = TcpListener::bind(addr).await.unwrap();
    let peer = Peer::serve(listener, Answer::Accept, true);
    let mut delivered = false;
    for _ in 0..50 {
        if exporter.export(&rich_batch()).await.is_ok() {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        delivered,
        "the exporter should reconnect once the peer is up"
    );
    assert_eq!(peer.seen().len(), 1);
}

#[tokio::test]
async fn maps_peer_failures() {
    let cases = [
        (Answer::Fail(Code::Unavailable), "retryable"),
        (Answer::Fail(Code::InvalidArgument), "permanent"),
        (Answer::Fail(Code::ResourceExhausted), "permanent"),
        (
            Answer::FailWithRetryInfo(Code::ResourceExhausted, Duration::from_secs(4)),
            "retry 4s",
        ),
        (
            Answer::FailWithRetryInfo(Code::Unavailable, Duration::from_millis(1500)),
            "retry 1.5s",
        ),
    ];
    for (answer, expected) in cases {
        let peer = Peer::start(answer, true).await;
        let mut exporter = exporter_for(peer.addr, Compression::Gzip).await;
        let err = exporter.export(&rich_batch()).await.unwrap_err();
        let got = match &err {
            ExportError::Retryable {
                retry_after: None, ..
            } => "retryable".to_string(),
            ExportError::Retryable {
                retry_after: Some(d),
                ..
            } => format!("retry {d:?}"),
            ExportError::Permanent { .. } => "permanent".to_string(),
            ExportError::PartiallyRejected { .. } => "partial".to_string(),
        };
        assert_eq!(got, expected, "{err:?}");
        assert_eq!(peer.seen().len(), 1, "the request reached the peer");
    }
}

#[tokio::test]
async fn reports_partial_success() {
    let peer = Peer::start(Answer::Partial(3, "3 spans too old"), true).await;
    let mut exporter = exporter_for(peer.addr, Compression::Gzip).await;
    let err = exporter.export(&rich_batch()).await.unwrap_err();
    let ExportError::PartiallyRejected { rejected, message } = err else {
        panic!("expected a partial rejection, got {err:?}");
    };
    assert_eq!((rejected, message.as_str()), (3, "3 spans too old"));

    let warning = Peer::start(Answer::Partial(0, "deprecated field"), true).await;
    let mut exporter = exporter_for(warning.addr, Compression::Gzip).await;
    exporter
        .export(&rich_batch())
        .await
        .expect("a warning alone is a success");
}

#[test]
fn build_reads_the_tls_files() {
    let ctx = BuildContext {
        id: "otlp".into(),
        pipeline: None,
    };
    let missing = OtlpExporterConfig {
        endpoint: "gw:4317".into(),
        tls: TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = OtlpExporterFactory
        .build(missing, &ctx)
        .err()
        .expect("a missing CA file fails the build");
    assert!(
        err.to_string()
            .contains("tls::ca_file: cannot read /nonexistent/ca.pem"),
        "{err}"
    );
}

/// A CA, a server certificate for `localhost` and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    server_cert: String,
    server_key: String,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let leaf = |name: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = leaf("spanline", ExtendedKeyUsagePurpose::ClientAuth);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("client.pem"), client_cert).unwrap();
        std::fs::write(dir.path().join("client.key"), client_key).unwrap();
        Pki {
            dir,
            ca_pem: ca_cert.pem(),
            server_cert,
            server_key,
        }
    }

    fn path(&self, file: &str) -> Option<String> {
        Some(self.dir.path().join(file).display().to_string())
    }

    /// A server that requires a client certificate signed by the CA.
    fn server(&self) -> Server {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.server_cert, &self.server_key))
            .client_ca_root(Certificate::from_pem(&self.ca_pem));
        Server::builder().tls_config(tls).unwrap()
    }
}

#[tokio::test]
async fn speaks_mutual_tls() {
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = Peer::serve_with(listener, Answer::Accept, true, pki.server());
    let tls_config = |tls: TlsConfig| OtlpExporterConfig {
        endpoint: format!("localhost:{port}"),
        tls,
        ..Default::default()
    };

    let mutual = TlsConfig {
        ca_file: pki.path("ca.pem"),
        cert_file: pki.path("client.pem"),
        key_file: pki.path("client.key"),
        ..Default::default()
    };
    let mut mutual_tls = exporter(tls_config(mutual)).await;
    mutual_tls.export(&rich_batch()).await.unwrap();
    assert_eq!(
        peer.seen()[0].request.resource_spans,
        rich_batch().resource_spans()
    );

    let no_client_cert = TlsConfig {
        ca_file: pki.path("ca.pem"),
        ..Default::default()
    };
    let mut anonymous = exporter(tls_config(no_client_cert)).await;
    assert!(
        anonymous.export(&rich_batch()).await.is_err(),
        "the server requires a client certificate"
    );

    // The system roots do not know the test CA.
    let mut system_roots = exporter(tls_config(TlsConfig::default())).await;
    assert!(
        system_roots.export(&rich_batch()).await.is_err(),
        "an unknown CA is not trusted"
    );
    assert_eq!(peer.seen().len(), 1);
}
