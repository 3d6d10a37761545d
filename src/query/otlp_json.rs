//! Tempo's trace-by-id responses: OTLP JSON (`batches` and the v2 `trace` shape) and protobuf.
//!
//! The JSON comes from `opentelemetry-proto`'s `with-serde` feature, which writes OTLP JSON:
//! camelCase field names, trace and span ids in lowercase hex, `u64` nanosecond times as
//! decimal strings, `intValue` as a string, `bytesValue` in base64, enums (`kind`,
//! `status.code`) as integers — the forms Tempo writes and Grafana reads.

use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, TracesData};
use prost::Message;
use serde_json::{Value, json};

/// `GET /api/traces/{id}` as JSON: `{"batches":[ResourceSpans...]}`.
pub fn tempo_trace_json(resource_spans: &[ResourceSpans]) -> Value {
    json!({ "batches": resource_spans_json(resource_spans) })
}

/// `GET /api/v2/traces/{id}` as JSON: `{"trace":{"resourceSpans":[...]}}`.
pub fn tempo_trace_v2_json(resource_spans: &[ResourceSpans]) -> Value {
    json!({ "trace": { "resourceSpans": resource_spans_json(resource_spans) } })
}

fn resource_spans_json(resource_spans: &[ResourceSpans]) -> Value {
    // Serialising these generated types cannot fail: every map key is a string and
    // serde_json writes non-finite doubles as null.
    serde_json::to_value(resource_spans).unwrap_or(Value::Array(Vec::new()))
}

/// `GET /api/traces/{id}` as protobuf (`Accept: application/protobuf`, which Grafana sends).
///
/// Tempo answers with `tempopb.Trace { repeated ResourceSpans resourceSpans = 1; }`
/// (called `batches` in older Tempo), whose wire form is exactly OTLP's
/// `TracesData { repeated ResourceSpans resource_spans = 1; }`.
pub fn tempo_trace_protobuf(resource_spans: &[ResourceSpans]) -> Vec<u8> {
    traces_data(resource_spans).encode_to_vec()
}

/// `GET /api/v2/traces/{id}` as protobuf: `tempopb.TraceByIDResponse { Trace trace = 1; ... }`,
/// which newer Grafana decodes; the other fields (metrics, partial status) are left unset.
pub fn tempo_trace_v2_protobuf(resource_spans: &[ResourceSpans]) -> Vec<u8> {
    TraceByIdResponse {
        trace: Some(traces_data(resource_spans)),
    }
    .encode_to_vec()
}

fn traces_data(resource_spans: &[ResourceSpans]) -> TracesData {
    TracesData {
        resource_spans: resource_spans.to_vec(),
    }
}

/// The part of `tempopb.TraceByIDResponse` we fill in.
#[derive(Clone, PartialEq, prost::Message)]
struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    trace: Option<TracesData>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, any_value,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span, Status, span, status};

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn sample() -> Vec<ResourceSpans> {
        let span = Span {
            trace_id: (1..=16).collect(),
            span_id: vec![0xab; 8],
            parent_span_id: vec![0x01; 8],
            name: "GET /cart".to_string(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: 1_700_000_000_123_456_789,
            end_time_unix_nano: 1_700_000_000_223_456_789,
            attributes: vec![
                kv("http.status_code", any_value::Value::IntValue(500)),
                kv("payload", any_value::Value::BytesValue(vec![1, 2, 3])),
            ],
            status: Some(Status {
                code: status::StatusCode::Error as i32,
                message: "boom".to_string(),
            }),
            ..Default::default()
        };
        vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue("cart".into()),
                )],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "lib".to_string(),
                    ..Default::default()
                }),
                spans: vec![span],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }]
    }

    #[test]
    fn batches_hold_otlp_json_with_hex_ids_and_string_times() {
        let json = tempo_trace_json(&sample());
        let span = &json["batches"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "0102030405060708090a0b0c0d0e0f10");
        assert_eq!(span["spanId"], "abababababababab");
        assert_eq!(span["parentSpanId"], "0101010101010101");
        assert_eq!(span["startTimeUnixNano"], "1700000000123456789");
        assert_eq!(span["endTimeUnixNano"], "1700000000223456789");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["status"]["code"], 2);
        assert_eq!(span["status"]["message"], "boom");
        assert_eq!(span["attributes"][0]["key"], "http.status_code");
        assert_eq!(span["attributes"][0]["value"]["intValue"], "500");
        assert_eq!(span["attributes"][1]["value"]["bytesValue"], "AQID");
        let resource = &json["batches"][0]["resource"]["attributes"][0];
        assert_eq!(resource["value"]["stringValue"], "cart");
        assert_eq!(json["batches"][0]["scopeSpans"][0]["scope"]["name"], "lib");
    }

    #[test]
    fn v2_json_nests_resource_spans_under_trace() {
        let spans = sample();
        let v2 = tempo_trace_v2_json(&spans);
        let v1 = tempo_trace_json(&spans);
        assert_eq!(v2["trace"]["resourceSpans"], v1["batches"]);
        assert_eq!(
            tempo_trace_json(&[]),
            json!({ "batches": [] }),
            "an empty trace is an empty list"
        );
    }

    #[test]
    fn json_reads_back_as_the_same_spans() {
        let spans = sample();
        let json = tempo_trace_json(&spans);
        let back: Vec<ResourceSpans> = serde_json::from_value(json["batches"].clone()).unwrap();
        assert_eq!(back, spans);
    }

    #[test]
    fn protobuf_is_traces_data() {
        let spans = sample();
        let bytes = tempo_trace_protobuf(&spans);
        let decoded = TracesData::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.resource_spans, spans);
        // Field 1, length-delimited: the tag byte both TracesData and tempopb.Trace start with.
        assert_eq!(bytes[0], 0x0a);
    }

    #[test]
    fn v2_protobuf_wraps_the_trace_in_field_one() {
        let spans = sample();
        let bytes = tempo_trace_v2_protobuf(&spans);
        let decoded = TraceByIdResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.trace.unwrap().resource_spans, spans);
        let inner = tempo_trace_protobuf(&spans);
        assert_eq!(bytes[0], 0x0a);
        assert!(bytes.ends_with(&inner), "the body is the v1 message");
    }
}
