//! `service.query`: where the query API listens, whose store it reads and who may read it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::component::Problems;
use crate::component::tenant::{DEFAULT_TENANT, validate_tenant_id};
use crate::config::units::HumanDuration;

/// `service.query`. Served by `spanline run` whenever a `trace_store` exporter is configured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Whether `spanline run` serves the query API at all.
    pub enabled: bool,
    /// host:port of the query API (Tempo's port by default).
    pub address: String,
    /// The `trace_store` exporter whose store is queried; needed only when there are several.
    pub exporter: Option<String>,
    /// API keys; when any is configured, every query must present one (401 otherwise).
    pub auth: QueryAuthConfig,
    /// The header that names the tenant when no API key does.
    pub tenant_header: String,
    /// The tenant read when neither a key nor the header names one.
    pub default_tenant: String,
    /// Search window when a query gives no start and end.
    pub default_search_window: HumanDuration,
    /// The widest window a search may cover.
    pub max_search_window: HumanDuration,
    /// The widest window a scan of the span table (a filter on a non-indexed attribute) may cover.
    pub max_scan_window: HumanDuration,
    /// Results per search when the query names no limit.
    pub default_limit: usize,
    /// The most results one search returns.
    pub max_limit: usize,
    /// Values returned by a tag-values lookup at most.
    pub max_tag_values: usize,
    /// How long one query may run before it is answered 504.
    pub timeout: HumanDuration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: "127.0.0.1:3200".to_string(),
            exporter: None,
            auth: QueryAuthConfig::default(),
            tenant_header: "X-Scope-OrgID".to_string(),
            default_tenant: DEFAULT_TENANT.to_string(),
            default_search_window: HumanDuration::from_secs(3600),
            max_search_window: HumanDuration::from_secs(7 * 24 * 3600),
            max_scan_window: HumanDuration::from_secs(3600),
            default_limit: 20,
            max_limit: 1000,
            max_tag_values: 1000,
            timeout: HumanDuration::from_secs(30),
        }
    }
}

/// API keys of the query API (`authorization: Bearer <key>`), each naming the tenant it reads.
/// Its `Debug` output shows how many keys there are, never the keys.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryAuthConfig {
    /// Key -> tenant id. Keys may come from the environment (`"${env:KEY}": acme`).
    pub api_keys: BTreeMap<String, String>,
    /// A YAML file holding more `key: tenant` pairs, read at start.
    pub api_keys_file: Option<String>,
}

impl QueryAuthConfig {
    /// Whether queries must carry a key.
    pub fn required(&self) -> bool {
        !self.api_keys.is_empty() || self.api_keys_file.is_some()
    }
}

impl std::fmt::Debug for QueryAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryAuthConfig")
            .field("api_keys", &format_args!("<{} keys>", self.api_keys.len()))
            .field("api_keys_file", &self.api_keys_file)
            .finish()
    }
}

impl QueryConfig {
    /// Records every problem of the section with a path relative to `query`.
    pub fn validate(&self, problems: &mut Problems) {
        if !self.enabled {
            return;
        }
        problems.check_socket_addr("query::address", &self.address);
        if http::HeaderName::from_bytes(self.tenant_header.as_bytes()).is_err() {
            problems.error(
                "query::tenant_header",
                format!("{:?} is not a valid header name", self.tenant_header),
            );
        }
        if let Err(message) = validate_tenant_id(&self.default_tenant) {
            problems.error("query::default_tenant", message);
        }
        for (key, tenant) in &self.auth.api_keys {
            if key.is_empty() {
                problems.error("query::auth::api_keys", "an API key is empty");
            }
            if let Err(message) = validate_tenant_id(tenant) {
                problems.error("query::auth::api_keys", message);
            }
        }
        for (path, value) in [
            ("query::default_search_window", self.default_search_window),
            ("query::max_search_window", self.max_search_window),
            ("query::max_scan_window", self.max_scan_window),
            ("query::timeout", self.timeout),
        ] {
            if value.is_zero() {
                problems.error(path, "must be greater than 0");
            }
        }
        if self.default_search_window.get() > self.max_search_window.get() {
            problems.error(
                "query::default_search_window",
                format!(
                    "must not exceed max_search_window ({}), got {}",
                    self.max_search_window, self.default_search_window
                ),
            );
        }
        if self.default_limit == 0 || self.max_limit == 0 || self.max_tag_values == 0 {
            problems.error(
                "query",
                "default_limit, max_limit and max_tag_values must be greater than 0",
            );
        }
        if self.default_limit > self.max_limit {
            problems.error(
                "query::default_limit",
                format!(
                    "must not exceed max_limit ({}), got {}",
                    self.max_limit, self.default_limit
                ),
            );
        }
    }
}

/// The component type whose store the query API reads.
pub const STORE_EXPORTER_TYPE: &str = "trace_store";

impl QueryConfig {
    /// Which of the running exporters the query API reads: the one named by `exporter`, else
    /// the only `trace_store` exporter; `Ok(None)` when there is none or the API is disabled.
    pub fn store_exporter<'a>(
        &self,
        running: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<String>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let mut stores: Vec<&str> = running
            .into_iter()
            .filter(|id| id.split('/').next() == Some(STORE_EXPORTER_TYPE))
            .collect();
        // An exporter shared by several pipelines is one store.
        stores.sort_unstable();
        stores.dedup();
        match &self.exporter {
            Some(wanted) if stores.contains(&wanted.as_str()) => Ok(Some(wanted.clone())),
            Some(wanted) => Err(format!(
                "{wanted:?} is not a trace_store exporter of any pipeline; running trace_store exporters: {}",
                list(&stores)
            )),
            None => match stores.as_slice() {
                [] => Ok(None),
                [only] => Ok(Some(only.to_string())),
                several => Err(format!(
                    "several trace_store exporters run ({}); name the one to query in service.query.exporter",
                    list(several)
                )),
            },
        }
    }
}

fn list(ids: &[&str]) -> String {
    if ids.is_empty() {
        "none".to_string()
    } else {
        ids.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;
    use crate::registry::Registry;

    fn config(query: &str) -> String {
        format!(
            "receivers:
  otlp:
    protocols:
      grpc:
exporters:
  trace_store/hot:
    url: memory://
  trace_store/cold:
    url: memory://
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [trace_store/hot, trace_store/cold, debug]
    traces/again:
      receivers: [otlp]
      exporters: [trace_store/hot]
{query}"
        )
    }

    fn problems(text: &str) -> String {
        match load_str(text, "test.yaml", &Registry::builtin()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn several_stores_need_the_one_to_query_named() {
        let text = problems(&config(""));
        assert!(
            text.contains("service::query::exporter (line 11): several trace_store exporters run (trace_store/cold, trace_store/hot); name the one to query in service.query.exporter"),
            "{text}"
        );
        let named = "  query:\n    exporter: trace_store/hot\n";
        assert_eq!(problems(&config(named)), "");
        let wrong = "  query:\n    exporter: debug\n";
        assert!(
            problems(&config(wrong)).contains("service::query::exporter (line 20): \"debug\" is not a trace_store exporter of any pipeline; running trace_store exporters: trace_store/cold, trace_store/hot"),
            "{}",
            problems(&config(wrong))
        );
        let off = "  query:\n    enabled: false\n";
        assert_eq!(problems(&config(off)), "");
    }

    #[test]
    fn query_settings_are_checked() {
        let bad = "  query:\n    exporter: trace_store/hot\n    address: nowhere\n    default_limit: 5000\n    max_scan_window: 0s\n";
        let text = problems(&config(bad));
        for expected in [
            "service::query::address (line 21): must be host:port",
            "service::query::default_limit (line 22): must not exceed max_limit (1000), got 5000",
            "service::query::max_scan_window (line 23): must be greater than 0",
        ] {
            assert!(text.contains(expected), "{expected}\nnot in\n{text}");
        }
    }
}
