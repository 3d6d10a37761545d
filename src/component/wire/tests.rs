use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, EntityRef, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::scan::TenantClaim;
use super::view::{SpanView, request_layout};
use super::{append_resource_attribute, decode_request, scan_request, span_ids_problem};
use crate::component::tenant::TENANT_ATTRIBUTE;
use crate::store::testdata;

const START: u64 = 1_764_000_000_000_000_000;

/// Spans as SDKs send them, plus every kind of value, entity refs and schema urls.
fn request() -> ExportTraceServiceRequest {
    let mut resource_spans = testdata::batch(7, 6, 4, Some("acme"), START);
    let mut exotic = resource_spans[0].clone();
    exotic.schema_url = "https://opentelemetry.io/schemas/1.26.0".into();
    let resource = exotic.resource.as_mut().expect("resource");
    resource.dropped_attributes_count = 2;
    resource.entity_refs.push(EntityRef {
        schema_url: "s".into(),
        r#type: "k8s.pod".into(),
        id_keys: vec!["k8s.pod.uid".into()],
        description_keys: vec!["k8s.pod.name".into(), "k8s.node.name".into()],
    });
    let mut scope = exotic.scope_spans[0].scope.clone().expect("scope");
    scope.attributes.push(testdata::s("scope.key", "v"));
    scope.attributes.push(testdata::s("naïve.clé", "✓ ünïcödé"));
    scope.dropped_attributes_count = 1;
    exotic.scope_spans = vec![ScopeSpans {
        scope: Some(scope),
        spans: vec![testdata::exotic_span([3; 16], START)],
        schema_url: "scope-schema".into(),
    }];
    resource_spans.push(exotic);
    resource_spans.push(ResourceSpans::default());
    ExportTraceServiceRequest { resource_spans }
}

/// The scan refuses exactly what the decoder refuses, with the same error, and reports
/// what the decoded request holds.
fn assert_scan_agrees(bytes: &[u8], round: usize) {
    let scan = scan_request(bytes);
    let request = match decode_request(bytes) {
        Ok(request) => request,
        Err(error) => {
            assert_eq!(scan.err(), Some(error), "round {round}");
            return;
        }
    };
    let scan = scan.unwrap_or_else(|e| panic!("round {round}: decoded, but the scan says {e}"));
    let spans: Vec<_> = request
        .resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| &ss.spans))
        .collect();
    assert_eq!(scan.spans, spans.len(), "round {round}");
    let invalid = spans
        .iter()
        .filter(|s| span_ids_problem(&s.trace_id, &s.span_id).is_some())
        .count();
    assert_eq!(scan.invalid_spans, invalid, "round {round}");
    assert_eq!(scan.resources.len(), request.resource_spans.len());
    for (found, rs) in scan.resources.iter().zip(&request.resource_spans) {
        assert_eq!(found.tenant, claim_of(rs), "round {round}");
        // Each entry's body is the encoding of exactly that resource's spans.
        let body = ResourceSpans::decode(&bytes[found.body.clone()]).expect("body");
        assert_eq!(&body, rs, "round {round}");
    }
    assert_view_agrees(bytes, &request, round);
}

/// Reading a valid request in place finds the decoded request's spans, fields and
/// attribute keys, events and links.
fn assert_view_agrees(bytes: &[u8], request: &ExportTraceServiceRequest, round: usize) {
    let layout = request_layout(bytes).unwrap_or_else(|e| panic!("round {round}: {e}"));
    assert_eq!(layout.len(), request.resource_spans.len(), "round {round}");
    for (at, rs) in layout.iter().zip(&request.resource_spans) {
        assert_eq!(at.scopes.len(), rs.scope_spans.len(), "round {round}");
        for (scope, ss) in at.scopes.iter().zip(&rs.scope_spans) {
            assert_eq!(scope.spans.len(), ss.spans.len(), "round {round}");
            for (range, span) in scope.spans.iter().zip(&ss.spans) {
                let view = SpanView::read(&bytes[range.clone()]).expect("a valid span");
                let key = SpanView::sort_key(&bytes[range.clone()]).expect("a valid span");
                assert_eq!(key, (&span.trace_id[..], span.start_time_unix_nano));
                let status = span.status.clone().unwrap_or_default();
                assert_eq!(
                    (view.trace_id, view.span_id, view.parent_span_id, view.name),
                    (
                        &span.trace_id[..],
                        &span.span_id[..],
                        &span.parent_span_id[..],
                        span.name.as_str()
                    ),
                    "round {round}"
                );
                assert_eq!(
                    (view.start, view.end, view.kind, view.flags),
                    (
                        span.start_time_unix_nano,
                        span.end_time_unix_nano,
                        span.kind,
                        span.flags
                    ),
                    "round {round}"
                );
                assert_eq!(
                    (view.status_code, view.status_message),
                    (status.code, status.message.as_str()),
                    "round {round}"
                );
                assert_eq!(view_parts(&view), span_parts(span), "round {round}");
            }
        }
    }
}

/// What a span's repeated parts hold, as a view reads them: attribute keys, events' times
/// and names, links' span ids.
type Parts<'a> = (Vec<&'a str>, Vec<(u64, &'a str)>, Vec<&'a [u8]>);

fn view_parts<'a>(view: &SpanView<'a>) -> Parts<'a> {
    let (mut keys, mut events, mut links) = (Vec::new(), Vec::new(), Vec::new());
    view.for_each_attribute(|key, _| keys.push(key)).unwrap();
    view.for_each_event(|e| events.push((e.time, e.name)))
        .unwrap();
    view.for_each_link(|l| links.push(l.span_id)).unwrap();
    (keys, events, links)
}

/// The same parts of a decoded span.
fn span_parts(span: &Span) -> Parts<'_> {
    (
        span.attributes.iter().map(|kv| kv.key.as_str()).collect(),
        span.events
            .iter()
            .map(|e| (e.time_unix_nano, e.name.as_str()))
            .collect(),
        span.links.iter().map(|l| &l.span_id[..]).collect(),
    )
}

/// The `tenant.id` claim a decoded resource makes.
fn claim_of(rs: &ResourceSpans) -> TenantClaim<'_> {
    let attributes = rs.resource.iter().flat_map(|r| &r.attributes);
    let mut claims = attributes.filter(|kv| kv.key == TENANT_ATTRIBUTE);
    let first = claims.next();
    TenantClaim {
        count: usize::from(first.is_some()) + claims.count(),
        first: first.map(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(text)) => Some(text.as_str()),
                _ => None,
            },
        ),
    }
}

fn prost_decode(bytes: &[u8]) -> Option<Vec<u8>> {
    ExportTraceServiceRequest::decode(bytes)
        .ok()
        .map(|r| r.encode_to_vec())
}

#[test]
fn decodes_what_prost_decodes() {
    let request = request();
    let bytes = request.encode_to_vec();
    assert_eq!(decode_request(&bytes).expect("valid"), request);
    assert_eq!(
        decode_request(&[]).expect("empty"),
        ExportTraceServiceRequest::default()
    );
}

#[test]
fn a_message_sent_twice_is_merged_as_protobuf_says() {
    // Concatenated encodings are one message: repeated fields append, scalars keep the
    // last value, embedded messages merge.
    let first = request().encode_to_vec();
    let mut span_twice = request();
    let span = &mut span_twice.resource_spans[0].scope_spans[0].spans[0];
    let mut renamed = span.clone();
    renamed.name = "renamed".into();
    renamed.attributes.truncate(1);
    renamed.status = None;
    let mut bytes = span.encode_to_vec();
    bytes.extend(renamed.encode_to_vec());
    let merged = Span::decode(&bytes[..]).expect("prost");
    *span = merged;
    let mut both = first.clone();
    both.extend(span_twice.encode_to_vec());
    assert_eq!(
        decode_request(&both).expect("valid").encode_to_vec(),
        prost_decode(&both).expect("prost")
    );
}

#[test]
fn mutated_bytes_are_refused_or_decoded_exactly_as_prost_does() {
    let valid = request().encode_to_vec();
    let mut rng = StdRng::seed_from_u64(42);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..20_000 {
        let mut bytes = valid.clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..bytes.len());
            match rng.random_range(0..4) {
                0 => bytes[at] = rng.random(),
                1 => bytes.truncate(at),
                2 => bytes.insert(at, rng.random()),
                _ => {
                    let end = (at + rng.random_range(1..64)).min(bytes.len());
                    let copy = bytes[at..end].to_vec();
                    let to = rng.random_range(0..bytes.len());
                    bytes.splice(to..to, copy);
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
        assert_scan_agrees(&bytes, round);
        let ours = decode_request(&bytes).map(|r| r.encode_to_vec());
        match (ours, prost_decode(&bytes)) {
            (Ok(ours), Some(theirs)) => {
                assert!(ours == theirs, "round {round}: decoded differently");
                accepted += 1;
            }
            (Err(_), None) => refused += 1,
            (ours, theirs) => panic!(
                "round {round}: ours {:?}, prost {}",
                ours.map(|_| "accepted"),
                if theirs.is_some() {
                    "accepted"
                } else {
                    "refused"
                }
            ),
        }
    }
    // Both outcomes were exercised (most mutations break a length or a varint).
    assert!(accepted > 500 && refused > 10_000, "{accepted} {refused}");
}

#[test]
fn invalid_utf8_is_refused_naming_the_field_and_offset() {
    let mut request = request();
    request.resource_spans[0].scope_spans[0].spans[0].name = "ZZZZZZZZ".into();
    let mut bytes = request.encode_to_vec();
    let at = bytes
        .windows(8)
        .position(|w| w == b"ZZZZZZZZ")
        .expect("name");
    bytes[at + 3] = 0xff;
    assert!(prost_decode(&bytes).is_none());
    assert_scan_agrees(&bytes, 0);
    let error = decode_request(&bytes).expect_err("invalid");
    assert_eq!(
        error.to_string(),
        format!("invalid UTF-8 in Span.name at byte {}", at - 1)
    );
}

#[test]
fn values_nested_past_the_limit_are_refused_without_exhausting_the_stack() {
    let mut value = AnyValue {
        value: Some(any_value::Value::IntValue(1)),
    };
    for _ in 0..150 {
        value = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![value],
            })),
        };
    }
    let mut request = request();
    request.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(testdata::kv("deep", value.value.expect("array")));
    let bytes = request.encode_to_vec();
    assert!(prost_decode(&bytes).is_none());
    assert_scan_agrees(&bytes, 0);
    let error = decode_request(&bytes).expect_err("too deep");
    assert!(
        error
            .to_string()
            .starts_with("messages nested too deeply in AnyValue.array_value at byte"),
        "{error}"
    );
}

#[test]
fn random_bytes_are_refused_or_decoded_exactly_as_prost_does() {
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..50_000 {
        let len = rng.random_range(0..64);
        // Small field numbers and every wire type, so known fields, unknown fields and
        // groups all turn up.
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.random_bool(0.5) {
                    rng.random_range(0..0x40)
                } else {
                    rng.random()
                }
            })
            .collect();
        assert_scan_agrees(&bytes, round);
        let ours = decode_request(&bytes).map(|r| r.encode_to_vec());
        assert_eq!(
            ours.ok(),
            prost_decode(&bytes),
            "round {round}: {bytes:02x?}"
        );
    }
}

#[test]
fn the_scan_reports_spans_invalid_ids_and_tenant_claims() {
    let mut request = request();
    let spans: usize = request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum();
    request.resource_spans[0].scope_spans[0].spans[0].span_id = vec![0; 8];
    request.resource_spans[1].scope_spans[0].spans[1].trace_id = vec![1; 15];
    let attributes = &mut request.resource_spans[1]
        .resource
        .as_mut()
        .expect("resource")
        .attributes;
    attributes.push(testdata::kv(
        TENANT_ATTRIBUTE,
        any_value::Value::IntValue(7),
    ));
    let bytes = request.encode_to_vec();
    let scan = scan_request(&bytes).expect("valid");
    assert_eq!(scan.spans, spans);
    assert_eq!(scan.invalid_spans, 2);
    let claims: Vec<_> = scan.resources.iter().map(|r| r.tenant).collect();
    let acme = TenantClaim {
        count: 1,
        first: Some(Some("acme")),
    };
    assert_eq!(claims[0], acme);
    // The string claim comes first; the second one (not a string) is counted.
    assert_eq!(claims[1], TenantClaim { count: 2, ..acme });
    assert_eq!(claims.last(), Some(&TenantClaim::default()));
    assert_scan_agrees(&bytes, 0);
}

#[test]
fn an_appended_resource_attribute_decodes_as_one_more_attribute() {
    let mut request = request();
    let bytes = request.encode_to_vec();
    let scan = scan_request(&bytes).expect("valid");
    let last = scan.resources.len() - 1;
    // Every other resource, and the last one, which has no `resource` field at all.
    let values: Vec<Option<&str>> = (0..scan.resources.len())
        .map(|i| (i % 2 == 1 || i == last).then_some("tenant-ü"))
        .collect();
    let rewritten = append_resource_attribute(&bytes, &scan, TENANT_ATTRIBUTE, &values);
    for (rs, value) in request.resource_spans.iter_mut().zip(&values) {
        if let Some(value) = value {
            let resource = rs.resource.get_or_insert_default();
            resource
                .attributes
                .push(testdata::s(TENANT_ATTRIBUTE, value));
        }
    }
    assert_eq!(decode_request(&rewritten).expect("valid"), request);
    assert_eq!(
        prost_decode(&rewritten).expect("prost"),
        request.encode_to_vec()
    );
    assert_scan_agrees(&rewritten, 0);
}

#[test]
fn a_span_view_reads_attributes_events_and_links_spread_over_its_body() {
    // A span sent as two encodings: its attributes, events and links are in two runs
    // each, with other fields between them. The view reads each run and skips the rest.
    let first = testdata::exotic_span([3; 16], START);
    let mut second = first.clone();
    second.name = "renamed".into();
    second.attributes.truncate(1);
    second.events.truncate(1);
    let mut bytes = first.encode_to_vec();
    bytes.extend(second.encode_to_vec());
    let merged = Span::decode(&bytes[..]).expect("prost");
    assert!(!merged.events.is_empty() && !merged.links.is_empty());

    let view = SpanView::read(&bytes).expect("a valid span");
    assert_eq!(view.name, "renamed");
    assert_eq!(view_parts(&view), span_parts(&merged));

    // A span with none of them reads none.
    let bare = Span {
        name: "bare".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let view = SpanView::read(&bare).expect("a valid span");
    assert_eq!(view_parts(&view), (vec![], vec![], vec![]));
}
