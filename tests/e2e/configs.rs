//! Every file in configs/ and every YAML block in the README validates; `spanline validate`
//! lists every problem of a broken file with its path and line; the default config serves.

use std::process::Command;

use serde_yaml::{Mapping, Value};
use spanline::config::load_str_with_env;
use spanline::registry::Registry;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn every_shipped_config_validates() {
    let mut checked = 0;
    for entry in
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/configs")).expect("configs/")
    {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read config");
        if let Err(err) = load_str_with_env(
            &text,
            &path.display().to_string(),
            &Registry::builtin(),
            &no_env,
        ) {
            panic!("{err}");
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "configs/ should hold the agent, gateway and bench configs"
    );
    let default = spanline::config::DEFAULT_CONFIG;
    load_str_with_env(default, "default", &Registry::builtin(), &no_env)
        .expect("the built-in default validates");
}

/// A README block either is a whole config or defines components; a fragment is completed
/// with a pipeline that uses everything it defines (plus an otlp receiver / nop exporter).
fn complete(block: &str) -> String {
    let mut doc: Mapping = serde_yaml::from_str(block).expect("README YAML parses");
    if doc.contains_key("service") {
        return block.to_string();
    }
    let ids = |doc: &Mapping, section: &str| -> Vec<Value> {
        doc.get(section)
            .and_then(Value::as_mapping)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut receivers = ids(&doc, "receivers");
    if receivers.is_empty() {
        doc.insert(
            "receivers".into(),
            serde_yaml::from_str("{otlp: {protocols: {grpc: }}}").expect("yaml"),
        );
        receivers.push("otlp".into());
    }
    let mut exporters = ids(&doc, "exporters");
    if exporters.is_empty() {
        doc.insert(
            "exporters".into(),
            serde_yaml::from_str("{nop: {}}").expect("yaml"),
        );
        exporters.push("nop".into());
    }
    let pipeline = serde_yaml::to_value(serde_yaml::Mapping::from_iter([
        ("receivers".into(), Value::Sequence(receivers)),
        (
            "processors".into(),
            Value::Sequence(ids(&doc, "processors")),
        ),
        ("exporters".into(), Value::Sequence(exporters)),
    ]))
    .expect("pipeline");
    let service: Value = serde_yaml::from_str("{pipelines: {}}").expect("yaml");
    doc.insert("service".into(), service);
    doc["service"]["pipelines"]["traces"] = pipeline;
    serde_yaml::to_string(&doc).expect("serialize")
}

#[test]
fn every_readme_yaml_block_validates() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().expect("block")),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(blocks.len() >= 5, "the README should show configs");
    for (index, block) in blocks.iter().enumerate() {
        let text = complete(block);
        // Blocks may reference ${env:...}: stand in a value, as an operator's environment would.
        let env = |_: &str| Some("placeholder-value".to_string());
        if let Err(err) = load_str_with_env(
            &text,
            &format!("README block {index}"),
            &Registry::builtin(),
            &env,
        ) {
            panic!("{err}\n--- block:\n{block}");
        }
    }
}

#[test]
fn validate_lists_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "receivers:
  otlp:
    protocols:
      grpc:
processors:
  batch:
    send_batch_size: 0
exporters:
  kafka:
    brokers: [a]
  nop:
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch, batchh]
      exporters: [nop, kafka]
",
    )
    .expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_spanline"))
        .arg("validate")
        .arg(&file)
        .output()
        .expect("run validate");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = format!(
        "{}: 3 errors
  error: processors::batch::send_batch_size (line 7): must be greater than 0, got 0
  error: exporters::kafka (line 9): unknown exporter type \"kafka\"; known types: debug, nop, otlp, trace_store
  error: service::pipelines::traces::processors[1] (line 16): processor \"batchh\" is not defined under processors: (defined: batch)
",
        file.display()
    );
    assert_eq!(stdout, expected);

    let ok = Command::new(env!("CARGO_BIN_EXE_spanline"))
        .arg("validate")
        .args(["configs/agent.yaml", "configs/gateway.yaml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run validate");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
}

#[test]
fn components_lists_every_type_with_its_example() {
    let output = Command::new(env!("CARGO_BIN_EXE_spanline"))
        .arg("components")
        .output()
        .expect("run components");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    for factory in Registry::builtin().all() {
        let heading = format!("{} {}", factory.kind().as_str(), factory.type_name());
        assert!(stdout.contains(&heading), "missing {heading} in:\n{stdout}");
    }
}
