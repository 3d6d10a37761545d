//! Per-span limits: attributes, attribute value length and events beyond them are cut and counted.

use super::config::Limits;
use crate::component::{AnyValue, KeyValue, Span, any_value};

/// What the per-span limits removed or shortened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Truncations {
    /// Attributes removed beyond `max_attributes_per_span`.
    pub attributes: u64,
    /// String values shortened to `max_attribute_value_bytes`.
    pub values: u64,
    /// Events removed beyond `max_events_per_span`.
    pub events: u64,
}

impl Truncations {
    pub(crate) fn any(&self) -> bool {
        self.attributes + self.values + self.events > 0
    }
}

/// Applies the per-span limits to one span, recording what was cut in the span's own
/// `dropped_*_count` fields too, as OTLP asks.
pub(crate) fn limit_span(span: &mut Span, limits: &Limits, cut: &mut Truncations) {
    let max_attributes = limits.max_attributes_per_span;
    if max_attributes > 0 && span.attributes.len() > max_attributes {
        let removed = span.attributes.len() - max_attributes;
        span.attributes.truncate(max_attributes);
        span.dropped_attributes_count = span
            .dropped_attributes_count
            .saturating_add(u32::try_from(removed).unwrap_or(u32::MAX));
        cut.attributes += removed as u64;
    }
    let max_events = limits.max_events_per_span;
    if max_events > 0 && span.events.len() > max_events {
        let removed = span.events.len() - max_events;
        span.events.truncate(max_events);
        span.dropped_events_count = span
            .dropped_events_count
            .saturating_add(u32::try_from(removed).unwrap_or(u32::MAX));
        cut.events += removed as u64;
    }
    let max_value = limits.max_attribute_value_bytes.as_usize();
    if max_value > 0 {
        cut.values += shorten_values(&mut span.attributes, max_value);
        for event in &mut span.events {
            cut.values += shorten_values(&mut event.attributes, max_value);
        }
        for link in &mut span.links {
            cut.values += shorten_values(&mut link.attributes, max_value);
        }
    }
}

/// Shortens every string value (also inside arrays and maps) to `max` bytes; returns how many.
fn shorten_values(attributes: &mut [KeyValue], max: usize) -> u64 {
    let mut count = 0;
    for kv in attributes {
        if let Some(value) = &mut kv.value {
            count += shorten_value(value, max);
        }
    }
    count
}

fn shorten_value(value: &mut AnyValue, max: usize) -> u64 {
    match &mut value.value {
        Some(any_value::Value::StringValue(text)) if text.len() > max => {
            text.truncate(char_boundary(text, max));
            1
        }
        Some(any_value::Value::BytesValue(bytes)) if bytes.len() > max => {
            bytes.truncate(max);
            1
        }
        Some(any_value::Value::ArrayValue(array)) => {
            let mut count = 0;
            for item in &mut array.values {
                count += shorten_value(item, max);
            }
            count
        }
        Some(any_value::Value::KvlistValue(list)) => shorten_values(&mut list.values, max),
        _ => 0,
    }
}

/// The largest index `<= max` that falls on a character boundary of `text`.
fn char_boundary(text: &str, max: usize) -> usize {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::ByteSize;
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    use opentelemetry_proto::tonic::trace::v1::span::Event;

    fn text(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cuts_attributes_events_and_long_values_and_counts_them() {
        let mut span = Span {
            attributes: vec![text("a", "short"), text("b", "héllo wörld"), text("c", "x")],
            events: vec![Event::default(), Event::default(), Event::default()],
            dropped_attributes_count: 1,
            ..Default::default()
        };
        span.attributes.push(KeyValue {
            key: "list".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![text("", "abcdefgh").value.unwrap()],
                })),
            }),
            ..Default::default()
        });
        span.events[0].attributes.push(text("e", "0123456789"));
        let limits = Limits {
            max_attributes_per_span: 2,
            max_events_per_span: 1,
            max_attribute_value_bytes: ByteSize(6),
            ..Default::default()
        };
        let mut cut = Truncations::default();
        limit_span(&mut span, &limits, &mut cut);
        assert_eq!(
            cut,
            Truncations {
                attributes: 2,
                values: 2,
                events: 2
            }
        );
        assert_eq!(span.attributes.len(), 2);
        assert_eq!(span.dropped_attributes_count, 3);
        assert_eq!(span.dropped_events_count, 2);
        // Cuts keep whole characters: "héllo" is exactly 6 bytes.
        assert_eq!(span.attributes[1], text("b", "héllo"));
        assert_eq!(span.events[0].attributes[0], text("e", "012345"));
        assert_eq!(char_boundary("hé", 2), 1);
    }
}
