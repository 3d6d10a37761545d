//! Jaeger's query-service JSON (the v1 UI API Grafana's Jaeger data source reads), built from OTLP spans.
//!
//! Field names follow Jaeger's `model/json` package; the mapping of OTLP onto Jaeger's tags
//! (span kind, status, scope) follows the OpenTelemetry Collector's Jaeger translator.

use base64::Engine;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, span, status};
use serde_json::{Map, Value, json};

/// Jaeger's UI turns integers beyond JavaScript's safe range into strings, as we do.
const JS_MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// The Jaeger flag for a sampled span: every stored span was sampled.
const SAMPLED: u32 = 1;

/// One trace in Jaeger's shape: spans, and the processes (resources) they refer to.
pub fn jaeger_trace(trace_id: &[u8; 16], resource_spans: &[ResourceSpans]) -> Value {
    let trace_hex = hex(trace_id);
    let mut processes = Processes::default();
    let mut spans = Vec::new();
    for rs in resource_spans {
        let process_id = processes.id_for(rs.resource.as_ref());
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                spans.push(span_json(&trace_hex, s, ss.scope.as_ref(), &process_id));
            }
        }
    }
    json!({
        "traceID": trace_hex,
        "spans": spans,
        "processes": processes.into_json(),
        "warnings": null,
    })
}

/// Jaeger's response envelope around successful data.
pub fn jaeger_envelope(data: Value, total: usize) -> Value {
    json!({ "data": data, "total": total, "limit": 0, "offset": 0, "errors": null })
}

/// Jaeger's response envelope for a failure.
pub fn jaeger_error(code: u16, message: &str) -> Value {
    json!({
        "data": null,
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": [{ "code": code, "msg": message }],
    })
}

/// Distinct resources in first-seen order, named `p1`, `p2`, ...
#[derive(Default)]
struct Processes<'a> {
    seen: Vec<Option<&'a Resource>>,
}

impl<'a> Processes<'a> {
    fn id_for(&mut self, resource: Option<&'a Resource>) -> String {
        let index = match self.seen.iter().position(|r| *r == resource) {
            Some(index) => index,
            None => {
                self.seen.push(resource);
                self.seen.len() - 1
            }
        };
        format!("p{}", index + 1)
    }

    fn into_json(self) -> Value {
        let mut map = Map::new();
        for (i, resource) in self.seen.into_iter().enumerate() {
            map.insert(format!("p{}", i + 1), process_json(resource));
        }
        Value::Object(map)
    }
}

fn process_json(resource: Option<&Resource>) -> Value {
    let attributes = resource.map(|r| r.attributes.as_slice()).unwrap_or(&[]);
    let mut service = String::new();
    let mut tags = Vec::new();
    for kv in attributes {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) if kv.key == "service.name" => {
                service = s.clone();
            }
            _ => tags.push(tag(&kv.key, kv.value.as_ref())),
        }
    }
    if service.is_empty() {
        // The Collector's translator names resources without a service this way.
        service = "OTLPResourceNoServiceName".to_string();
    }
    json!({ "serviceName": service, "tags": tags })
}

fn span_json(
    trace_hex: &str,
    s: &Span,
    scope: Option<&InstrumentationScope>,
    process_id: &str,
) -> Value {
    let span_trace = if s.trace_id.is_empty() {
        trace_hex.to_string()
    } else {
        hex(&s.trace_id)
    };
    json!({
        "traceID": span_trace,
        "spanID": hex(&s.span_id),
        "operationName": s.name,
        "references": references(&span_trace, s),
        "startTime": s.start_time_unix_nano / 1_000,
        "duration": s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) / 1_000,
        "tags": span_tags(s, scope),
        "logs": logs(s),
        "processID": process_id,
        "warnings": null,
        "flags": SAMPLED,
    })
}

/// The parent as `CHILD_OF`, then each link as `FOLLOWS_FROM`.
fn references(trace_hex: &str, s: &Span) -> Vec<Value> {
    let mut refs = Vec::new();
    if !s.parent_span_id.is_empty() {
        refs.push(reference(
            "CHILD_OF",
            trace_hex.to_string(),
            &s.parent_span_id,
        ));
    }
    for link in &s.links {
        refs.push(reference(
            "FOLLOWS_FROM",
            hex(&link.trace_id),
            &link.span_id,
        ));
    }
    refs
}

fn reference(ref_type: &str, trace_hex: String, span_id: &[u8]) -> Value {
    json!({ "refType": ref_type, "traceID": trace_hex, "spanID": hex(span_id) })
}

/// Span attributes, then what Jaeger has no field for: scope, kind, status, trace state.
fn span_tags(s: &Span, scope: Option<&InstrumentationScope>) -> Vec<Value> {
    let mut tags: Vec<Value> = s
        .attributes
        .iter()
        .map(|kv| tag(&kv.key, kv.value.as_ref()))
        .collect();
    if let Some(scope) = scope.filter(|scope| !scope.name.is_empty()) {
        // Both spellings: older Jaeger UIs and dashboards know only `otel.library.*`.
        tags.push(string_tag("otel.scope.name", &scope.name));
        tags.push(string_tag("otel.library.name", &scope.name));
        if !scope.version.is_empty() {
            tags.push(string_tag("otel.scope.version", &scope.version));
            tags.push(string_tag("otel.library.version", &scope.version));
        }
    }
    if let Some(kind) = kind_name(s.kind) {
        tags.push(string_tag("span.kind", kind));
    }
    status_tags(s, &mut tags);
    if !s.trace_state.is_empty() {
        tags.push(string_tag("w3c.tracestate", &s.trace_state));
    }
    tags
}

fn kind_name(kind: i32) -> Option<&'static str> {
    match span::SpanKind::try_from(kind).ok()? {
        span::SpanKind::Unspecified => None,
        span::SpanKind::Internal => Some("internal"),
        span::SpanKind::Server => Some("server"),
        span::SpanKind::Client => Some("client"),
        span::SpanKind::Producer => Some("producer"),
        span::SpanKind::Consumer => Some("consumer"),
    }
}

fn status_tags(s: &Span, tags: &mut Vec<Value>) {
    let Some(st) = s.status.as_ref() else {
        return;
    };
    match status::StatusCode::try_from(st.code) {
        Ok(status::StatusCode::Error) => {
            tags.push(json!({ "key": "error", "type": "bool", "value": true }));
            tags.push(string_tag("otel.status_code", "ERROR"));
        }
        Ok(status::StatusCode::Ok) => tags.push(string_tag("otel.status_code", "OK")),
        Ok(status::StatusCode::Unset) | Err(_) => return,
    }
    if !st.message.is_empty() {
        tags.push(string_tag("otel.status_description", &st.message));
    }
}

/// Events as logs: an `event` field with the name, then the event's attributes.
fn logs(s: &Span) -> Vec<Value> {
    let mut logs = Vec::with_capacity(s.events.len());
    for event in &s.events {
        let mut fields = vec![string_tag("event", &event.name)];
        fields.extend(
            event
                .attributes
                .iter()
                .map(|kv| tag(&kv.key, kv.value.as_ref())),
        );
        logs.push(json!({ "timestamp": event.time_unix_nano / 1_000, "fields": fields }));
    }
    logs
}

fn string_tag(key: &str, value: &str) -> Value {
    json!({ "key": key, "type": "string", "value": value })
}

/// One typed Jaeger key-value. Arrays and maps become JSON text, as the Collector does.
fn tag(key: &str, value: Option<&AnyValue>) -> Value {
    use any_value::Value as V;
    let (kind, value) = match value.and_then(|v| v.value.as_ref()) {
        None => ("string", json!("")),
        Some(V::StringValue(s)) => ("string", json!(s)),
        Some(V::BoolValue(b)) => ("bool", json!(b)),
        Some(V::IntValue(i)) if (-JS_MAX_SAFE_INTEGER..=JS_MAX_SAFE_INTEGER).contains(i) => {
            ("int64", json!(i))
        }
        Some(V::IntValue(i)) => ("int64", json!(i.to_string())),
        Some(V::DoubleValue(d)) if d.is_finite() => ("float64", json!(d)),
        Some(V::DoubleValue(d)) => ("string", json!(d.to_string())),
        Some(V::BytesValue(b)) => (
            "binary",
            json!(base64::engine::general_purpose::STANDARD.encode(b)),
        ),
        Some(V::ArrayValue(a)) => ("string", json!(json_text(a))),
        Some(V::KvlistValue(k)) => ("string", json!(json_text(k))),
        Some(V::StringValueStrindex(i)) => ("int64", json!(i)),
    };
    json!({ "key": key, "type": kind, "value": value })
}

fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValue, KeyValueList};
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Status};

    const TRACE: [u8; 16] = [0xaa; 16];
    const TRACE_HEX: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn text(s: &str) -> any_value::Value {
        any_value::Value::StringValue(s.to_string())
    }

    fn resource(service: &str, host: &str) -> Resource {
        Resource {
            attributes: vec![
                kv("service.name", text(service)),
                kv("host.name", text(host)),
            ],
            ..Default::default()
        }
    }

    fn span(id: u8, parent: Option<u8>) -> Span {
        Span {
            trace_id: TRACE.to_vec(),
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: format!("op-{id}"),
            start_time_unix_nano: 1_700_000_000_000_001_999,
            end_time_unix_nano: 1_700_000_000_250_001_999,
            ..Default::default()
        }
    }

    fn batch(resource: Resource, scope: InstrumentationScope, spans: Vec<Span>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }

    fn scope(name: &str, version: &str) -> InstrumentationScope {
        InstrumentationScope {
            name: name.to_string(),
            version: version.to_string(),
            ..Default::default()
        }
    }

    fn find_tag<'a>(tags: &'a Value, key: &str) -> Option<&'a Value> {
        tags.as_array()?.iter().find(|t| t["key"] == key)
    }

    #[test]
    fn spans_carry_ids_times_references_and_process() {
        let mut child = span(2, Some(1));
        child.links.push(span::Link {
            trace_id: vec![0xbb; 16],
            span_id: vec![3; 8],
            ..Default::default()
        });
        let rs = [batch(
            resource("cart", "h1"),
            scope("lib", ""),
            vec![span(1, None), child],
        )];
        let trace = jaeger_trace(&TRACE, &rs);
        assert_eq!(trace["traceID"], TRACE_HEX);
        assert_eq!(trace["warnings"], Value::Null);
        let root = &trace["spans"][0];
        assert_eq!(root["traceID"], TRACE_HEX);
        assert_eq!(root["spanID"], "0101010101010101");
        assert_eq!(root["operationName"], "op-1");
        assert_eq!(root["references"], json!([]));
        assert_eq!(root["startTime"], 1_700_000_000_000_001u64);
        assert_eq!(root["duration"], 250_000);
        assert_eq!(root["processID"], "p1");
        assert_eq!(root["flags"], 1);
        assert_eq!(root["warnings"], Value::Null);
        assert_eq!(root["logs"], json!([]));
        assert_eq!(
            trace["spans"][1]["references"],
            json!([
                { "refType": "CHILD_OF", "traceID": TRACE_HEX, "spanID": "0101010101010101" },
                { "refType": "FOLLOWS_FROM", "traceID": "bb".repeat(16), "spanID": "0303030303030303" },
            ])
        );
        assert_eq!(
            trace["processes"],
            json!({ "p1": { "serviceName": "cart", "tags": [
                { "key": "host.name", "type": "string", "value": "h1" }
            ] } })
        );
    }

    #[test]
    fn equal_resources_share_a_process() {
        let rs = [
            batch(resource("cart", "h1"), scope("a", ""), vec![span(1, None)]),
            batch(
                resource("shop", "h2"),
                scope("a", ""),
                vec![span(2, Some(1))],
            ),
            batch(
                resource("cart", "h1"),
                scope("b", ""),
                vec![span(3, Some(1))],
            ),
        ];
        let trace = jaeger_trace(&TRACE, &rs);
        let ids: Vec<&Value> = (0..3).map(|i| &trace["spans"][i]["processID"]).collect();
        assert_eq!(ids, [&json!("p1"), &json!("p2"), &json!("p1")]);
        assert_eq!(trace["processes"]["p2"]["serviceName"], "shop");
        assert_eq!(trace["processes"].as_object().unwrap().len(), 2);
    }

    #[test]
    fn kind_status_and_scope_become_tags() {
        let mut s = span(1, None);
        s.kind = span::SpanKind::Client as i32;
        s.status = Some(Status {
            code: status::StatusCode::Error as i32,
            message: "timeout".to_string(),
        });
        s.trace_state = "k=v".to_string();
        let trace = jaeger_trace(
            &TRACE,
            &[batch(
                resource("cart", "h"),
                scope("otel-go", "1.2"),
                vec![s],
            )],
        );
        let tags = &trace["spans"][0]["tags"];
        let expected = [
            ("otel.scope.name", json!("otel-go")),
            ("otel.library.name", json!("otel-go")),
            ("otel.scope.version", json!("1.2")),
            ("otel.library.version", json!("1.2")),
            ("span.kind", json!("client")),
            ("otel.status_code", json!("ERROR")),
            ("otel.status_description", json!("timeout")),
            ("w3c.tracestate", json!("k=v")),
        ];
        for (key, value) in expected {
            let found = find_tag(tags, key).unwrap_or_else(|| panic!("tag {key} missing"));
            assert_eq!(found["value"], value, "{key}");
            assert_eq!(found["type"], "string", "{key}");
        }
        assert_eq!(
            find_tag(tags, "error"),
            Some(&json!({ "key": "error", "type": "bool", "value": true }))
        );
    }

    #[test]
    fn ok_and_unset_statuses_do_not_mark_errors() {
        let mut ok = span(1, None);
        ok.status = Some(Status {
            code: status::StatusCode::Ok as i32,
            message: String::new(),
        });
        let unset = span(2, Some(1));
        let trace = jaeger_trace(
            &TRACE,
            &[batch(resource("s", "h"), scope("", ""), vec![ok, unset])],
        );
        let ok_tags = &trace["spans"][0]["tags"];
        assert_eq!(
            find_tag(ok_tags, "otel.status_code").unwrap()["value"],
            "OK"
        );
        assert!(find_tag(ok_tags, "error").is_none());
        assert!(
            find_tag(ok_tags, "otel.scope.name").is_none(),
            "empty scopes add nothing"
        );
        assert_eq!(trace["spans"][1]["tags"], json!([]));
    }

    #[test]
    fn attribute_values_keep_their_jaeger_types() {
        let mut s = span(1, None);
        s.attributes = vec![
            kv("s", text("x")),
            kv("b", any_value::Value::BoolValue(false)),
            kv("i", any_value::Value::IntValue(-42)),
            kv("huge", any_value::Value::IntValue(i64::MAX)),
            kv("f", any_value::Value::DoubleValue(0.25)),
            kv("nan", any_value::Value::DoubleValue(f64::NAN)),
            kv("raw", any_value::Value::BytesValue(vec![0xff, 0x00])),
            kv(
                "list",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(text("a")),
                    }],
                }),
            ),
            kv(
                "map",
                any_value::Value::KvlistValue(KeyValueList {
                    values: vec![kv("k", text("v"))],
                }),
            ),
        ];
        let trace = jaeger_trace(&TRACE, &[batch(resource("s", "h"), scope("", ""), vec![s])]);
        let tags = &trace["spans"][0]["tags"];
        let expect = |key: &str, kind: &str, value: Value| {
            assert_eq!(
                find_tag(tags, key),
                Some(&json!({ "key": key, "type": kind, "value": value })),
                "{key}"
            );
        };
        expect("s", "string", json!("x"));
        expect("b", "bool", json!(false));
        expect("i", "int64", json!(-42));
        expect("huge", "int64", json!("9223372036854775807"));
        expect("f", "float64", json!(0.25));
        expect("nan", "string", json!("NaN"));
        expect("raw", "binary", json!("/wA="));
        expect(
            "list",
            "string",
            json!(r#"{"values":[{"stringValue":"a"}]}"#),
        );
        expect(
            "map",
            "string",
            json!(r#"{"values":[{"key":"k","value":{"stringValue":"v"}}]}"#),
        );
    }

    #[test]
    fn events_become_logs() {
        let mut s = span(1, None);
        s.events.push(span::Event {
            time_unix_nano: 1_700_000_000_100_000_000,
            name: "exception".to_string(),
            attributes: vec![kv("exception.message", text("oops"))],
            ..Default::default()
        });
        let trace = jaeger_trace(&TRACE, &[batch(resource("s", "h"), scope("", ""), vec![s])]);
        assert_eq!(
            trace["spans"][0]["logs"],
            json!([{ "timestamp": 1_700_000_000_100_000u64, "fields": [
                { "key": "event", "type": "string", "value": "exception" },
                { "key": "exception.message", "type": "string", "value": "oops" },
            ] }])
        );
    }

    #[test]
    fn resources_without_a_service_get_the_collector_placeholder() {
        let trace = jaeger_trace(
            &TRACE,
            &[batch(
                Resource::default(),
                scope("", ""),
                vec![span(1, None)],
            )],
        );
        assert_eq!(
            trace["processes"]["p1"],
            json!({ "serviceName": "OTLPResourceNoServiceName", "tags": [] })
        );
    }

    #[test]
    fn envelopes_match_jaeger() {
        assert_eq!(
            jaeger_envelope(json!(["cart"]), 1),
            json!({ "data": ["cart"], "total": 1, "limit": 0, "offset": 0, "errors": null })
        );
        assert_eq!(
            jaeger_error(404, "trace not found"),
            json!({
                "data": null, "total": 0, "limit": 0, "offset": 0,
                "errors": [{ "code": 404, "msg": "trace not found" }]
            })
        );
    }
}
