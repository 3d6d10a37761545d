//! Tests of the attributes processor: allowlists, every action, include/exclude, validation.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::matcher::glob_to_regex;
use super::{AttributesConfig, AttributesProcessorFactory};
use crate::component::{
    AnyValue, BuildContext, ComponentConfig, Dropped, Emitter, KeyValue, Problems, Processor,
    ProcessorFactory, Resource, ResourceSpans, ScopeSpans, Severity, Span, TraceBatch, any_value,
    span,
};

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    }
}

fn i(v: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(v)),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs.iter().map(|(k, v)| kv(k, s(v))).collect()
}

/// One resource (service `service`) with one span carrying `span_attrs`, one event and one link.
fn batch(service: &str, span_attrs: Vec<KeyValue>) -> TraceBatch {
    let span = Span {
        name: "GET /users".into(),
        kind: span::SpanKind::Server as i32,
        attributes: span_attrs,
        events: vec![span::Event {
            name: "exception".into(),
            attributes: attrs(&[("exception.type", "Boom"), ("user.email", "a@b.c")]),
            ..Default::default()
        }],
        links: vec![span::Link {
            attributes: attrs(&[("link.kind", "parent"), ("secret", "x")]),
            ..Default::default()
        }],
        ..Default::default()
    };
    TraceBatch::measured(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: attrs(&[
                ("service.name", service),
                ("tenant.id", "acme"),
                ("host.name", "box-1"),
                ("k8s.pod.name", "pod-1"),
            ]),
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: vec![span],
            ..Default::default()
        }],
        schema_url: String::new(),
    }])
}

fn parse(yaml: &str) -> AttributesConfig {
    serde_yaml::from_str(yaml).expect("test config parses")
}

fn build(config: AttributesConfig) -> (Box<dyn Processor>, PrometheusHandle) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let ctx = BuildContext {
        id: "attributes".into(),
        pipeline: Some("traces".into()),
    };
    let p =
        metrics::with_local_recorder(&recorder, || AttributesProcessorFactory.build(config, &ctx))
            .expect("attributes processor should build");
    (p, handle)
}

async fn run(yaml: &str, input: TraceBatch) -> TraceBatch {
    run_with_metrics(yaml, input).await.0
}

async fn run_with_metrics(yaml: &str, input: TraceBatch) -> (TraceBatch, String) {
    let (mut p, handle) = build(parse(yaml));
    let mut out = Emitter::default();
    let mut dropped = Dropped::default();
    p.process(input, &mut out, &mut dropped)
        .await
        .expect("attributes never refuses");
    assert_eq!(dropped.total(), 0, "the attributes processor drops no span");
    let mut batches: Vec<TraceBatch> = out.drain().collect();
    assert_eq!(batches.len(), 1);
    (batches.remove(0), handle.render())
}

fn the_span(b: &TraceBatch) -> &Span {
    &b.resource_spans()[0].scope_spans[0].spans[0]
}

fn keys(list: &[KeyValue]) -> Vec<&str> {
    list.iter().map(|kv| kv.key.as_str()).collect()
}

fn get<'a>(list: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    list.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn resource_keys(b: &TraceBatch) -> Vec<&str> {
    keys(&b.resource_spans()[0].resource.as_ref().unwrap().attributes)
}

#[tokio::test]
async fn allowlists_keep_exact_and_glob_keys_at_every_scope() {
    let yaml = r#"
allowlist:
  resource: { allowed_keys: ["k8s.*"] }
  span: { allowed_keys: ["http.*", "db.system"] }
  event: { allowed_keys: ["exception.?ype"] }
  link: { allowed_keys: ["link.kind"] }
"#;
    let input = batch(
        "checkout",
        attrs(&[
            ("http.method", "GET"),
            ("db.system", "pg"),
            ("user.email", "x"),
        ]),
    );
    let (out, metrics) = run_with_metrics(yaml, input).await;
    // tenant.id and service.name survive any resource allowlist.
    assert_eq!(
        resource_keys(&out),
        ["service.name", "tenant.id", "k8s.pod.name"]
    );
    let span = the_span(&out);
    assert_eq!(keys(&span.attributes), ["http.method", "db.system"]);
    assert_eq!(keys(&span.events[0].attributes), ["exception.type"]);
    assert_eq!(keys(&span.links[0].attributes), ["link.kind"]);
    assert!(
        metrics.contains("spanline_attributes_removed_total{processor=\"attributes\"} 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_scope_without_allowlist_keeps_everything() {
    let out = run(
        "allowlist: { span: { allowed_keys: ['*'] } }",
        batch("svc", attrs(&[("a", "1"), ("b", "2")])),
    )
    .await;
    assert_eq!(keys(&the_span(&out).attributes), ["a", "b"]);
    assert_eq!(resource_keys(&out).len(), 4);
    assert_eq!(keys(&the_span(&out).events[0].attributes).len(), 2);
}

#[tokio::test]
async fn an_empty_allowlist_fails_closed() {
    let yaml =
        "allowlist: { resource: { allowed_keys: [] }, span: { allowed_keys: [] }, link: {} }";
    let out = run(yaml, batch("svc", attrs(&[("a", "1")]))).await;
    assert_eq!(resource_keys(&out), ["service.name", "tenant.id"]);
    assert!(the_span(&out).attributes.is_empty());
    assert!(the_span(&out).links[0].attributes.is_empty());
    assert_eq!(the_span(&out).events[0].attributes.len(), 2);

    let mut problems = Problems::new();
    parse(yaml).validate(&mut problems);
    let list = problems.into_vec();
    assert_eq!(list.len(), 3, "{list:?}");
    assert!(list.iter().all(|p| p.severity == Severity::Warning));
    assert_eq!(list[0].path, "allowlist::resource::allowed_keys");
    assert!(
        list[0].message.contains("fail closed"),
        "{}",
        list[0].message
    );
    assert!(
        list[0]
            .message
            .contains("except tenant.id and service.name")
    );
    assert_eq!(list[1].path, "allowlist::span::allowed_keys");
}

#[tokio::test]
async fn hash_replaces_disallowed_values_stably_per_salt() {
    let yaml = |salt: &str| {
        format!(
            "hash_salt: {salt}\nallowlist: {{ span: {{ allowed_keys: [keep], action: hash }}, resource: {{ allowed_keys: [], action: hash }} }}"
        )
    };
    let input = || {
        batch(
            "svc",
            vec![kv("keep", s("v")), kv("user.id", s("42")), kv("n", i(7))],
        )
    };
    let a = run(&yaml("pepper"), input()).await;
    let b = run(&yaml("pepper"), input()).await;
    let c = run(&yaml("salt"), input()).await;
    let span = the_span(&a);
    assert_eq!(keys(&span.attributes), ["keep", "user.id", "n"]);
    assert_eq!(
        get(&span.attributes, "keep"),
        Some(&any_value::Value::StringValue("v".into()))
    );
    let Some(any_value::Value::StringValue(hashed)) = get(&span.attributes, "user.id") else {
        panic!("user.id should be a hashed string");
    };
    assert_eq!(hashed.len(), 64);
    assert!(hashed.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        the_span(&b).attributes,
        span.attributes,
        "same salt, same hash"
    );
    assert_ne!(
        get(&the_span(&c).attributes, "user.id"),
        get(&span.attributes, "user.id")
    );
    // The protected resource keys are never hashed.
    let resource = &a.resource_spans()[0].resource.as_ref().unwrap().attributes;
    assert_eq!(
        get(resource, "tenant.id"),
        Some(&any_value::Value::StringValue("acme".into()))
    );
    assert_eq!(
        get(resource, "service.name"),
        Some(&any_value::Value::StringValue("svc".into()))
    );
    assert_ne!(
        get(resource, "host.name"),
        Some(&any_value::Value::StringValue("box-1".into()))
    );
}

#[tokio::test]
async fn insert_update_upsert_follow_the_collector() {
    let yaml = r#"
actions:
  - { key: present, value: new, action: insert }
  - { key: absent_i, value: 5, action: insert }
  - { key: present2, value: true, action: update }
  - { key: absent_u, value: x, action: update }
  - { key: absent_up, value: 1.5, action: upsert }
  - { key: copy, from_attribute: present, action: upsert }
  - { key: nothing, from_attribute: missing, action: upsert }
"#;
    let out = run(
        yaml,
        batch("svc", attrs(&[("present", "old"), ("present2", "old")])),
    )
    .await;
    let a = &the_span(&out).attributes;
    use any_value::Value::*;
    assert_eq!(
        get(a, "present"),
        Some(&StringValue("old".into())),
        "insert never overwrites"
    );
    assert_eq!(get(a, "absent_i"), Some(&IntValue(5)));
    assert_eq!(get(a, "present2"), Some(&BoolValue(true)));
    assert_eq!(get(a, "absent_u"), None, "update never creates");
    assert_eq!(get(a, "absent_up"), Some(&DoubleValue(1.5)));
    assert_eq!(get(a, "copy"), Some(&StringValue("old".into())));
    assert_eq!(get(a, "nothing"), None, "a missing source changes nothing");
}

#[tokio::test]
async fn delete_and_hash_by_key_or_pattern() {
    let yaml = r#"
hash_salt: s
actions:
  - { key: user.email, action: delete }
  - { pattern: "^secret\\.", action: delete }
  - { key: user.id, action: hash }
  - { key: not.there, action: delete }
"#;
    let input = batch(
        "svc",
        attrs(&[
            ("user.email", "a@b.c"),
            ("secret.a", "1"),
            ("secret.b", "2"),
            ("user.id", "42"),
            ("ok", "1"),
        ]),
    );
    let (out, metrics) = run_with_metrics(yaml, input).await;
    let a = &the_span(&out).attributes;
    assert_eq!(keys(a), ["user.id", "ok"]);
    assert_ne!(
        get(a, "user.id"),
        Some(&any_value::Value::StringValue("42".into()))
    );
    assert!(
        metrics.contains("spanline_attributes_removed_total{processor=\"attributes\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("spanline_attributes_hashed_total{processor=\"attributes\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn extract_creates_an_attribute_per_named_capture() {
    let yaml = r#"
actions:
  - { key: http.target, pattern: "^/users/(?P<user_id>\\d+)/orders/(?P<order_id>\\w+)", action: extract }
"#;
    let out = run(
        yaml,
        batch("svc", attrs(&[("http.target", "/users/42/orders/abc")])),
    )
    .await;
    let a = &the_span(&out).attributes;
    assert_eq!(
        get(a, "user_id"),
        Some(&any_value::Value::StringValue("42".into()))
    );
    assert_eq!(
        get(a, "order_id"),
        Some(&any_value::Value::StringValue("abc".into()))
    );

    let out = run(yaml, batch("svc", attrs(&[("http.target", "/health")]))).await;
    assert_eq!(
        keys(&the_span(&out).attributes),
        ["http.target"],
        "no match, no change"
    );
}

#[tokio::test]
async fn convert_changes_types_and_leaves_unconvertible_values() {
    let yaml = r#"
actions:
  - { key: code, converted_type: int, action: convert }
  - { key: bad, converted_type: int, action: convert }
  - { key: ratio, converted_type: double, action: convert }
  - { key: flag, converted_type: bool, action: convert }
  - { key: num, converted_type: string, action: convert }
"#;
    let input = batch(
        "svc",
        vec![
            kv("code", s("200")),
            kv("bad", s("n/a")),
            kv("ratio", i(3)),
            kv("flag", s("true")),
            kv("num", i(9)),
        ],
    );
    let out = run(yaml, input).await;
    let a = &the_span(&out).attributes;
    use any_value::Value::*;
    assert_eq!(get(a, "code"), Some(&IntValue(200)));
    assert_eq!(get(a, "bad"), Some(&StringValue("n/a".into())));
    assert_eq!(get(a, "ratio"), Some(&DoubleValue(3.0)));
    assert_eq!(get(a, "flag"), Some(&BoolValue(true)));
    assert_eq!(get(a, "num"), Some(&StringValue("9".into())));
}

#[tokio::test]
async fn include_and_exclude_select_spans_for_actions() {
    let include = r#"
actions: [{ key: marked, value: yes, action: insert }]
include:
  match_type: regexp
  services: ["^check"]
  span_kinds: [server]
  attributes: [{ key: http.method, value: "^GE" }]
"#;
    let hit = run(include, batch("checkout", attrs(&[("http.method", "GET")]))).await;
    assert!(get(&the_span(&hit).attributes, "marked").is_some());
    let wrong_service = run(include, batch("billing", attrs(&[("http.method", "GET")]))).await;
    assert!(get(&the_span(&wrong_service).attributes, "marked").is_none());
    let wrong_value = run(
        include,
        batch("checkout", attrs(&[("http.method", "POST")])),
    )
    .await;
    assert!(get(&the_span(&wrong_value).attributes, "marked").is_none());

    let exclude = r#"
actions: [{ key: marked, value: yes, action: insert }]
exclude: { match_type: strict, span_names: ["GET /users"], span_kinds: [SPAN_KIND_SERVER] }
"#;
    let skipped = run(exclude, batch("checkout", vec![])).await;
    assert!(get(&the_span(&skipped).attributes, "marked").is_none());
    let client = r#"
actions: [{ key: marked, value: yes, action: insert }]
exclude: { span_kinds: [client] }
"#;
    let kept = run(client, batch("checkout", vec![])).await;
    assert!(get(&the_span(&kept).attributes, "marked").is_some());
}

#[tokio::test]
async fn the_allowlist_has_the_last_word_over_actions() {
    let yaml = r#"
actions: [{ key: added, value: x, action: insert }]
allowlist: { span: { allowed_keys: [kept] } }
"#;
    let out = run(yaml, batch("svc", attrs(&[("kept", "1")]))).await;
    assert_eq!(keys(&the_span(&out).attributes), ["kept"]);
}

#[test]
fn validation_reports_every_problem_with_paths() {
    let yaml = r#"
allowlist: { span: { allowed_keys: [""], action: hash } }
actions:
  - { key: a }
  - { key: b, action: insert }
  - { key: c, action: extract, pattern: "(\\d+)" }
  - { key: d, action: convert }
  - { action: delete, pattern: "(" }
include: { match_type: regexp }
exclude: { span_kinds: [serverless], services: ["("] , match_type: regexp }
"#;
    let mut problems = Problems::new();
    parse(yaml).validate(&mut problems);
    let list = problems.into_vec();
    let paths: Vec<&str> = list.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "allowlist::span::allowed_keys[0]",
            "actions[0]::action",
            "actions[1]::value",
            "actions[2]::pattern",
            "actions[3]::converted_type",
            "actions[4]::pattern",
            "hash_salt",
            "include",
            "exclude::services[0]",
            "exclude::span_kinds[0]",
        ],
        "{list:#?}"
    );
    assert!(list[3].message.contains("named capture"));
    assert_eq!(list[6].severity, Severity::Warning);
}

#[test]
fn example_yaml_parses_and_validates_cleanly() {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(AttributesProcessorFactory::EXAMPLE_YAML).unwrap();
    let config: AttributesConfig = serde_yaml::from_value(doc["attributes"].clone()).unwrap();
    let mut problems = Problems::new();
    config.validate(&mut problems);
    assert!(problems.into_vec().is_empty());
    assert_eq!(AttributesConfig::default(), parse("{}"));
}

#[test]
fn unknown_keys_are_rejected() {
    let err = serde_yaml::from_str::<AttributesConfig>("allowlist: { span: { allowed: [a] } }")
        .unwrap_err()
        .to_string();
    assert!(err.contains("allowed"), "{err}");
}

#[test]
fn globs_become_anchored_escaped_regexes() {
    assert_eq!(glob_to_regex("k8s.*"), "^k8s\\..*$");
    assert_eq!(glob_to_regex("a?c"), "^a.c$");
    let re = regex::Regex::new(&glob_to_regex("http.*")).unwrap();
    assert!(re.is_match("http.method"));
    assert!(!re.is_match("xhttp.method"));
    assert!(!re.is_match("httpXmethod"));
}

#[tokio::test]
async fn nested_values_follow_their_top_level_key() {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    let map = AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: attrs(&[("inner.secret", "x")]),
        })),
    };
    let list = AnyValue {
        value: Some(any_value::Value::ArrayValue(ArrayValue {
            values: vec![s("a"), i(1)],
        })),
    };
    let input = || {
        batch(
            "svc",
            vec![kv("kept.map", map.clone()), kv("other.list", list.clone())],
        )
    };
    let out = run("allowlist: { span: { allowed_keys: [kept.*] } }", input()).await;
    assert_eq!(the_span(&out).attributes, vec![kv("kept.map", map.clone())]);

    let yaml = "hash_salt: s\nallowlist: { span: { allowed_keys: [kept.*], action: hash } }";
    let a = run(yaml, input()).await;
    let b = run(yaml, input()).await;
    let Some(any_value::Value::StringValue(h)) = get(&the_span(&a).attributes, "other.list") else {
        panic!("a disallowed array should be hashed into a string");
    };
    assert_eq!(h.len(), 64);
    assert_eq!(the_span(&a).attributes, the_span(&b).attributes);
}
