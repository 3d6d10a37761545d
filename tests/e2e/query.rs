//! The query API end to end: an instrumented Python application's traces read back whole
//! through Tempo's and Jaeger's APIs, and the default config answering `curl` and the CLI.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{FIXED_PORTS, Spanline, free_port, http_get};

/// What the Python application reports about one span it sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
struct SentSpan {
    span_id: String,
    parent_span_id: String,
    service: String,
    name: String,
    kind: String,
    status: String,
}

#[derive(Debug, serde::Deserialize)]
struct Report {
    requests: Vec<SentTrace>,
}

#[derive(Debug, serde::Deserialize)]
struct SentTrace {
    trace_id: String,
    error: bool,
    spans: Vec<SentSpan>,
}

fn store_config(otlp_http: u16, admin: &str, query: &str, dir: &std::path::Path) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp_http}
processors:
  batch:
    timeout: 50ms
exporters:
  trace_store:
    url: file://{store}
    wal_dir: {store}-wal
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [trace_store]
  telemetry:
    metrics:
      address: {admin}
  query:
    address: {query}
",
        store = dir.join("store").display(),
    )
}

/// Runs the Python application against spanline and returns what it says it sent.
fn run_app(otlp_http: u16, requests: usize) -> Vec<SentTrace> {
    let app = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/pyapp/app.py");
    let output = Command::new("python3")
        .arg(app)
        .args(["--requests", &requests.to_string(), "--fail-every", "3"])
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("http://127.0.0.1:{otlp_http}/v1/traces"),
        )
        .output()
        .expect("python3 runs (bash .ci/run installs the OpenTelemetry SDK)");
    assert!(
        output.status.success(),
        "the Python application failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the application's report is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    report.requests
}

/// GETs `path` until `done` accepts the JSON answer or 15 seconds pass.
fn poll_json(address: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let last = http_get(address, path);
        if let Some((200, body)) = &last {
            let value: Value = serde_json::from_str(body).expect("JSON answer");
            if done(&value) {
                return value;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{path}: gave up; last answer {last:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// OTLP JSON ids are hex; compare them in lower case.
fn lower(text: &str) -> String {
    text.to_ascii_lowercase()
}

/// (span id → (parent, service, name, status)) from Tempo's OTLP JSON.
fn tempo_spans(body: &Value) -> BTreeMap<String, (String, String, String, String)> {
    let mut out = BTreeMap::new();
    for batch in body["batches"].as_array().into_iter().flatten() {
        let service = batch["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|kv| kv["key"] == "service.name")
            .and_then(|kv| kv["value"]["stringValue"].as_str())
            .unwrap_or_default()
            .to_string();
        for scope in batch["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let status = match span["status"]["code"].as_i64().unwrap_or(0) {
                    1 => "OK",
                    2 => "ERROR",
                    _ => "UNSET",
                };
                out.insert(
                    lower(span["spanId"].as_str().unwrap_or_default()),
                    (
                        lower(span["parentSpanId"].as_str().unwrap_or_default()),
                        service.clone(),
                        span["name"].as_str().unwrap_or_default().to_string(),
                        status.to_string(),
                    ),
                );
            }
        }
    }
    out
}

#[test]
fn an_instrumented_apps_traces_come_back_whole_in_tempo_and_jaeger_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let (otlp, admin, query) = (
        free_port(),
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let _spanline = Spanline::start(&store_config(otlp, &admin, &query, dir.path()), &admin);
    let sent = run_app(otlp, 3);
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().any(|t| t.error), "one request should fail");
    for trace in &sent {
        let path = format!("/api/traces/{}", trace.trace_id);
        let body = poll_json(&query, &path, |v| tempo_spans(v).len() >= trace.spans.len());
        let got = tempo_spans(&body);
        let want: BTreeMap<String, (String, String, String, String)> = trace
            .spans
            .iter()
            .map(|s| {
                (
                    s.span_id.clone(),
                    (
                        s.parent_span_id.clone(),
                        s.service.clone(),
                        s.name.clone(),
                        s.status.clone(),
                    ),
                )
            })
            .collect();
        assert_eq!(got, want, "trace {}", trace.trace_id);
        let services: std::collections::BTreeSet<&str> =
            trace.spans.iter().map(|s| s.service.as_str()).collect();
        let kinds: std::collections::BTreeSet<&str> =
            trace.spans.iter().map(|s| s.kind.as_str()).collect();
        if trace.error {
            // The failure stops the order before it is queued.
            assert!(
                got.values()
                    .any(|(_, service, _, status)| service == "payment" && status == "ERROR")
            );
        } else {
            assert_eq!(
                services.len(),
                4,
                "three HTTP services and the consumer: {services:?}"
            );
            assert!(
                kinds.contains("PRODUCER") && kinds.contains("CONSUMER"),
                "{kinds:?}"
            );
        }

        let (code, body) = http_get(&query, &format!("/jaeger/api/traces/{}", trace.trace_id))
            .expect("jaeger answer");
        assert_eq!(code, 200, "{body}");
        let jaeger: Value = serde_json::from_str(&body).unwrap();
        let jt = &jaeger["data"][0];
        assert_eq!(jt["traceID"], trace.trace_id.as_str());
        let processes = &jt["processes"];
        let mut seen = BTreeMap::new();
        for span in jt["spans"].as_array().unwrap() {
            let parent = span["references"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["refType"] == "CHILD_OF")
                .map(|r| r["spanID"].as_str().unwrap().to_string())
                .unwrap_or_default();
            let service = processes[span["processID"].as_str().unwrap()]["serviceName"]
                .as_str()
                .unwrap()
                .to_string();
            let failed = span["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["key"] == "error" && t["value"] == true);
            seen.insert(
                span["spanID"].as_str().unwrap().to_string(),
                (
                    parent,
                    service,
                    span["operationName"].as_str().unwrap().to_string(),
                    failed,
                ),
            );
        }
        let want_jaeger: BTreeMap<String, (String, String, String, bool)> = want
            .into_iter()
            .map(|(id, (parent, service, name, status))| {
                (id, (parent, service, name, status == "ERROR"))
            })
            .collect();
        assert_eq!(seen, want_jaeger, "jaeger trace {}", trace.trace_id);
    }
}

#[tokio::test]
async fn the_default_config_answers_curl_and_the_cli() {
    let _ports = FIXED_PORTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let spanline = Spanline::start_default("127.0.0.1:8888");
    let bin = env!("CARGO_BIN_EXE_spanline");
    let loadgen = Command::new(bin)
        .args([
            "loadgen",
            "--endpoint",
            "http://127.0.0.1:4317",
            "--duration",
            "2s",
        ])
        .args(["--rate", "2000", "--tenants", "0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        loadgen.status.success(),
        "{}",
        String::from_utf8_lossy(&loadgen.stderr)
    );

    let answer = poll_json(
        "127.0.0.1:3200",
        "/api/search?tags=service.name%3Dfrontend&limit=5",
        |v| v["traces"].as_array().is_some_and(|t| !t.is_empty()),
    );
    let id = answer["traces"][0]["traceID"].as_str().unwrap().to_string();
    assert_eq!(
        answer["traces"][0]["rootServiceName"], "frontend",
        "{answer}"
    );

    let trace = Command::new(bin)
        .args(["query", "trace", &id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&trace.stdout);
    assert!(
        trace.status.success(),
        "{}",
        String::from_utf8_lossy(&trace.stderr)
    );
    assert!(text.contains(&id) && text.contains("frontend"), "{text}");

    let search = Command::new(bin)
        .args(["query", "search", "--service", "frontend", "--since", "10m"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&search.stdout);
    assert!(
        search.status.success(),
        "{}",
        String::from_utf8_lossy(&search.stderr)
    );
    assert!(
        table.starts_with("TRACE ID") && table.contains("frontend"),
        "{table}"
    );
    drop(spanline);
}

/// Kills a child process when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn query_server_reads_a_store_another_process_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let (otlp, admin, query) = (
        free_port(),
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut writer = Spanline::start(&store_config(otlp, &admin, &query, dir.path()), &admin);
    let sent = run_app(otlp, 4);
    // SIGTERM commits every buffered block before exiting.
    assert!(writer.terminate(Duration::from_secs(30)).success());

    let (api, metrics) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let store = format!("file://{}", dir.path().join("store").display());
    let _server = Child(
        Command::new(env!("CARGO_BIN_EXE_spanline"))
            .args(["query-server", "--store", &store, "--address", &api])
            .args(["--metrics-address", &metrics])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(&metrics, "/readyz").is_none_or(|(code, _)| code != 200) {
        assert!(
            Instant::now() < deadline,
            "query-server did not become ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for trace in &sent {
        let path = format!("/api/traces/{}", trace.trace_id);
        let body = poll_json(&api, &path, |_| true);
        assert_eq!(
            tempo_spans(&body).len(),
            trace.spans.len(),
            "{}",
            trace.trace_id
        );
    }
    // user.id is not indexed: the span table of the last hour is scanned.
    let answer = poll_json(&api, "/api/search?tags=user.id%3Duser-1&limit=100", |_| {
        true
    });
    let mut found: Vec<&str> = answer["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap())
        .collect();
    found.sort_unstable();
    let mut want: Vec<&str> = sent
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, t)| t.trace_id.as_str())
        .collect();
    want.sort_unstable();
    assert_eq!(found, want, "user-1 made the odd-numbered requests");
    let (_, text) = http_get(&metrics, "/metrics").unwrap();
    assert!(text.contains("spanline_query_requests_total"), "{text}");
}
