//! Tests of the sanitizer: every detector both ways, SQL and URLs, keys, scopes, summary, metrics.

use metrics_exporter_prometheus::PrometheusBuilder;

use super::detectors::luhn_valid;
use super::{SanitizerConfig, SanitizerProcessorFactory};
use crate::component::{
    AnyValue, BuildContext, ComponentConfig, Dropped, Emitter, KeyValue, Problems,
    ProcessorFactory, Resource, ResourceSpans, ScopeSpans, Severity, Span, Status, TraceBatch,
    any_value::Value, span,
};
use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(v.into())),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

fn span_with(name: &str, attributes: Vec<KeyValue>) -> Span {
    Span {
        name: name.into(),
        attributes,
        ..Default::default()
    }
}

fn wrap(resource: Vec<KeyValue>, span: Span) -> TraceBatch {
    TraceBatch::measured(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: vec![span],
            ..Default::default()
        }],
        schema_url: String::new(),
    }])
}

async fn run_full(yaml: &str, input: TraceBatch) -> (TraceBatch, String) {
    let config: SanitizerConfig = serde_yaml::from_str(yaml).expect("test config parses");
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let ctx = BuildContext {
        id: "sanitizer".into(),
        pipeline: Some("traces".into()),
    };
    let mut p =
        metrics::with_local_recorder(&recorder, || SanitizerProcessorFactory.build(config, &ctx))
            .expect("sanitizer should build");
    let mut out = Emitter::default();
    let mut dropped = Dropped::default();
    p.process(input, &mut out, &mut dropped)
        .await
        .expect("the sanitizer never refuses");
    assert_eq!(dropped.total(), 0);
    let mut batches: Vec<TraceBatch> = out.drain().collect();
    (batches.remove(0), handle.render())
}

/// Sanitizes one string attribute `key` and returns its new value.
async fn one(yaml: &str, key: &str, value: &str) -> String {
    let (out, _) = run_full(yaml, wrap(vec![], span_with("op", vec![kv(key, s(value))]))).await;
    text(&the_span(&out).attributes, key)
}

fn the_span(b: &TraceBatch) -> &Span {
    &b.resource_spans()[0].scope_spans[0].spans[0]
}

fn text(list: &[KeyValue], key: &str) -> String {
    match list
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    {
        Some(Value::StringValue(v)) => v.clone(),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

#[tokio::test]
async fn credit_cards_are_masked_only_when_luhn_valid() {
    let y = "detectors: [credit_card]";
    assert_eq!(one(y, "card", "4111 1111 1111 1111").await, "****");
    assert_eq!(
        one(y, "card", "paid with 4111111111111111.").await,
        "paid with ****."
    );
    assert_eq!(one(y, "card", "5500-0000-0000-0004").await, "****");
    assert_eq!(
        one(y, "order", "order 4111111111111112").await,
        "order 4111111111111112"
    );
    assert_eq!(
        one(y, "order", "1234567890123456789012").await,
        "1234567890123456789012"
    );
    assert_eq!(
        one(y, "short", "79927398713").await,
        "79927398713",
        "11 digits is no card"
    );
    assert!(luhn_valid("4111-1111-1111-1111"));
    assert!(!luhn_valid("4111-1111-1111-1112"));
    assert!(!luhn_valid("411111111111"), "12 digits is too short");
}

#[tokio::test]
async fn each_detector_masks_its_secret_and_leaves_look_alikes() {
    let cases: [(&str, &str, &str, &str); 8] = [
        (
            "email",
            "contact jane.doe+x@mail.example.org now",
            "contact **** now",
            "no at sign here",
        ),
        (
            "jwt",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
            "****",
            "eyJ-not.a-token",
        ),
        (
            "bearer_token",
            "Bearer abc.def-123",
            "Bearer ****",
            "the bearer of certificates",
        ),
        (
            "ipv4",
            "from 10.1.2.3:80",
            "from ****:80",
            "version 1.2.3 and 999.1.1.1",
        ),
        (
            "ipv6",
            "peer 2001:db8::1 up",
            "peer **** up",
            "at 12:30:45 std::fmt",
        ),
        ("ipv6", "[fe80::1%eth0]", "[****%eth0]", "a::b::c"),
        (
            "aws_access_key",
            "key=AKIAIOSFODNN7EXAMPLE",
            "key=****",
            "AKIAshort",
        ),
        ("email", "a@b.c", "****", "@handle"),
    ];
    for (detector, secret, masked, look_alike) in cases {
        let y = format!("detectors: [{detector}]");
        assert_eq!(
            one(&y, "v", secret).await,
            masked,
            "{detector} on {secret:?}"
        );
        assert_eq!(
            one(&y, "v", look_alike).await,
            look_alike,
            "{detector} on {look_alike:?}"
        );
    }
}

#[tokio::test]
async fn detectors_that_are_off_do_not_run() {
    assert_eq!(one("detectors: [jwt]", "v", "a@b.co").await, "a@b.co");
}

#[tokio::test]
async fn sql_literals_are_replaced_keeping_the_shape() {
    let y = "db_statement: true";
    assert_eq!(
        one(
            y,
            "db.statement",
            "SELECT * FROM t WHERE a = 'x' AND b IN (1,2,3)"
        )
        .await,
        "SELECT * FROM t WHERE a = ? AND b IN (?)"
    );
    assert_eq!(
        one(
            y,
            "db.query.text",
            "SELECT * FROM users WHERE email='a@b.c' AND id=42"
        )
        .await,
        "SELECT * FROM users WHERE email=? AND id=?"
    );
    assert_eq!(
        one(y, "note", "id=42").await,
        "id=42",
        "other keys are not SQL"
    );
    assert_eq!(
        one("{}", "db.statement", "id=42").await,
        "id=42",
        "off by default"
    );
}

#[tokio::test]
async fn url_query_values_are_masked_in_attributes_and_span_names() {
    let y = "url_query: true";
    assert_eq!(
        one(y, "url.full", "https://u:p@api.x/v1?token=abc&page=2").await,
        "https://****@api.x/v1?token=****&page=****"
    );
    assert_eq!(
        one(y, "http.target", "/login?next=/home").await,
        "/login?next=****"
    );
    assert_eq!(one(y, "url.query", "q=secret").await, "q=****");
    assert_eq!(one(y, "other", "/x?token=abc").await, "/x?token=abc");
    let span = span_with("GET /reset?token=abc", vec![]);
    let (out, _) = run_full(y, wrap(vec![], span)).await;
    assert_eq!(the_span(&out).name, "GET /reset?token=****");
    let (out, _) = run_full(y, wrap(vec![], span_with("done?", vec![]))).await;
    assert_eq!(the_span(&out).name, "done?");
}

#[tokio::test]
async fn blocked_values_allowed_values_and_blocked_keys() {
    let y = r#"
detectors: [email]
blocked_values: ["(?i)password=(?P<secret>\\S+)", "sk_live_[a-z0-9]+"]
allowed_values: ["@example\\.com$"]
blocked_key_patterns: ["(?i)secret"]
"#;
    assert_eq!(
        one(y, "log", "user password=hunter2 ok").await,
        "user password=**** ok"
    );
    assert_eq!(one(y, "log", "key sk_live_abc1").await, "key ****");
    assert_eq!(one(y, "who", "ops@example.com").await, "ops@example.com");
    assert_eq!(one(y, "who", "ops@corp.io").await, "****");
    assert_eq!(one(y, "Client-Secret", "plain").await, "****");

    let nested = AnyValue {
        value: Some(Value::KvlistValue(KeyValueList {
            values: vec![
                kv(
                    "secret_token",
                    AnyValue {
                        value: Some(Value::IntValue(1234)),
                    },
                ),
                kv(
                    "list",
                    AnyValue {
                        value: Some(Value::ArrayValue(ArrayValue {
                            values: vec![s("x@corp.io"), s("fine")],
                        })),
                    },
                ),
            ],
        })),
    };
    let (out, metrics) = run_full(y, wrap(vec![], span_with("op", vec![kv("ctx", nested)]))).await;
    let Some(Value::KvlistValue(list)) = the_span(&out).attributes[0]
        .value
        .as_ref()
        .and_then(|v| v.value.clone())
    else {
        panic!("ctx should stay a kvlist");
    };
    assert_eq!(text(&list.values, "secret_token"), "****");
    let Some(Value::ArrayValue(array)) =
        list.values[1].value.as_ref().and_then(|v| v.value.clone())
    else {
        panic!("list should stay an array");
    };
    assert_eq!(array.values, vec![s("****"), s("fine")]);
    assert!(
        metrics.contains(r#"{processor="sanitizer",detector="blocked_key"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"{processor="sanitizer",detector="email"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn hashing_is_stable_per_salt_and_idempotent() {
    let y = |salt: &str| format!("detectors: [email]\nmask: hash\nhash_salt: {salt}");
    let a = one(&y("s1"), "v", "to a@b.io").await;
    let b = one(&y("s1"), "v", "to a@b.io").await;
    let c = one(&y("s2"), "v", "to a@b.io").await;
    assert_eq!(a, b);
    assert_ne!(a, c);
    let hash = a.strip_prefix("to ").expect("the prefix is kept");
    assert_eq!(hash.len(), 64);
    assert_eq!(
        one(&y("s1"), "v", &a).await,
        a,
        "a hash is not hashed again"
    );
}

#[tokio::test]
async fn every_scope_is_sanitized_and_summarised() {
    let span = Span {
        name: "notify a@b.io".into(),
        attributes: vec![
            kv("user", s("a@b.io")),
            kv("n", s("ok")),
            kv("cc", s("x@y.io")),
        ],
        events: vec![span::Event {
            name: "mail to c@d.io".into(),
            attributes: vec![kv("to", s("c@d.io"))],
            ..Default::default()
        }],
        links: vec![span::Link {
            attributes: vec![kv("user", s("e@f.io"))],
            ..Default::default()
        }],
        status: Some(Status {
            message: "bounce from g@h.io".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let resource = vec![
        kv("owner", s("team@corp.io")),
        kv("service.name", s("mail")),
        kv("tenant.id", s("acme")),
    ];
    let yaml = "detectors: [email]\nsummary: true\nblocked_key_patterns: ['^tenant', 'name$']";
    let (out, metrics) = run_full(yaml, wrap(resource, span)).await;
    let r = &out.resource_spans()[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    assert_eq!(text(r, "owner"), "****");
    assert_eq!(text(r, "service.name"), "mail", "never masked");
    assert_eq!(text(r, "tenant.id"), "acme", "never masked");
    let sp = the_span(&out);
    assert_eq!(sp.name, "notify ****");
    assert_eq!(sp.events[0].name, "mail to ****");
    assert_eq!(text(&sp.events[0].attributes, "to"), "****");
    assert_eq!(text(&sp.links[0].attributes, "user"), "****");
    assert_eq!(sp.status.as_ref().unwrap().message, "bounce from ****");
    let count = sp
        .attributes
        .iter()
        .find(|kv| kv.key == "sanitizer.masked.count");
    assert_eq!(
        count.and_then(|kv| kv.value.clone()),
        Some(AnyValue {
            value: Some(Value::IntValue(4))
        })
    );
    assert_eq!(text(&sp.attributes, "sanitizer.masked.keys"), "cc,to,user");
    // resource 1 + span attrs 2 + event name and attr 2 + link 1 + span name 1 + status 1
    assert!(
        metrics.contains(
            r#"spanline_sanitizer_masked_values_total{processor="sanitizer",detector="email"} 8"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_issue_scenario_leaves_no_secret_anywhere() {
    let y = "detectors: [credit_card, email, jwt, bearer_token, aws_access_key]\ndb_statement: true\nurl_query: true";
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
    let span = Span {
        name: "GET /cb?token=tok123".into(),
        attributes: vec![
            kv("card.spaced", s("4111 1111 1111 1111")),
            kv("card.plain", s("4111111111111111")),
            kv("order.id", s("1234567812345678")),
            kv("user.email", s("jane@shop.io")),
            kv(
                "http.request.header.authorization",
                s(&format!("Bearer {jwt}")),
            ),
            kv("url.full", s("https://shop.io/cb?token=tok123")),
            kv(
                "db.statement",
                s("SELECT * FROM users WHERE email='a@b.c' AND id=42"),
            ),
        ],
        events: vec![span::Event {
            name: "log".into(),
            attributes: vec![kv("message", s(&format!("jwt {jwt} for jane@shop.io")))],
            ..Default::default()
        }],
        ..Default::default()
    };
    let (out, _) = run_full(y, wrap(vec![], span)).await;
    let dump = format!("{:?}", out.resource_spans());
    for secret in ["4111", "jane@shop.io", jwt, "tok123", "a@b.c", "42"] {
        assert!(!dump.contains(secret), "{secret} leaked: {dump}");
    }
    let sp = the_span(&out);
    assert_eq!(
        text(&sp.attributes, "order.id"),
        "1234567812345678",
        "fails Luhn, kept"
    );
    assert_eq!(
        text(&sp.attributes, "db.statement"),
        "SELECT * FROM users WHERE email=? AND id=?"
    );
}

#[tokio::test]
async fn clean_values_are_left_untouched() {
    let input = wrap(
        vec![kv("service.name", s("api"))],
        span_with("GET /users", vec![kv("http.route", s("/users/{id}"))]),
    );
    let expected = input.clone();
    let (out, metrics) = run_full(
        "detectors: [credit_card, email, jwt, bearer_token, ipv4, ipv6, aws_access_key]",
        input,
    )
    .await;
    assert_eq!(out, expected);
    let counted: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("spanline_sanitizer_masked_values_total{"))
        .collect();
    assert_eq!(
        counted.len(),
        7,
        "one series per enabled detector: {metrics}"
    );
    assert!(counted.iter().all(|l| l.ends_with("} 0")), "{metrics}");
}

#[test]
fn validation_reports_bad_regexes_and_risky_settings() {
    let y = r#"
detectors: [email, email]
blocked_values: ["("]
blocked_key_patterns: ["ok", "[z-a]"]
allowed_values: ["+"]
mask: hash
"#;
    let config: SanitizerConfig = serde_yaml::from_str(y).unwrap();
    let mut problems = Problems::new();
    config.validate(&mut problems);
    let list = problems.into_vec();
    let paths: Vec<(&str, Severity)> = list.iter().map(|p| (p.path.as_str(), p.severity)).collect();
    assert_eq!(
        paths,
        [
            ("blocked_values[0]", Severity::Error),
            ("blocked_key_patterns[1]", Severity::Error),
            ("allowed_values[0]", Severity::Error),
            ("hash_salt", Severity::Warning),
            ("detectors[1]", Severity::Warning),
        ],
        "{list:#?}"
    );
    let mut problems = Problems::new();
    SanitizerConfig::default().validate(&mut problems);
    let list = problems.into_vec();
    assert_eq!(list.len(), 1);
    assert!(list[0].message.contains("changes nothing"));
}

#[test]
fn example_yaml_parses_and_validates_cleanly() {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(SanitizerProcessorFactory::EXAMPLE_YAML).unwrap();
    let config: SanitizerConfig = serde_yaml::from_value(doc["sanitizer"].clone()).unwrap();
    let mut problems = Problems::new();
    config.validate(&mut problems);
    assert!(problems.into_vec().is_empty());
    let err = serde_yaml::from_str::<SanitizerConfig>("detectors: [ssn]")
        .unwrap_err()
        .to_string();
    assert!(err.contains("ssn"), "{err}");
}
