//! The query API over a real socket: Tempo and Jaeger shapes, errors, tenants and keys.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{ApiState, QueryAuth, serve};
use crate::query::config::QueryConfig;
use crate::query::engine::{QueryEngine, QueryLimits};
use crate::query::tests::{BOUNDARY, GenTrace, SECOND, generate, store_of};
use crate::store::convert::hex;

struct Api {
    addr: SocketAddr,
    stop: CancellationToken,
    traces: Vec<GenTrace>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(config: QueryConfig) -> Api {
    let traces = generate(90, 21);
    let source = store_of(&traces).await;
    let state = ApiState {
        engine: QueryEngine::new(source, QueryLimits::from(&config)),
        auth: QueryAuth::new(&config).unwrap(),
        timeout: Duration::from_secs(10),
    };
    let stop = CancellationToken::new();
    let (addr, _task) = serve("127.0.0.1:0", state, stop.clone()).await.unwrap();
    Api { addr, stop, traces }
}

async fn get(api: &Api, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Bytes) {
    let mut request = http::Request::get(format!("http://{}{path}", api.addr));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(request.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

async fn get_json(api: &Api, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let (status, body) = get(api, path, headers).await;
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, value)
}

fn acme_trace(api: &Api) -> &GenTrace {
    api.traces.iter().find(|t| t.tenant == "acme").unwrap()
}

const ACME: [(&str, &str); 1] = [("X-Scope-OrgID", "acme")];

fn window() -> String {
    format!(
        "start={}&end={}",
        (BOUNDARY - 3600 * SECOND) / SECOND,
        (BOUNDARY + 3600 * SECOND) / SECOND
    )
}

#[tokio::test]
async fn tempo_trace_by_id_in_json_and_protobuf() {
    let api = start(QueryConfig::default()).await;
    let t = acme_trace(&api);
    let path = format!("/api/traces/{}", hex(&t.id));
    let (status, body) = get_json(&api, &path, &ACME).await;
    assert_eq!(status, StatusCode::OK);
    let spans: usize = body["batches"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["scopeSpans"].as_array().unwrap())
        .map(|ss| ss["spans"].as_array().unwrap().len())
        .sum();
    assert_eq!(spans, t.spans.len());

    let (status, bytes) = get(&api, &path, &[ACME[0], ("Accept", "application/protobuf")]).await;
    assert_eq!(status, StatusCode::OK);
    let data = TracesData::decode(bytes).unwrap();
    let count: usize = data
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum();
    assert_eq!(count, t.spans.len());

    let (status, body) = get_json(&api, &format!("/api/v2/traces/{}", hex(&t.id)), &ACME).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["trace"]["resourceSpans"].is_array(), "{body}");
}

#[tokio::test]
async fn unknown_traces_are_404_and_bad_parameters_400_naming_them() {
    let api = start(QueryConfig::default()).await;
    let (status, body) = get_json(&api, &format!("/api/traces/{}", "ab".repeat(16)), &ACME).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "trace not found");

    let (status, body) = get_json(&api, "/api/traces/not-hex", &ACME).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["parameter"], "traceID", "{body}");

    let (status, body) = get_json(&api, "/api/search?minDuration=fast", &ACME).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["parameter"], "minDuration", "{body}");

    let (status, body) = get_json(&api, "/api/search?q=%7B%20duration%20~%201s%20%7D", &ACME).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["parameter"], "q", "{body}");

    let (status, body) = get_json(&api, "/jaeger/api/traces?start=yesterday", &ACME).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["code"], 400, "{body}");
    assert!(
        body["errors"][0]["msg"].as_str().unwrap().contains("start"),
        "{body}"
    );
}

#[tokio::test]
async fn tempo_search_by_tags_and_traceql_agree_with_the_store() {
    let api = start(QueryConfig::default()).await;
    let want: std::collections::BTreeSet<String> = api
        .traces
        .iter()
        .filter(|t| t.tenant == "acme" && t.spans.iter().any(|s| s.service == "pay"))
        .filter(|t| t.status() == crate::query::search::TraceStatus::Error)
        .map(|t| hex(&t.id))
        .collect();
    let ids = |body: &Value| -> std::collections::BTreeSet<String> {
        body["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["traceID"].as_str().unwrap().to_string())
            .collect()
    };
    let path = format!(
        "/api/search?tags=service.name%3Dpay%20status%3Derror&limit=1000&{}",
        window()
    );
    let (status, body) = get_json(&api, &path, &ACME).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(&body), want);
    let first = &body["traces"][0];
    for field in [
        "rootServiceName",
        "rootTraceName",
        "startTimeUnixNano",
        "durationMs",
    ] {
        assert!(!first[field].is_null(), "{field} missing: {first}");
    }

    let q = "{ resource.service.name = \"pay\" && status = error }";
    let path = format!(
        "/api/search?q={}&limit=1000&{}",
        url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>(),
        window()
    );
    let (status, body) = get_json(&api, &path, &ACME).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(&body), want);
}

#[tokio::test]
async fn tags_values_and_the_small_endpoints() {
    let api = start(QueryConfig::default()).await;
    let (_, body) = get_json(&api, "/api/search/tags", &ACME).await;
    let names: Vec<&str> = body["tagNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"service.name") && names.contains(&"http.route"),
        "{body}"
    );

    let path = format!("/api/search/tag/http.route/values?{}", window());
    let (status, body) = get_json(&api, &path, &ACME).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["tagValues"],
        serde_json::json!(["/cart", "/checkout", "/home"])
    );

    let (status, body) = get(&api, "/api/echo", &[]).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"echo"[..]));
    let (status, _) = get(&api, "/ready", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = get_json(&api, "/api/status/buildinfo", &[]).await;
    assert_eq!(body["version"], crate::VERSION);
}

#[tokio::test]
async fn jaeger_services_operations_search_and_trace() {
    let api = start(QueryConfig::default()).await;
    // The Jaeger lists look back from now; the generated store is in the past, so read
    // them through search windows instead and check the list endpoints' shape.
    let (status, body) = get_json(&api, "/api/services", &ACME).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["data"].is_array() && body["errors"].is_null(),
        "{body}"
    );

    let t = acme_trace(&api);
    let (status, body) = get_json(&api, &format!("/jaeger/api/traces/{}", hex(&t.id)), &ACME).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let trace = &body["data"][0];
    assert_eq!(trace["traceID"], hex(&t.id));
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), t.spans.len());
    let children = spans
        .iter()
        .filter(|s| s["references"][0]["refType"] == "CHILD_OF")
        .count();
    assert_eq!(children, t.spans.len() - 1);
    assert!(trace["processes"].as_object().unwrap().len() >= 2);

    let start = (BOUNDARY - 3600 * SECOND) / 1000;
    let end = (BOUNDARY + 3600 * SECOND) / 1000;
    let path = format!("/api/traces?service=pay&start={start}&end={end}&limit=5");
    let (status, body) = get_json(&api, &path, &ACME).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let found = body["data"].as_array().unwrap();
    assert!(!found.is_empty() && found.len() <= 5);
    for trace in found {
        let has_pay = trace["processes"]
            .as_object()
            .unwrap()
            .values()
            .any(|p| p["serviceName"] == "pay");
        assert!(has_pay, "{trace}");
    }
}

#[tokio::test]
async fn tenants_are_isolated_and_keys_are_required_once_configured() {
    let api = start(QueryConfig::default()).await;
    let other = api.traces.iter().find(|t| t.tenant == "globex").unwrap();
    let path = format!("/api/traces/{}", hex(&other.id));
    let (status, _) = get_json(&api, &path, &ACME).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "acme must not read globex's trace"
    );
    let (status, _) = get_json(&api, &path, &[("X-Scope-OrgID", "globex")]).await;
    assert_eq!(status, StatusCode::OK);

    let mut config = QueryConfig::default();
    config.auth.api_keys = [("k-acme".to_string(), "acme".to_string())].into();
    let api = start(config).await;
    let path = format!("/api/traces/{}", hex(&other.id));
    let (status, body) = get_json(&api, &path, &[("X-Scope-OrgID", "globex")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let keyed = [
        ("authorization", "Bearer k-acme"),
        ("X-Scope-OrgID", "globex"),
    ];
    let (status, _) = get_json(&api, &path, &keyed).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the key's tenant wins over the header"
    );
    let own = format!("/api/traces/{}", hex(&acme_trace(&api).id));
    let (status, _) = get_json(&api, &own, &keyed).await;
    assert_eq!(status, StatusCode::OK);
}
