//! Where `spanline query` reads from: a store directly, or a running spanline's query API.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, TracesData};
use prost::Message;
use serde_json::Value;

use super::engine::{QueryEngine, QueryLimits};
use super::search::{GroupBy, GroupStats, SearchRequest, SortOrder};
use crate::exporters::trace_store::TraceStoreConfig;
use crate::store::convert::hex;
use crate::store::live::QuerySource;
use crate::store::location::Location;
use crate::store::reader::StoreReader;

/// How long the CLI waits for a running spanline to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One search result, whichever backend produced it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SearchRow {
    pub trace_id: String,
    pub start_unix_nano: u64,
    pub duration_nanos: u64,
    pub root_service: String,
    pub root_name: String,
    pub span_count: u64,
    pub error_count: u64,
    pub services: Vec<String>,
}

/// A store read in-process, or the HTTP API of a running spanline.
pub enum Backend {
    Local { engine: QueryEngine, tenant: String },
    Remote(Remote),
}

/// Opens a store url read-only for queries (no live buffers: another process writes it).
pub fn open_store(
    url: &str,
    options: &BTreeMap<String, String>,
    indexed_attributes: Option<Vec<String>>,
) -> Result<QuerySource, String> {
    let location = Location::parse(url).map_err(|e| format!("--store {url}: {e}"))?;
    if let Location::File(dir) = &location
        && !dir.is_dir()
    {
        return Err(format!(
            "--store {url}: directory {} does not exist",
            dir.display()
        ));
    }
    let (store, layout) = location
        .open(url, options)
        .map_err(|e| format!("--store {url}: {e}"))?;
    Ok(QuerySource {
        reader: StoreReader::new(store, layout),
        live: None,
        indexed_attributes: indexed_attributes
            .unwrap_or_else(|| TraceStoreConfig::default().indexed_attributes),
    })
}

impl Backend {
    pub fn local(source: QuerySource, tenant: &str) -> Self {
        Backend::Local {
            engine: QueryEngine::new(source, QueryLimits::default()),
            tenant: tenant.to_string(),
        }
    }

    pub async fn trace(&self, id: &[u8; 16]) -> Result<Option<Vec<ResourceSpans>>, String> {
        match self {
            Backend::Local { engine, tenant } => engine
                .trace(tenant, id, None)
                .await
                .map_err(|e| e.to_string()),
            Backend::Remote(remote) => remote.trace(id).await,
        }
    }

    pub async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchRow>, String> {
        match self {
            Backend::Local { engine, tenant } => {
                let found = engine
                    .search(tenant, request)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(found
                    .into_iter()
                    .map(|t| SearchRow {
                        trace_id: hex(&t.trace_id),
                        start_unix_nano: t.start_unix_nano,
                        duration_nanos: t.duration_nanos(),
                        root_service: t.root_service,
                        root_name: t.root_name,
                        span_count: u64::from(t.span_count),
                        error_count: u64::from(t.error_count),
                        services: t.services.into_iter().collect(),
                    })
                    .collect())
            }
            Backend::Remote(remote) => remote.search(request).await,
        }
    }

    pub async fn aggregate(
        &self,
        request: &SearchRequest,
        by: GroupBy,
    ) -> Result<Vec<GroupStats>, String> {
        match self {
            Backend::Local { engine, tenant } => engine
                .aggregate(tenant, request, by)
                .await
                .map_err(|e| e.to_string()),
            Backend::Remote(remote) => remote.aggregate(request, by).await,
        }
    }
}

/// A running spanline's query API over plain HTTP.
pub struct Remote {
    pub endpoint: String,
    pub tenant: Option<String>,
    pub api_key: Option<String>,
}

impl Remote {
    async fn get(&self, path_and_query: &str, accept: &str) -> Result<Option<Bytes>, String> {
        let url = format!("{}{path_and_query}", self.endpoint.trim_end_matches('/'));
        let mut request = http::Request::get(&url).header(http::header::ACCEPT, accept);
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        if let Some(key) = &self.api_key {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        let response = tokio::time::timeout(REQUEST_TIMEOUT, client.request(request))
            .await
            .map_err(|_| format!("{url}: no answer within {}s", REQUEST_TIMEOUT.as_secs()))?
            .map_err(|e| format!("{url}: {e} (is spanline running with its query API?)"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        if status == http::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(format!("{url}: {status}: {message}"));
        }
        Ok(Some(body))
    }

    async fn trace(&self, id: &[u8; 16]) -> Result<Option<Vec<ResourceSpans>>, String> {
        let Some(body) = self
            .get(&format!("/api/traces/{}", hex(id)), "application/protobuf")
            .await?
        else {
            return Ok(None);
        };
        let data = TracesData::decode(body).map_err(|e| format!("decoding the trace: {e}"))?;
        Ok(Some(data.resource_spans))
    }

    async fn json(&self, path_and_query: &str) -> Result<Value, String> {
        let body = self
            .get(path_and_query, "application/json")
            .await?
            .ok_or_else(|| format!("{path_and_query}: not found"))?;
        serde_json::from_slice(&body).map_err(|e| format!("{path_and_query}: {e}"))
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchRow>, String> {
        let answer = self
            .json(&format!("/api/search?{}", query_string(request)))
            .await?;
        let traces = answer["traces"].as_array().cloned().unwrap_or_default();
        Ok(traces.iter().map(search_row).collect())
    }

    async fn aggregate(
        &self,
        request: &SearchRequest,
        by: GroupBy,
    ) -> Result<Vec<GroupStats>, String> {
        let by = match by {
            GroupBy::Service => "service",
            GroupBy::RootService => "root_service",
            GroupBy::Operation => "operation",
        };
        let path = format!("/api/aggregate?by={by}&{}", query_string(request));
        let answer = self.json(&path).await?;
        let groups = answer["groups"].as_array().cloned().unwrap_or_default();
        Ok(groups
            .iter()
            .map(|g| GroupStats {
                service: g["service"].as_str().unwrap_or_default().to_string(),
                operation: g["operation"].as_str().map(str::to_string),
                traces: g["traces"].as_u64().unwrap_or_default(),
                error_traces: g["error_traces"].as_u64().unwrap_or_default(),
                p50_duration_nanos: g["p50_duration_nanos"].as_u64().unwrap_or_default(),
                p99_duration_nanos: g["p99_duration_nanos"].as_u64().unwrap_or_default(),
            })
            .collect())
    }
}

fn search_row(t: &Value) -> SearchRow {
    let text = |k: &str| t[k].as_str().unwrap_or_default().to_string();
    SearchRow {
        trace_id: text("traceID"),
        start_unix_nano: text("startTimeUnixNano").parse().unwrap_or_default(),
        duration_nanos: t["durationMs"].as_u64().unwrap_or_default() * 1_000_000,
        root_service: text("rootServiceName"),
        root_name: text("rootTraceName"),
        span_count: t["spanCount"].as_u64().unwrap_or_default(),
        error_count: t["errorCount"].as_u64().unwrap_or_default(),
        services: t["services"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The `/api/search` parameters of a request (tags in logfmt, times in unix seconds).
pub fn query_string(request: &SearchRequest) -> String {
    let mut tags = Vec::new();
    let mut push = |key: &str, value: &str| tags.push(format!("{key}={}", logfmt_value(value)));
    if let Some(s) = &request.service {
        push("service.name", s);
    }
    if let Some(s) = &request.root_service {
        push("rootServiceName", s);
    }
    if let Some(o) = &request.operation {
        push("name", o);
    }
    if let Some(s) = request.status {
        push("status", s.as_str());
    }
    for tag in &request.tags {
        push(&tag.key, &tag.value);
    }
    let mut params: Vec<(String, String)> = Vec::new();
    if !tags.is_empty() {
        params.push(("tags".into(), tags.join(" ")));
    }
    if let Some(w) = request.window {
        params.push((
            "start".into(),
            (w.start_unix_nano / 1_000_000_000).to_string(),
        ));
        params.push((
            "end".into(),
            w.end_unix_nano.div_ceil(1_000_000_000).to_string(),
        ));
    }
    if let Some(d) = request.min_duration {
        params.push(("minDuration".into(), format!("{}ns", d.as_nanos())));
    }
    if let Some(d) = request.max_duration {
        params.push(("maxDuration".into(), format!("{}ns", d.as_nanos())));
    }
    if let Some(l) = request.limit {
        params.push(("limit".into(), l.to_string()));
    }
    if request.sort == SortOrder::DurationDesc {
        params.push(("sort".into(), "duration".into()));
    }
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

fn logfmt_value(value: &str) -> String {
    if value.is_empty() || value.contains([' ', '"', '=', '\\']) {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        value.to_string()
    }
}
