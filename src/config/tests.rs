//! Config parsing and validation against small test factories; full error texts asserted.

use async_trait::async_trait;
use serde::Deserialize;

use super::load_str_with_env;
use crate::component::{
    BuildContext, ComponentConfig, ComponentError, Dropped, Emitter, ExportError, Exporter,
    ExporterFactory, HumanDuration, Problems, ProcessError, Processor, ProcessorFactory, Receiver,
    ReceiverContext, ReceiverFactory, TraceBatch,
};
use crate::registry::Registry;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ListenConfig {
    endpoint: String,
}

impl ComponentConfig for ListenConfig {
    fn validate(&self, problems: &mut Problems) {
        if !self.endpoint.is_empty() {
            problems.check_socket_addr("endpoint", &self.endpoint);
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BatchConfig {
    send_batch_size: usize,
    timeout: HumanDuration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            send_batch_size: 8192,
            timeout: HumanDuration::from_millis(200),
        }
    }
}

impl ComponentConfig for BatchConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.send_batch_size == 0 {
            problems.error("send_batch_size", "must be greater than 0");
        }
    }
}

struct TestReceiver;
struct TestProcessor;
struct TestExporter;
struct Nothing;

#[async_trait]
impl Receiver for Nothing {
    async fn start(
        self: Box<Self>,
        _ctx: ReceiverContext,
    ) -> Result<tokio::task::JoinHandle<()>, ComponentError> {
        Ok(tokio::spawn(async {}))
    }
}

#[async_trait]
impl Processor for Nothing {
    async fn process(
        &mut self,
        batch: TraceBatch,
        out: &mut Emitter,
        _: &mut Dropped,
    ) -> Result<(), ProcessError> {
        out.emit(batch);
        Ok(())
    }
}

#[async_trait]
impl Exporter for Nothing {
    async fn export(&mut self, _batch: &TraceBatch) -> Result<(), ExportError> {
        Ok(())
    }
}

impl ReceiverFactory for TestReceiver {
    type Config = ListenConfig;
    const TYPE: &'static str = "otlp";
    const EXAMPLE_YAML: &'static str = "otlp: {}\n";
    fn build(
        &self,
        _: ListenConfig,
        _: &BuildContext,
    ) -> Result<Box<dyn Receiver>, ComponentError> {
        Ok(Box::new(Nothing))
    }
}

impl ProcessorFactory for TestProcessor {
    type Config = BatchConfig;
    const TYPE: &'static str = "batch";
    const EXAMPLE_YAML: &'static str = "batch: {}\n";
    fn build(
        &self,
        _: BatchConfig,
        _: &BuildContext,
    ) -> Result<Box<dyn Processor>, ComponentError> {
        Ok(Box::new(Nothing))
    }
}

impl ExporterFactory for TestExporter {
    type Config = ListenConfig;
    const TYPE: &'static str = "debug";
    const EXAMPLE_YAML: &'static str = "debug: {}\n";
    fn build(
        &self,
        _: ListenConfig,
        _: &BuildContext,
    ) -> Result<Box<dyn Exporter>, ComponentError> {
        Ok(Box::new(Nothing))
    }
}

struct MemoryLimiter;

impl ProcessorFactory for MemoryLimiter {
    type Config = BatchConfig;
    const TYPE: &'static str = "memory_limiter";
    const EXAMPLE_YAML: &'static str = "memory_limiter: {}\n";
    fn build(
        &self,
        _: BatchConfig,
        _: &BuildContext,
    ) -> Result<Box<dyn Processor>, ComponentError> {
        Ok(Box::new(Nothing))
    }
}

fn registry() -> Registry {
    Registry::empty()
        .with_receiver(TestReceiver)
        .with_processor(TestProcessor)
        .with_processor(MemoryLimiter)
        .with_exporter(TestExporter)
}

fn env(name: &str) -> Option<String> {
    (name == "PORT").then(|| "4317".to_string())
}

/// The problems of a config that must fail, one per line as `spanline validate` prints them.
fn errors(text: &str) -> String {
    match load_str_with_env(text, "test.yaml", &registry(), &env) {
        Ok(_) => panic!("config should be rejected"),
        Err(err) => err
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

const GOOD: &str = "\
receivers:
  otlp:
    endpoint: 127.0.0.1:${env:PORT}
  otlp/internal:
processors:
  batch:
    send_batch_size: 100
exporters:
  debug:
    timeout: 2s
    sending_queue:
      queue_size: 10
  debug/audit: {}
service:
  pipelines:
    traces:
      receivers: [otlp, otlp/internal]
      processors: [batch]
      exporters: [debug]
    traces/audit:
      receivers: [otlp]
      exporters: [debug, debug/audit]
";

#[test]
fn accepts_a_good_config_with_shared_and_named_components() {
    let config =
        load_str_with_env(GOOD, "good.yaml", &registry(), &env).expect("config should load");
    assert_eq!(config.pipelines.len(), 2);
    assert_eq!(config.receivers.len(), 2);
    let debug = config
        .component(crate::component::Kind::Exporter, "debug")
        .expect("debug exporter");
    assert_eq!(debug.settings.timeout, HumanDuration::from_secs(2));
    assert_eq!(debug.settings.sending_queue.queue_size, 10);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let graph = crate::graph::Graph::from_config(&config);
    assert_eq!(graph.exporters, vec!["debug", "debug/audit"]);
    let otlp = graph
        .receivers
        .iter()
        .find(|r| r.id == "otlp")
        .expect("otlp receiver node");
    assert_eq!(otlp.pipelines, vec!["traces", "traces/audit"]);
}

#[test]
fn unknown_key_names_its_path_and_line() {
    let text = "\
receivers:
  otlp:
processors:
  batch:
    send_batch_sise: 10
exporters:
  debug:
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [debug]}
";
    assert_eq!(
        errors(text),
        "processors::batch::send_batch_sise (line 5): unknown field `send_batch_sise`, expected `send_batch_size` or `timeout`"
    );
}

#[test]
fn unknown_type_lists_the_known_ones() {
    let text = "\
receivers:
  otlp:
exporters:
  kafka:
    brokers: [a]
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [kafka]}
";
    assert_eq!(
        errors(text),
        "exporters::kafka (line 4): unknown exporter type \"kafka\"; known types: debug"
    );
}

#[test]
fn bad_duration_is_explained() {
    let text = "\
receivers:
  otlp:
processors:
  batch:
    timeout: 10
exporters:
  debug:
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [debug]}
";
    assert_eq!(
        errors(text),
        "processors::batch::timeout (line 5): invalid duration 10: a unit is required, for example 10ms or 10s"
    );
}

#[test]
fn undefined_reference_lists_what_is_defined() {
    let text = "\
receivers:
  otlp:
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
";
    assert_eq!(
        errors(text),
        "service::pipelines::traces::processors[0] (line 9): processor \"batch\" is not defined under processors: (defined: none)"
    );
}

#[test]
fn reports_every_problem_at_once() {
    let text = "\
receivers:
  otlp:
    endpoint: nowhere
processors:
  batch:
    send_batch_size: 0
exporters:
  debug:
    retry_on_failure:
      multiplier: 0.5
service:
  pipelines:
    traces:
      receivers: [otlp, otlp]
      processors: [batch]
      exporters: []
    metrics:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    metrics:
      address: 8888
";
    assert_eq!(
        errors(text),
        "receivers::otlp::endpoint (line 3): must be host:port (for example 127.0.0.1:4317), got \"nowhere\"\n\
         processors::batch::send_batch_size (line 6): must be greater than 0\n\
         exporters::debug::retry_on_failure::multiplier (line 10): must be at least 1, got 0.5\n\
         service::pipelines::traces::receivers[1] (line 14): receiver \"otlp\" is listed twice\n\
         service::pipelines::traces::exporters (line 16): a pipeline needs at least one exporter\n\
         service::pipelines::metrics (line 17): metrics pipelines are not supported: spanline handles traces only\n\
         service::telemetry::metrics::address (line 22): must be host:port (for example 127.0.0.1:4317), got \"8888\""
    );
}

#[test]
fn unset_environment_variable_is_an_error_with_its_line() {
    let text = "receivers:\n  otlp:\n    endpoint: ${env:NOT_SET}\n";
    assert_eq!(
        errors(text),
        "line 3: environment variable NOT_SET is not set (give a default with ${env:NOT_SET:-value})"
    );
}

#[test]
fn yaml_syntax_error_has_a_line() {
    let text = "receivers:\n  otlp:\n    endpoint: [unclosed\nservice: {}\n";
    let text = errors(text);
    assert!(
        text.starts_with("line 4") || text.contains("(line 4)") || text.contains("line 3"),
        "{text}"
    );
}

#[test]
fn unused_components_and_misplaced_memory_limiter_are_warnings() {
    let text = "\
receivers:
  otlp:
processors:
  batch:
  memory_limiter:
exporters:
  debug:
  debug/unused:
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch, memory_limiter], exporters: [debug]}
";
    let config =
        load_str_with_env(text, "t.yaml", &registry(), &env).expect("warnings do not fail");
    let warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings,
        vec![
            "exporters::debug/unused (line 8): defined but not used in any pipeline",
            "service::pipelines::traces::processors[1] (line 11): memory_limiter should be the first processor, so that it refuses data before other processors hold it",
        ]
    );
}

#[test]
fn empty_config_and_bad_ids_are_errors() {
    assert_eq!(errors("  \n"), "the config is empty");
    let text = "receivers:\n  Otlp/x:\nservice:\n  pipelines:\n    traces/: {receivers: [Otlp/x], exporters: [debug]}\n";
    let text = errors(text);
    assert!(
        text.contains("receivers::Otlp/x (line 2): invalid component id \"Otlp/x\""),
        "{text}"
    );
    assert!(
        text.contains("service::pipelines::traces/ (line 5): invalid pipeline id"),
        "{text}"
    );
}
