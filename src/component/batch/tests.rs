use bytes::Bytes;
use prost::Message;

use super::TraceBatch;
use crate::component::ExportTraceServiceRequest;
use crate::store::testdata;

const START: u64 = 1_764_000_000_000_000_000;

/// A batch in wire form, as a receiver makes it, and the request it holds.
fn wire_batch(seed: u8) -> (TraceBatch, ExportTraceServiceRequest) {
    let request = ExportTraceServiceRequest {
        resource_spans: testdata::batch(u64::from(seed), 4, 3, Some("acme"), START),
    };
    let spans = request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum();
    let bytes = Bytes::from(request.encode_to_vec());
    (TraceBatch::from_validated_request(bytes, spans), request)
}

#[test]
fn a_wire_batch_counts_sizes_and_decodes_its_request() {
    let (batch, request) = wire_batch(1);
    assert_eq!(batch.size_hint(), request.encoded_len());
    assert_eq!(
        batch.span_count(),
        TraceBatch::measured(request.resource_spans.clone()).span_count()
    );
    assert_eq!(batch.resource_spans(), request.resource_spans);
    // Decoding keeps the wire form: nothing changed the spans.
    assert_eq!(batch.wire_parts().map(<[Bytes]>::len), Some(1));
    assert_eq!(batch.encode_request(), request.encode_to_vec());
}

#[test]
fn wire_batches_join_without_decoding_and_decode_as_one() {
    let (mut joined, first) = wire_batch(1);
    let (second_batch, second) = wire_batch(2);
    let (third_batch, third) = wire_batch(3);
    let mut empty = TraceBatch::default();
    empty.append(second_batch);
    joined.append(empty);
    joined.append(third_batch);
    assert_eq!(joined.wire_parts().map(<[Bytes]>::len), Some(3));
    let all = [
        first.resource_spans,
        second.resource_spans,
        third.resource_spans,
    ]
    .concat();
    let expected = TraceBatch::measured(all.clone());
    assert_eq!(joined.span_count(), expected.span_count());
    assert_eq!(joined.size_hint(), expected.size_hint());
    assert_eq!(joined.resource_spans(), all);
    assert_eq!(
        joined.encode_request(),
        ExportTraceServiceRequest {
            resource_spans: all
        }
        .encode_to_vec()
    );
}

#[test]
fn changing_or_mixing_forms_drops_the_wire_form() {
    let (mut batch, request) = wire_batch(1);
    batch.resource_spans_mut()[0].scope_spans[0].spans[0].name = "renamed".into();
    assert!(batch.wire_parts().is_none());
    let mut changed = request.clone();
    changed.resource_spans[0].scope_spans[0].spans[0].name = "renamed".into();
    assert_eq!(batch.encode_request(), changed.encode_to_vec());

    let (mut wire, request) = wire_batch(2);
    wire.append(TraceBatch::measured(changed.resource_spans.clone()));
    assert!(wire.wire_parts().is_none());
    assert_eq!(
        wire.into_resource_spans(),
        [request.resource_spans, changed.resource_spans].concat()
    );
}

#[test]
fn a_wire_batch_splits_and_retains_as_a_decoded_one_does() {
    let (mut wire, request) = wire_batch(3);
    let mut decoded = TraceBatch::measured(request.resource_spans);
    let total = decoded.span_count();
    let (front, decoded_front) = (
        wire.split_front(total / 2 + 1),
        decoded.split_front(total / 2 + 1),
    );
    assert_eq!(front, decoded_front);
    assert_eq!(wire, decoded);
    assert_eq!(wire.span_count() + front.span_count(), total);
    let removed = wire.retain_spans(|_, span| span.name.len() % 2 == 0);
    assert_eq!(
        removed,
        decoded.retain_spans(|_, span| span.name.len() % 2 == 0)
    );
    assert_eq!(wire, decoded);
}
