//! Secrets sent over OTLP/gRPC to a real `spanline run` never reach the exporter: card
//! numbers, emails, JWTs, URL tokens and SQL literals are masked in every attribute, span name,
//! event and status, SQL keeps its shape, and a Luhn-failing order id is left alone.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use crate::support::{Capture, Spanline, client, free_port};

const CARD_SPACED: &str = "4111 1111 1111 1111";
const CARD_PLAIN: &str = "4111111111111111";
const EMAIL: &str = "jane.doe@shop.io";
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
const URL_TOKEN: &str = "tok-s3cr3t-77";
const SQL: &str = "SELECT * FROM users WHERE email='a@b.c' AND id=42";
const SQL_SHAPE: &str = "SELECT * FROM users WHERE email=? AND id=?";
/// 16 digits that fail the Luhn check: an order id, not a card.
const ORDER_ID: &str = "1234567812345678";

fn config(grpc: u16, admin: u16, downstream: u16) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:{grpc} }}
processors:
  sanitizer:
    detectors: [credit_card, email, jwt, bearer_token, aws_access_key]
    db_statement: true
    url_query: true
    summary: true
  batch:
    timeout: 100ms
exporters:
  otlp:
    endpoint: http://127.0.0.1:{downstream}
    tls: {{ insecure: true }}
    compression: none
service:
  pipelines:
    traces: {{ receivers: [otlp], processors: [sanitizer, batch], exporters: [otlp] }}
  telemetry:
    metrics: {{ address: 127.0.0.1:{admin} }}
"
    )
}

fn s(text: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(text.to_string())),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value,
        ..Default::default()
    }
}

/// One span carrying every secret in every place a secret can hide.
fn leaky_request() -> ExportTraceServiceRequest {
    let span = Span {
        trace_id: vec![3; 16],
        span_id: vec![4; 8],
        name: format!("GET /reset?token={URL_TOKEN}"),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_100_000_000,
        attributes: vec![
            kv("card.spaced", s(CARD_SPACED)),
            kv("payment.note", s(&format!("paid with {CARD_PLAIN} today"))),
            kv("user.email", s(EMAIL)),
            kv(
                "http.request.header.authorization",
                s(&format!("Bearer {JWT}")),
            ),
            kv("session", s(JWT)),
            kv(
                "url.full",
                s(&format!("https://shop.io/cb?token={URL_TOKEN}&page=2")),
            ),
            kv("db.statement", s(SQL)),
            kv("order.id", s(ORDER_ID)),
            kv(
                "cards",
                Some(AnyValue {
                    value: Some(any_value::Value::ArrayValue(ArrayValue {
                        values: vec![s(CARD_PLAIN).expect("value"), s("ok").expect("value")],
                    })),
                }),
            ),
        ],
        events: vec![Event {
            time_unix_nano: 1_700_000_000_050_000_000,
            name: format!("charged {CARD_SPACED} for {EMAIL}"),
            attributes: vec![
                kv("exception.message", s(&format!("token {JWT} of {EMAIL}"))),
                kv("card", s(CARD_PLAIN)),
            ],
            ..Default::default()
        }],
        status: Some(Status {
            message: format!("rejected {JWT}"),
            code: 2,
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("checkout")), kv("owner", s(EMAIL))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Every string the output holds, with where it was found.
fn all_strings(received: &[ResourceSpans]) -> Vec<(String, String)> {
    fn value(place: &str, v: &AnyValue, out: &mut Vec<(String, String)>) {
        match &v.value {
            Some(any_value::Value::StringValue(text)) => out.push((place.into(), text.clone())),
            Some(any_value::Value::ArrayValue(a)) => {
                a.values.iter().for_each(|item| value(place, item, out))
            }
            Some(any_value::Value::KvlistValue(l)) => attrs(place, &l.values, out),
            _ => {}
        }
    }
    fn attrs(place: &str, kvs: &[KeyValue], out: &mut Vec<(String, String)>) {
        for kv in kvs {
            if let Some(v) = &kv.value {
                value(&format!("{place}::{}", kv.key), v, out);
            }
        }
    }
    let mut out = Vec::new();
    for rs in received {
        if let Some(resource) = &rs.resource {
            attrs("resource", &resource.attributes, &mut out);
        }
        for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            out.push(("span name".into(), span.name.clone()));
            attrs("span", &span.attributes, &mut out);
            for event in &span.events {
                out.push(("event name".into(), event.name.clone()));
                attrs("event", &event.attributes, &mut out);
            }
            if let Some(status) = &span.status {
                out.push(("status".into(), status.message.clone()));
            }
        }
    }
    out
}

fn attribute<'a>(span: &'a Span, key: &str) -> &'a str {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(text)) => Some(text.as_str()),
                _ => None,
            },
        )
        .unwrap_or_else(|| panic!("span attribute {key} is missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_leaves_spanline_while_sql_and_order_ids_keep_their_shape() {
    let (grpc, admin, downstream) = (free_port(), free_port(), free_port());
    let capture = Capture::default();
    let _stop = capture.serve(downstream).await;
    let spanline = Spanline::start(
        &config(grpc, admin, downstream),
        &format!("127.0.0.1:{admin}"),
    );
    let mut client = client(grpc).await;
    client
        .export(leaky_request())
        .await
        .expect("spanline accepts the request");
    assert_eq!(
        capture.wait_for(1, Duration::from_secs(10)).await,
        1,
        "{}",
        spanline.logs()
    );

    let received = capture.received.lock().clone();
    let strings = all_strings(&received);
    let secrets = [CARD_SPACED, CARD_PLAIN, EMAIL, JWT, URL_TOKEN, "a@b.c"];
    for (place, text) in &strings {
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "{secret:?} leaked in {place}: {text:?}"
            );
        }
    }
    // The places that held secrets are still there, masked rather than dropped.
    assert!(strings.len() >= 15, "{strings:#?}");

    let span = &received[0].scope_spans[0].spans[0];
    assert_eq!(attribute(span, "db.statement"), SQL_SHAPE);
    assert_eq!(attribute(span, "order.id"), ORDER_ID);
    assert_eq!(attribute(span, "card.spaced"), "****");
    assert_eq!(attribute(span, "payment.note"), "paid with **** today");
    assert_eq!(
        attribute(span, "url.full"),
        "https://shop.io/cb?token=****&page=****"
    );
    assert_eq!(span.name, "GET /reset?token=****");
    assert!(
        spanline.metric("spanline_sanitizer_masked_values_total", &[]) >= 10.0,
        "{}",
        spanline.metrics()
    );
}
