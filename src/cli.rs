//! The `spanline` command line: run, validate, components (and loadgen).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::component::Kind;
use crate::config::service::LogEncoding;
use crate::config::{self, Config, ConfigError, DEFAULT_CONFIG};
use crate::registry::Registry;

#[derive(Parser)]
#[command(name = "spanline", version = crate::VERSION, about = "An OpenTelemetry trace pipeline: receive, sample, redact, store and query traces")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipelines of a config (the built-in default without --config).
    Run {
        /// The YAML config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Overrides service.telemetry.logs.level (e.g. debug, or spanline=debug,tonic=warn).
        #[arg(long)]
        log_level: Option<String>,
        /// Overrides service.telemetry.logs.encoding.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Check config files without starting anything; exit 1 listing every problem.
    Validate {
        /// Config files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Send realistic synthetic traces and report spans/s sent and acknowledged.
    Loadgen(crate::loadgen::LoadgenArgs),
    /// Read traces: one as a waterfall, a search as a table, or per-service aggregates.
    Query(crate::query::cli::QueryArgs),
    /// Serve the query API (Tempo and Jaeger) read-only over a store another process writes.
    QueryServer(crate::query::cli::QueryServerArgs),
    /// List every component type with its kind and an example config.
    Components {
        /// Only this kind.
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Receiver,
    Processor,
    Exporter,
}

/// Parses the command line and runs it with the given components; a custom distribution
/// calls this with its own registry.
pub fn main_with(registry: Registry) -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            log_level,
            log_format,
        } => run(&registry, config, log_level, log_format),
        Command::Validate { files } => validate(&registry, &files),
        Command::Components { kind } => components(&registry, kind),
        Command::Loadgen(args) => loadgen(args),
        Command::Query(args) => {
            init_logging("warn", false);
            block_on_cli(crate::query::cli::query(args))
        }
        Command::QueryServer(args) => {
            init_logging("info", false);
            block_on_cli(crate::query::cli::query_server(args))
        }
    }
}

fn load(registry: &Registry, path: Option<&PathBuf>) -> Result<Config, ConfigError> {
    match path {
        Some(path) => config::load_file(path, registry),
        None => config::load_str(DEFAULT_CONFIG, "built-in default config", registry),
    }
}

fn run(
    registry: &Registry,
    path: Option<PathBuf>,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
) -> ExitCode {
    let config = match load(registry, path.as_ref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let logs = &config.service.telemetry.logs;
    let json = match log_format {
        Some(format) => matches!(format, LogFormat::Json),
        None => logs.encoding == LogEncoding::Json,
    };
    init_logging(log_level.as_deref().unwrap_or(&logs.level), json);
    for warning in &config.warnings {
        tracing::warn!("config: {warning}");
    }
    let Some(runtime) = async_runtime() else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(crate::host::run_until(
        &config,
        crate::host::shutdown_signal(),
    ));
    match result {
        Ok(report) if report.timed_out => {
            tracing::warn!(
                abandoned_spans = report.abandoned_spans,
                "shutdown deadline passed before everything was delivered"
            );
            ExitCode::SUCCESS
        }
        Ok(_) => {
            tracing::info!("stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a CLI command that reports its failure as one message on stderr.
fn block_on_cli(command: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let Some(runtime) = async_runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("spanline: {message}");
            ExitCode::FAILURE
        }
    }
}

fn loadgen(args: crate::loadgen::LoadgenArgs) -> ExitCode {
    let Some(runtime) = async_runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(crate::loadgen::run(args)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("loadgen: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn async_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            None
        }
    }
}

fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if let Err(err) = result {
        eprintln!("logging was already set up: {err}");
    }
}

fn validate(registry: &Registry, files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        match config::load_file(file, registry) {
            Ok(config) => {
                println!("{}: ok", file.display());
                for warning in &config.warnings {
                    println!("  warning: {warning}");
                }
            }
            Err(err) => {
                failed = true;
                println!("{err}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn components(registry: &Registry, kind: Option<KindArg>) -> ExitCode {
    let wanted = kind.map(|k| match k {
        KindArg::Receiver => Kind::Receiver,
        KindArg::Processor => Kind::Processor,
        KindArg::Exporter => Kind::Exporter,
    });
    for factory in registry.all() {
        if wanted.is_some_and(|k| k != factory.kind()) {
            continue;
        }
        println!("{} {}", factory.kind().as_str(), factory.type_name());
        println!("  # under {}:", factory.kind().section());
        for line in factory.example_yaml().lines() {
            println!("  {line}");
        }
        println!();
    }
    ExitCode::SUCCESS
}
