//! Every registered factory's EXAMPLE_YAML goes through build → start → one batch →
//! shutdown, and the host's standard metrics for it move.

use std::sync::Arc;
use std::time::Duration;

use spanline::component::{Kind, TraceBatch, Transport};
use spanline::config::load_str_with_env;
use spanline::registry::Registry;
use spanline::runtime::{Readiness, Service};
use spanline::telemetry::server::install_recorder;
use spanline::testing::ProbeReceiverFactory;

use crate::support::{FIXED_PORTS, client, request, sum_metric};

fn indent(yaml: &str) -> String {
    yaml.lines().map(|l| format!("  {l}\n")).collect()
}

fn first_key(yaml: &str) -> String {
    yaml.split(':')
        .next()
        .expect("example starts with its id")
        .trim()
        .to_string()
}

/// An exporter example with retries off, so an unreachable peer fails fast.
fn without_retries(example: &str) -> String {
    let mut value: serde_yaml::Value = serde_yaml::from_str(example).expect("example parses");
    let id = first_key(example);
    let settings: serde_yaml::Value =
        serde_yaml::from_str("{retry_on_failure: {enabled: false}, timeout: 1s}").expect("yaml");
    let component = &mut value[id.as_str()];
    if component.is_null() {
        *component = serde_yaml::Value::Mapping(Default::default());
    }
    if let (Some(map), Some(extra)) = (component.as_mapping_mut(), settings.as_mapping()) {
        map.extend(extra.clone());
    }
    serde_yaml::to_string(&value).expect("serialize")
}

fn config_for(kind: Kind, example: &str) -> String {
    let id = first_key(example);
    let body = if kind == Kind::Exporter {
        indent(&without_retries(example))
    } else {
        indent(example)
    };
    match kind {
        Kind::Receiver => format!(
            "receivers:\n{body}exporters:\n  nop: {{}}\nservice:\n  pipelines:\n    traces: {{ receivers: [{id}], exporters: [nop] }}\n  telemetry: {{ metrics: {{ address: '' }} }}\n"
        ),
        Kind::Processor => format!(
            "receivers:\n  probe: {{}}\nprocessors:\n{body}exporters:\n  nop: {{}}\nservice:\n  pipelines:\n    traces: {{ receivers: [probe], processors: [{id}], exporters: [nop] }}\n  telemetry: {{ metrics: {{ address: '' }} }}\n"
        ),
        Kind::Exporter => format!(
            "receivers:\n  probe: {{}}\nexporters:\n{body}service:\n  pipelines:\n    traces: {{ receivers: [probe], exporters: [{id}] }}\n  telemetry: {{ metrics: {{ address: '' }} }}\n"
        ),
    }
}

/// The gRPC port of an OTLP receiver example.
fn grpc_port(example: &str) -> u16 {
    let value: serde_yaml::Value = serde_yaml::from_str(example).expect("example parses");
    let id = first_key(example);
    let endpoint = value[id.as_str()]["protocols"]["grpc"]["endpoint"]
        .as_str()
        .unwrap_or_else(|| {
            panic!("receiver {id}: the compliance test knows how to feed OTLP/gRPC receivers only")
        });
    endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_component_example_runs_and_moves_the_standard_metrics() {
    let handle = install_recorder();
    let _ports = FIXED_PORTS.lock().await;
    let (probe, mut consumers) = ProbeReceiverFactory::new();
    let registry = Registry::builtin().with_receiver(probe);
    let builtin = Registry::builtin();
    for factory in builtin.all() {
        let kind = factory.kind();
        let example = factory.example_yaml();
        let id = first_key(example);
        let text = config_for(kind, example);
        let config = load_str_with_env(
            &text,
            &format!("{} {id}", kind.as_str()),
            &registry,
            &|_| None,
        )
        .unwrap_or_else(|err| {
            panic!(
                "EXAMPLE_YAML of {} {id} does not validate: {err}",
                kind.as_str()
            )
        });
        let mut service = Service::start(&config, Arc::new(Readiness::default()))
            .await
            .unwrap_or_else(|err| panic!("{} {id} does not start: {err}", kind.as_str()));
        match kind {
            Kind::Receiver => {
                let mut client = client(grpc_port(example)).await;
                client
                    .export(request(0, 3))
                    .await
                    .expect("the receiver accepts a batch");
            }
            Kind::Processor | Kind::Exporter => {
                let consumer = consumers.recv().await.expect("probe started");
                let batch = TraceBatch::measured(request(0, 3).resource_spans);
                consumer
                    .consume(Transport::Grpc, batch)
                    .await
                    .expect("the pipeline accepts a batch");
            }
        }
        let report = service.shutdown(Duration::from_secs(10)).await;
        assert!(
            !report.timed_out,
            "{} {id} did not shut down in time",
            kind.as_str()
        );
        let text = handle.render();
        let moved = match kind {
            Kind::Receiver => sum_metric(
                &text,
                "spanline_receiver_accepted_spans_total",
                &[&format!("receiver=\"{id}\"")],
            ),
            Kind::Processor => sum_metric(
                &text,
                "spanline_processor_incoming_spans_total",
                &[&format!("processor=\"{id}\"")],
            ),
            Kind::Exporter => {
                let label = format!("exporter=\"{id}\"");
                sum_metric(&text, "spanline_exporter_sent_spans_total", &[&label])
                    + sum_metric(
                        &text,
                        "spanline_exporter_send_failed_spans_total",
                        &[&label],
                    )
            }
        };
        assert!(
            moved >= 3.0,
            "{} {id}: standard metrics did not move:\n{text}",
            kind.as_str()
        );
    }
}
