//! From YAML text to a resolved, validated `Config`: every problem reported at once, each
//! with its path and line.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::exporter_settings::{ExporterSettings, RUNNER_KEYS};
use super::service::ServiceConfig;
use super::source::{LineMap, substitute_env};
use crate::component::{Kind, Problem, Problems, Severity};
use crate::factory::{FactoryRef, ParsedConfig, describe_serde_error};
use crate::registry::Registry;

/// A problem located in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedProblem {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
    pub severity: Severity,
}

impl fmt::Display for LocatedProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.path.is_empty(), self.line) {
            (false, Some(line)) => write!(f, "{} (line {line}): {}", self.path, self.message),
            (false, None) => write!(f, "{}: {}", self.path, self.message),
            (true, Some(line)) => write!(f, "line {line}: {}", self.message),
            (true, None) => write!(f, "{}", self.message),
        }
    }
}

/// Every error (and warning) found in a config that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub source_name: String,
    pub problems: Vec<LocatedProblem>,
}

impl ConfigError {
    pub fn errors(&self) -> impl Iterator<Item = &LocatedProblem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors().count();
        write!(
            f,
            "{}: {count} error{}",
            self.source_name,
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            let label = if problem.severity == Severity::Error {
                "error"
            } else {
                "warning"
            };
            write!(f, "\n  {label}: {problem}")?;
        }
        Ok(())
    }
}

/// One configured component, resolved to its factory.
#[derive(Clone)]
pub struct ComponentSpec {
    /// `type[/name]` as written.
    pub id: String,
    pub factory: FactoryRef,
    /// The component's YAML (for exporters, without the host's runner keys).
    pub value: Value,
    /// The host's runner settings (exporters only).
    pub settings: ExporterSettings,
}

impl ComponentSpec {
    /// Parses the (already validated) config again; processors are built once per pipeline.
    pub fn parse(&self) -> Option<ParsedConfig> {
        self.factory.parse(&self.value).0
    }
}

/// A pipeline with its component ids, in order.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    pub id: String,
    pub receivers: Vec<String>,
    pub processors: Vec<String>,
    pub exporters: Vec<String>,
}

/// A config that passed validation; `warnings` still deserve a look.
#[derive(Clone)]
pub struct Config {
    pub receivers: Vec<ComponentSpec>,
    pub processors: Vec<ComponentSpec>,
    pub exporters: Vec<ComponentSpec>,
    pub pipelines: Vec<PipelineSpec>,
    pub service: ServiceConfig,
    pub warnings: Vec<LocatedProblem>,
}

impl Config {
    pub fn component(&self, kind: Kind, id: &str) -> Option<&ComponentSpec> {
        let list = match kind {
            Kind::Receiver => &self.receivers,
            Kind::Processor => &self.processors,
            Kind::Exporter => &self.exporters,
        };
        list.iter().find(|c| c.id == id)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    receivers: Mapping,
    #[serde(default)]
    processors: Mapping,
    #[serde(default)]
    exporters: Mapping,
    #[serde(default)]
    extensions: Mapping,
    #[serde(default)]
    service: ServiceConfig,
}

/// Collects problems with absolute paths and looks up their lines.
struct Report<'a> {
    lines: &'a LineMap,
    problems: Vec<LocatedProblem>,
}

impl Report<'_> {
    fn add(&mut self, prefix: &str, problem: Problem) {
        let path = match (prefix.is_empty(), problem.path.is_empty()) {
            (true, _) => problem.path,
            (false, true) => prefix.to_string(),
            (false, false) if problem.path.starts_with('[') => format!("{prefix}{}", problem.path),
            (false, false) => format!("{prefix}::{}", problem.path),
        };
        let line = self.lines.line_of(&path);
        self.problems.push(LocatedProblem {
            path,
            line,
            message: problem.message,
            severity: problem.severity,
        });
    }

    fn error(&mut self, path: &str, message: String) {
        self.add(
            path,
            Problem {
                path: String::new(),
                message,
                severity: Severity::Error,
            },
        );
    }

    fn warning(&mut self, path: &str, message: String) {
        self.add(
            path,
            Problem {
                path: String::new(),
                message,
                severity: Severity::Warning,
            },
        );
    }
}

/// Loads a config from text, substituting `${env:...}` from the process environment.
pub fn load_str(text: &str, source_name: &str, registry: &Registry) -> Result<Config, ConfigError> {
    load_str_with_env(text, source_name, registry, &|name| {
        std::env::var(name).ok()
    })
}

/// Loads a config from text with an explicit environment (for tests).
pub fn load_str_with_env(
    text: &str,
    source_name: &str,
    registry: &Registry,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let fail = |problems| ConfigError {
        source_name: source_name.to_string(),
        problems,
    };
    let text = substitute_env(text, env).map_err(|errors| {
        fail(
            errors
                .into_iter()
                .map(|(line, message)| LocatedProblem {
                    path: String::new(),
                    line: Some(line),
                    message,
                    severity: Severity::Error,
                })
                .collect(),
        )
    })?;
    let raw = parse_raw(&text).map_err(|p| fail(vec![p]))?;
    let lines = LineMap::build(&text);
    let mut report = Report {
        lines: &lines,
        problems: Vec::new(),
    };
    let config = resolve(raw, registry, &mut report);
    report
        .problems
        .sort_by_key(|p| (p.line.unwrap_or(usize::MAX), p.path.clone()));
    if report
        .problems
        .iter()
        .any(|p| p.severity == Severity::Error)
    {
        return Err(fail(report.problems));
    }
    Ok(Config {
        warnings: report.problems,
        ..config
    })
}

fn parse_raw(text: &str) -> Result<RawConfig, LocatedProblem> {
    if text.trim().is_empty() {
        return Err(LocatedProblem {
            path: String::new(),
            line: None,
            message: "the config is empty".into(),
            severity: Severity::Error,
        });
    }
    let deserializer = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let line = err.inner().location().map(|l| l.line());
        let (path, message) = describe_serde_error(&err);
        let lines = LineMap::build(text);
        let line = line.or_else(|| lines.line_of(&path));
        LocatedProblem {
            path,
            line,
            message,
            severity: Severity::Error,
        }
    })
}

fn resolve(raw: RawConfig, registry: &Registry, report: &mut Report) -> Config {
    let defined = Defined::of(&raw);
    let receivers = resolve_section(Kind::Receiver, raw.receivers, registry, report);
    let processors = resolve_section(Kind::Processor, raw.processors, registry, report);
    let exporters = resolve_section(Kind::Exporter, raw.exporters, registry, report);
    for (key, _) in raw.extensions {
        let name = key.as_str().unwrap_or("?").to_string();
        report.error(
            &format!("extensions::{name}"),
            "spanline has no extensions; /healthz, /readyz and /metrics are served on service.telemetry.metrics.address".into(),
        );
    }
    let mut problems = Problems::new();
    raw.service.validate(&mut problems);
    for problem in problems.into_vec() {
        report.add("service", problem);
    }
    let pipelines = check_pipelines(&raw.service, &defined, report);
    check_query(&raw.service, &pipelines, report);
    Config {
        receivers,
        processors,
        exporters,
        pipelines,
        service: raw.service,
        warnings: Vec::new(),
    }
}

/// The query API must know which store it reads.
fn check_query(service: &ServiceConfig, pipelines: &[PipelineSpec], report: &mut Report) {
    let running = pipelines
        .iter()
        .flat_map(|p| p.exporters.iter().map(String::as_str));
    if let Err(message) = service.query.store_exporter(running) {
        report.error("service::query::exporter", message);
    }
}

fn resolve_section(
    kind: Kind,
    section: Mapping,
    registry: &Registry,
    report: &mut Report,
) -> Vec<ComponentSpec> {
    let mut specs = Vec::new();
    for (key, value) in section {
        let Some(id) = key.as_str().map(str::to_string) else {
            report.error(
                kind.section(),
                format!("component ids must be strings, got {key:?}"),
            );
            continue;
        };
        let path = format!("{}::{id}", kind.section());
        if let Some(spec) = resolve_component(kind, &id, &path, value, registry, report) {
            specs.push(spec);
        }
    }
    specs
}

fn resolve_component(
    kind: Kind,
    id: &str,
    path: &str,
    mut value: Value,
    registry: &Registry,
    report: &mut Report,
) -> Option<ComponentSpec> {
    let type_name = match parse_component_id(id) {
        Ok(type_name) => type_name,
        Err(message) => {
            report.error(path, message);
            return None;
        }
    };
    let Some(factory) = registry.get(kind, type_name) else {
        let known = registry.types(kind).join(", ");
        report.error(
            path,
            format!(
                "unknown {} type {type_name:?}; known types: {known}",
                kind.as_str()
            ),
        );
        return None;
    };
    let settings = if kind == Kind::Exporter {
        take_runner_settings(&mut value, path, report)
    } else {
        ExporterSettings::default()
    };
    let (parsed, problems) = factory.parse(&value);
    for problem in problems {
        report.add(path, problem);
    }
    parsed.map(|_| ComponentSpec {
        id: id.to_string(),
        factory: factory.clone(),
        value,
        settings,
    })
}

/// Splits `type[/name]`, checking both parts.
pub fn parse_component_id(id: &str) -> Result<&str, String> {
    let (type_name, name) = match id.split_once('/') {
        Some((t, n)) => (t, Some(n)),
        None => (id, None),
    };
    let valid_type = !type_name.is_empty()
        && type_name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_type {
        return Err(format!(
            "invalid component id {id:?}: expected type[/name], type in lowercase letters, digits and _"
        ));
    }
    if let Some(name) = name
        && (name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '/'))
    {
        return Err(format!(
            "invalid component id {id:?}: the name after / must be non-empty, without spaces or /"
        ));
    }
    Ok(type_name)
}

/// Moves `sending_queue`, `retry_on_failure` and `timeout` out of an exporter's YAML.
fn take_runner_settings(value: &mut Value, path: &str, report: &mut Report) -> ExporterSettings {
    let Value::Mapping(map) = value else {
        return ExporterSettings::default();
    };
    let mut runner = Mapping::new();
    for key in RUNNER_KEYS {
        if let Some(v) = map.remove(key) {
            runner.insert(Value::from(key), v);
        }
    }
    if runner.is_empty() {
        return ExporterSettings::default();
    }
    match serde_path_to_error::deserialize::<_, ExporterSettings>(&Value::Mapping(runner)) {
        Ok(settings) => {
            let mut problems = Problems::new();
            settings.validate(&mut problems);
            for problem in problems.into_vec() {
                report.add(path, problem);
            }
            settings
        }
        Err(err) => {
            let (sub, message) = describe_serde_error(&err);
            report.add(
                path,
                Problem {
                    path: sub,
                    message,
                    severity: Severity::Error,
                },
            );
            ExporterSettings::default()
        }
    }
}

/// The ids written in each section, whether or not their configs are valid, so that a
/// broken component is reported once and not again at every reference to it.
struct Defined {
    receivers: Vec<String>,
    processors: Vec<String>,
    exporters: Vec<String>,
}

impl Defined {
    fn of(raw: &RawConfig) -> Self {
        let ids = |section: &Mapping| {
            section
                .keys()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        };
        Self {
            receivers: ids(&raw.receivers),
            processors: ids(&raw.processors),
            exporters: ids(&raw.exporters),
        }
    }
}

fn check_pipelines(
    service: &ServiceConfig,
    defined: &Defined,
    report: &mut Report,
) -> Vec<PipelineSpec> {
    let (receivers, processors, exporters) =
        (&defined.receivers, &defined.processors, &defined.exporters);
    if service.pipelines.is_empty() {
        report.error("service::pipelines", "at least one pipeline is required, e.g. traces: {receivers: [otlp], exporters: [debug]}".into());
    }
    let mut used: HashSet<(Kind, String)> = HashSet::new();
    let mut pipelines = Vec::new();
    for (id, pipeline) in &service.pipelines {
        let path = format!("service::pipelines::{id}");
        check_pipeline_id(id, &path, report);
        let lists = [
            (Kind::Receiver, &pipeline.receivers, receivers),
            (Kind::Processor, &pipeline.processors, processors),
            (Kind::Exporter, &pipeline.exporters, exporters),
        ];
        for (kind, names, defined) in lists {
            check_references(kind, names, defined, &path, report);
            for name in names {
                used.insert((kind, name.clone()));
            }
        }
        check_processor_order(&pipeline.processors, &path, report);
        pipelines.push(PipelineSpec {
            id: id.clone(),
            receivers: pipeline.receivers.clone(),
            processors: pipeline.processors.clone(),
            exporters: pipeline.exporters.clone(),
        });
    }
    for (kind, defined) in [
        (Kind::Receiver, receivers),
        (Kind::Processor, processors),
        (Kind::Exporter, exporters),
    ] {
        for spec in defined {
            if !used.contains(&(kind, spec.clone())) {
                report.warning(
                    &format!("{}::{spec}", kind.section()),
                    "defined but not used in any pipeline".into(),
                );
            }
        }
    }
    pipelines
}

fn check_pipeline_id(id: &str, path: &str, report: &mut Report) {
    let signal = id.split('/').next().unwrap_or_default();
    match signal {
        "traces" => {
            if id.contains('/') && id.split_once('/').is_some_and(|(_, n)| n.is_empty()) {
                report.error(
                    path,
                    "invalid pipeline id: the name after traces/ must be non-empty".into(),
                );
            }
        }
        "metrics" | "logs" | "profiles" => {
            report.error(
                path,
                format!("{signal} pipelines are not supported: spanline handles traces only"),
            );
        }
        _ => report.error(
            path,
            format!("invalid pipeline id {id:?}: expected traces or traces/<name>"),
        ),
    }
}

fn check_references(
    kind: Kind,
    names: &[String],
    defined: &[String],
    path: &str,
    report: &mut Report,
) {
    let key = kind.section();
    if names.is_empty() && kind != Kind::Processor {
        report.error(
            &format!("{path}::{key}"),
            format!("a pipeline needs at least one {}", kind.as_str()),
        );
    }
    let mut seen = BTreeMap::new();
    for (index, name) in names.iter().enumerate() {
        let item = format!("{path}::{key}[{index}]");
        if seen.insert(name.clone(), index).is_some() {
            report.error(&item, format!("{} {name:?} is listed twice", kind.as_str()));
        } else if !defined.contains(name) {
            let known: Vec<&str> = defined.iter().map(String::as_str).collect();
            let known = if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            };
            report.error(
                &item,
                format!(
                    "{} {name:?} is not defined under {key}: (defined: {known})",
                    kind.as_str()
                ),
            );
        }
    }
}

fn check_processor_order(processors: &[String], path: &str, report: &mut Report) {
    for (index, name) in processors.iter().enumerate() {
        let type_name = name.split('/').next().unwrap_or_default();
        if type_name == "memory_limiter" && index > 0 {
            report.warning(
                &format!("{path}::processors[{index}]"),
                "memory_limiter should be the first processor, so that it refuses data before other processors hold it".into(),
            );
        }
    }
}
