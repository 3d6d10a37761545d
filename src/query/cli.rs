//! `spanline query …` and `spanline query-server`: the command-line side of the query API.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use super::client::{Backend, Remote, SearchRow, open_store};
use super::config::{QueryAuthConfig, QueryConfig};
use super::engine::{QueryEngine, QueryLimits, now_unix_nano};
use super::http::{ApiState, QueryAuth};
use super::search::{GroupBy, GroupStats, SearchRequest, SortOrder, TagFilter, TraceStatus};
use super::table::render_table;
use super::waterfall::{WaterfallOptions, render_waterfall};
use crate::component::tenant::DEFAULT_TENANT;
use crate::config::units::HumanDuration;
use crate::store::TimeWindow;

/// `spanline query`.
#[derive(Args)]
pub struct QueryArgs {
    #[command(subcommand)]
    command: QueryCommand,
}

#[derive(Subcommand)]
enum QueryCommand {
    /// Print one trace as a waterfall (or OTLP JSON with --json).
    Trace {
        /// The trace id in hex.
        id: String,
        #[command(flatten)]
        target: Target,
        /// Print OTLP JSON (Tempo's {"batches": [...]}) instead of the waterfall.
        #[arg(long)]
        json: bool,
        /// Terminal width (default: the terminal's, else 120).
        #[arg(long)]
        width: Option<usize>,
    },
    /// Find traces, newest (or slowest, with --sort duration) first.
    Search {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        filters: Filters,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Traces, error traces and p50/p99 duration per service or operation.
    Aggregate {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        filters: Filters,
        /// How to group traces.
        #[arg(long, value_enum, default_value = "service")]
        by: GroupArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum GroupArg {
    Service,
    RootService,
    Operation,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum SortArg {
    Start,
    Duration,
}

/// Which store to read, and as whom.
#[derive(Args)]
struct Target {
    /// Read this store directly (file://dir, s3://bucket/prefix) instead of a running spanline.
    #[arg(long, conflicts_with = "endpoint")]
    store: Option<String>,
    /// The query API of a running spanline.
    #[arg(long, default_value = "http://127.0.0.1:3200")]
    endpoint: String,
    /// The tenant to read (X-Scope-OrgID); with --store, the default tenant when absent.
    #[arg(long)]
    tenant: Option<String>,
    /// An API key of the query API (or SPANLINE_API_KEY).
    #[arg(long, env = "SPANLINE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Options of the store client, as in the trace_store exporter (key=value, repeatable).
    #[arg(long = "store-option", value_parser = key_value)]
    store_options: Vec<(String, String)>,
}

/// Search filters shared by `search` and `aggregate`.
#[derive(Args)]
struct Filters {
    /// Some span of the trace is of this service.
    #[arg(long)]
    service: Option<String>,
    /// The root span is of this service.
    #[arg(long)]
    root_service: Option<String>,
    /// Some span has this name (of --service, when given).
    #[arg(long)]
    operation: Option<String>,
    /// error, ok or unset.
    #[arg(long, value_parser = status)]
    status: Option<TraceStatus>,
    /// Only traces at least this long (e.g. 1s, 250ms).
    #[arg(long, value_parser = duration)]
    min_duration: Option<Duration>,
    /// Only traces at most this long.
    #[arg(long, value_parser = duration)]
    max_duration: Option<Duration>,
    /// How far back to look.
    #[arg(long, value_parser = duration, default_value = "1h")]
    since: Duration,
    /// An attribute filter key=value (repeatable); non-indexed keys scan the span table.
    #[arg(long, value_parser = key_value)]
    tag: Vec<(String, String)>,
    /// At most this many traces.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Newest first or slowest first.
    #[arg(long, value_enum, default_value = "start")]
    sort: SortArg,
}

/// `spanline query-server`: the query API over any store, read-only.
#[derive(Args)]
pub struct QueryServerArgs {
    /// The store to serve (file://dir, s3://bucket/prefix).
    #[arg(long)]
    store: String,
    /// host:port to listen on.
    #[arg(long, default_value = "127.0.0.1:3200")]
    address: String,
    /// Options of the store client (key=value, repeatable).
    #[arg(long = "store-option", value_parser = key_value)]
    store_options: Vec<(String, String)>,
    /// The attributes the store's writer indexes (comma-separated; the trace_store default otherwise).
    #[arg(long, value_delimiter = ',')]
    indexed_attributes: Option<Vec<String>>,
    /// A YAML file of `key: tenant` API keys; queries then need a key.
    #[arg(long)]
    api_keys_file: Option<String>,
    /// The tenant read when a query names none.
    #[arg(long, default_value = DEFAULT_TENANT)]
    default_tenant: String,
    /// host:port of /metrics, /healthz and /readyz; empty disables them.
    #[arg(long, default_value = "127.0.0.1:8889")]
    metrics_address: String,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected key=value, got {text:?}"))
}

fn duration(text: &str) -> Result<Duration, String> {
    HumanDuration::parse(text).map(HumanDuration::get)
}

fn status(text: &str) -> Result<TraceStatus, String> {
    TraceStatus::parse(text).ok_or_else(|| format!("{text:?}: use error, ok or unset"))
}

impl Target {
    fn backend(&self) -> Result<Backend, String> {
        match &self.store {
            Some(url) => {
                let options: BTreeMap<String, String> =
                    self.store_options.iter().cloned().collect();
                let source = open_store(url, &options, None)?;
                Ok(Backend::local(
                    source,
                    self.tenant.as_deref().unwrap_or(DEFAULT_TENANT),
                ))
            }
            None => Ok(Backend::Remote(Remote {
                endpoint: self.endpoint.clone(),
                tenant: self.tenant.clone(),
                api_key: self.api_key.clone(),
            })),
        }
    }
}

impl Filters {
    fn request(&self) -> SearchRequest {
        let end = now_unix_nano();
        SearchRequest {
            window: Some(TimeWindow {
                start_unix_nano: end.saturating_sub(self.since.as_nanos() as u64),
                end_unix_nano: end,
            }),
            service: self.service.clone(),
            root_service: self.root_service.clone(),
            operation: self.operation.clone(),
            status: self.status,
            min_duration: self.min_duration,
            max_duration: self.max_duration,
            tags: self
                .tag
                .iter()
                .map(|(key, value)| TagFilter {
                    key: key.clone(),
                    value: value.clone(),
                    negated: false,
                })
                .collect(),
            limit: Some(self.limit),
            sort: match self.sort {
                SortArg::Start => SortOrder::StartDesc,
                SortArg::Duration => SortOrder::DurationDesc,
            },
            ..Default::default()
        }
    }
}

/// Runs `spanline query …`; the error is printed by the caller.
pub async fn query(args: QueryArgs) -> Result<(), String> {
    match args.command {
        QueryCommand::Trace {
            id,
            target,
            json,
            width,
        } => trace(&id, &target, json, width).await,
        QueryCommand::Search {
            target,
            filters,
            json,
        } => search(&target, &filters, json).await,
        QueryCommand::Aggregate {
            target,
            filters,
            by,
            json,
        } => aggregate(&target, &filters, by, json).await,
    }
}

async fn trace(id: &str, target: &Target, json: bool, width: Option<usize>) -> Result<(), String> {
    let trace_id = super::params::trace_id("ID", id).map_err(|e| e.to_string())?;
    let spans = target
        .backend()?
        .trace(&trace_id)
        .await?
        .ok_or_else(|| format!("trace {id} not found"))?;
    if json {
        let body = super::otlp_json::tempo_trace_json(&spans);
        println!(
            "{}",
            serde_json::to_string_pretty(&body).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    let stdout = std::io::stdout();
    let options = WaterfallOptions {
        width: width.unwrap_or_else(terminal_width),
        color: stdout.is_terminal(),
        ..Default::default()
    };
    print!("{}", render_waterfall(&spans, &options));
    Ok(())
}

/// The terminal's width as the shell exports it, else 120 columns.
fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|c| *c >= 40)
        .unwrap_or(120)
}

async fn search(target: &Target, filters: &Filters, json: bool) -> Result<(), String> {
    let rows = target.backend()?.search(&filters.request()).await?;
    if json {
        for row in &rows {
            println!("{}", serde_json::to_string(row).map_err(|e| e.to_string())?);
        }
        return Ok(());
    }
    print!("{}", search_table(&rows));
    Ok(())
}

/// The table `spanline query search` prints.
pub fn search_table(rows: &[SearchRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.trace_id.clone(),
                format_start(r.start_unix_nano),
                r.root_service.clone(),
                r.root_name.clone(),
                format_duration(r.duration_nanos),
                r.span_count.to_string(),
                r.error_count.to_string(),
                r.services.join(","),
            ]
        })
        .collect();
    let headers = [
        "TRACE ID",
        "START (UTC)",
        "ROOT SERVICE",
        "ROOT OPERATION",
        "DURATION",
        "SPANS",
        "ERRORS",
        "SERVICES",
    ];
    render_table(&headers, &cells)
}

async fn aggregate(
    target: &Target,
    filters: &Filters,
    by: GroupArg,
    json: bool,
) -> Result<(), String> {
    let by = match by {
        GroupArg::Service => GroupBy::Service,
        GroupArg::RootService => GroupBy::RootService,
        GroupArg::Operation => GroupBy::Operation,
    };
    let groups = target.backend()?.aggregate(&filters.request(), by).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&groups).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    print!("{}", aggregate_table(&groups));
    Ok(())
}

fn aggregate_table(groups: &[GroupStats]) -> String {
    let cells: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.service.clone(),
                g.operation.clone().unwrap_or_default(),
                g.traces.to_string(),
                g.error_traces.to_string(),
                format_duration(g.p50_duration_nanos),
                format_duration(g.p99_duration_nanos),
            ]
        })
        .collect();
    render_table(
        &[
            "SERVICE",
            "OPERATION",
            "TRACES",
            "ERROR TRACES",
            "P50",
            "P99",
        ],
        &cells,
    )
}

fn format_start(unix_nano: u64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_nanos(unix_nano);
    humantime::format_rfc3339_millis(time).to_string()
}

/// A duration with three significant digits, as the waterfall prints them.
pub fn format_duration(nanos: u64) -> String {
    super::waterfall::format_duration(nanos)
}

/// Runs `spanline query-server` until SIGTERM/SIGINT.
pub async fn query_server(args: QueryServerArgs) -> Result<(), String> {
    let options: BTreeMap<String, String> = args.store_options.into_iter().collect();
    let source = open_store(&args.store, &options, args.indexed_attributes)?;
    let config = QueryConfig {
        address: args.address.clone(),
        default_tenant: args.default_tenant,
        auth: QueryAuthConfig {
            api_keys: BTreeMap::new(),
            api_keys_file: args.api_keys_file,
        },
        ..Default::default()
    };
    let mut problems = crate::component::Problems::new();
    config.validate(&mut problems);
    if let Some(problem) = problems.into_vec().into_iter().next() {
        return Err(format!("{}: {}", problem.path, problem.message));
    }
    let state = ApiState {
        engine: QueryEngine::new(source, QueryLimits::from(&config)),
        auth: QueryAuth::new(&config)?,
        timeout: config.timeout.get(),
    };
    crate::telemetry::server::install_recorder();
    let stop = tokio_util::sync::CancellationToken::new();
    let readiness = std::sync::Arc::new(crate::runtime::Readiness::default());
    let admin = if args.metrics_address.is_empty() {
        None
    } else {
        let (bound, task) =
            crate::telemetry::server::serve(&args.metrics_address, readiness.clone(), stop.clone())
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", args.metrics_address))?;
        tracing::info!(address = %bound, "admin server listening (/metrics, /healthz, /readyz)");
        Some(task)
    };
    let (bound, task) = super::http::serve(&args.address, state, stop.clone())
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.address))?;
    readiness.set(true);
    tracing::info!(address = %bound, store = %args.store, "query API listening (read-only)");
    crate::host::shutdown_signal().await;
    readiness.set(false);
    stop.cancel();
    let _ = task.await;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    Ok(())
}
