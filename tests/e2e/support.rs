//! Helpers for end-to-end tests: spanline as a child process, a capturing OTLP server, ports.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// A `spanline run` child process.
pub struct Spanline {
    child: Child,
    pub admin: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Spanline {
    /// Starts spanline on `yaml` (whose metrics address must be `admin`) and waits for /readyz.
    pub fn start(yaml: &str, admin: &str) -> Spanline {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, yaml).expect("write config");
        Self::spawn(dir, &["--config".as_ref(), config.as_os_str()], admin)
    }

    /// Starts `spanline run` on its built-in default config.
    pub fn start_default(admin: &str) -> Spanline {
        Self::spawn(tempfile::tempdir().expect("temp dir"), &[], admin)
    }

    fn spawn(dir: tempfile::TempDir, args: &[&std::ffi::OsStr], admin: &str) -> Spanline {
        let log = dir.path().join("spanline.log");
        let child = Command::new(env!("CARGO_BIN_EXE_spanline"))
            .arg("run")
            .args(args)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn spanline");
        let mut spanline = Spanline {
            child,
            admin: admin.to_string(),
            log,
            _dir: dir,
        };
        spanline.wait_ready();
        spanline
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("spanline exited early with {status}:\n{}", self.logs());
            }
            if http_get(&self.admin, "/readyz").is_some_and(|(code, _)| code == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("spanline did not become ready:\n{}", self.logs());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The Prometheus text from /metrics.
    pub fn metrics(&self) -> String {
        http_get(&self.admin, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The sum of every sample of `name` whose labels contain all of `labels` (`key="value"`).
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        sum_metric(&self.metrics(), name, labels)
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Kills the process with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (up to `limit`) for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("spanline did not exit after SIGTERM:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spanline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sums samples of a metric in Prometheus text.
pub fn sum_metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    let mut total = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if !labels.iter().all(|l| rest.contains(l)) {
            continue;
        }
        if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            total += value;
        }
    }
    total
}

/// A minimal HTTP/1.0 GET: (status, body).
pub fn http_get(address: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// An OTLP gRPC server that records every request it is sent.
#[derive(Clone, Default)]
pub struct Capture {
    pub received: Arc<Mutex<Vec<ResourceSpans>>>,
}

#[tonic::async_trait]
impl TraceService for Capture {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.received
            .lock()
            .extend(request.into_inner().resource_spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Capture {
    /// Serves on 127.0.0.1:`port` until the token is cancelled.
    pub async fn serve(&self, port: u16) -> CancellationToken {
        let stop = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind capture port");
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let service = TraceServiceServer::new(self.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(64 << 20);
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, token.cancelled_owned())
                .await;
        });
        stop
    }

    pub fn span_count(&self) -> usize {
        self.received
            .lock()
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum()
    }

    /// Waits until at least `n` spans arrived (or `limit` passes); returns the count.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        while self.span_count() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.span_count()
    }
}

/// An OTLP request of `n` spans carrying `seq` attributes `first..first+n`, one trace per span.
///
/// Spans start now: a store's retention would rightly delete spans from long ago.
pub fn request(first: i64, n: i64) -> ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let spans = (first..first + n)
        .map(|seq| {
            let mut trace_id = vec![7u8; 16];
            trace_id[..8].copy_from_slice(&seq.to_be_bytes());
            Span {
                trace_id,
                span_id: vec![1; 8],
                name: "GET /items".into(),
                start_time_unix_nano: now,
                end_time_unix_nano: now + 100_000_000,
                attributes: vec![KeyValue {
                    key: "seq".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(seq)),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Every `seq` attribute the capture has seen, sorted.
pub fn captured_seqs(capture: &Capture) -> Vec<i64> {
    seqs_of(&capture.received.lock())
}

/// Every `seq` span attribute in `resource_spans`, sorted.
pub fn seqs_of(resource_spans: &[ResourceSpans]) -> Vec<i64> {
    use opentelemetry_proto::tonic::common::v1::any_value;
    let mut seqs = Vec::new();
    for rs in resource_spans {
        for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            for kv in &span.attributes {
                if let (true, Some(any_value::Value::IntValue(seq))) = (
                    kv.key == "seq",
                    kv.value.as_ref().and_then(|v| v.value.clone()),
                ) {
                    seqs.push(seq);
                }
            }
        }
    }
    seqs.sort_unstable();
    seqs
}

/// A gRPC OTLP client to 127.0.0.1:`port`.
pub async fn client(
    port: u16,
) -> opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient<
    tonic::transport::Channel,
> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to spanline");
    opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::new(
        channel,
    )
}

/// Held by tests that bind the default ports (4317, 4318, 8888), so they never overlap.
pub static FIXED_PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
