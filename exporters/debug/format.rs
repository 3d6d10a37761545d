//! Renders spans as log text at the three verbosities.

use std::fmt::Write;

use crate::component::{
    AnyValue, KeyValue, ResourceSpans, ScopeSpans, Span, TraceBatch, any_value,
};

/// `basic`: one line for the whole batch.
pub fn batch_summary(batch: &TraceBatch) -> String {
    format!(
        "resource spans: {}, spans: {}",
        batch.resource_spans().len(),
        batch.span_count()
    )
}

/// `normal`: one line per span.
pub fn span_line(rs: &ResourceSpans, span: &Span) -> String {
    let service = rs
        .resource
        .as_ref()
        .and_then(|r| find(&r.attributes, "service.name"))
        .unwrap_or_else(|| "-".to_string());
    format!(
        "{} {} {} service={} name={:?} duration={} status={}",
        hex(&span.trace_id),
        hex(&span.span_id),
        parent(&span.parent_span_id),
        service,
        span.name,
        duration(span),
        status_code(span),
    )
}

/// `detailed`: every field of a span, its scope and its resource, as a multi-line block.
pub fn span_detail(rs: &ResourceSpans, ss: &ScopeSpans, span: &Span) -> String {
    let mut out = String::new();
    let resource_attrs = rs.resource.as_ref().map(|r| r.attributes.as_slice());
    let _ = writeln!(
        out,
        "Span {} (trace {})",
        hex(&span.span_id),
        hex(&span.trace_id)
    );
    let _ = writeln!(
        out,
        "  Resource attributes:{}",
        attributes(resource_attrs.unwrap_or(&[]))
    );
    if let Some(scope) = &ss.scope {
        let _ = writeln!(out, "  Scope: {} {}", scope.name, scope.version);
    }
    let _ = writeln!(out, "  Parent ID: {}", parent(&span.parent_span_id));
    let _ = writeln!(out, "  Name: {}", span.name);
    let _ = writeln!(out, "  Kind: {}", kind(span.kind));
    let _ = writeln!(out, "  Trace state: {}", span.trace_state);
    let _ = writeln!(out, "  Flags: {}", span.flags);
    let _ = writeln!(out, "  Start: {}", span.start_time_unix_nano);
    let _ = writeln!(out, "  End: {}", span.end_time_unix_nano);
    let _ = writeln!(out, "  Duration: {}", duration(span));
    let message = span
        .status
        .as_ref()
        .map(|s| s.message.as_str())
        .unwrap_or("");
    let _ = writeln!(out, "  Status: {} {message:?}", status_code(span));
    let _ = writeln!(out, "  Attributes:{}", attributes(&span.attributes));
    write_events(&mut out, span);
    write_links(&mut out, span);
    let _ = write!(
        out,
        "  Dropped: attributes {}, events {}, links {}",
        span.dropped_attributes_count, span.dropped_events_count, span.dropped_links_count
    );
    out
}

fn write_events(out: &mut String, span: &Span) {
    for (i, event) in span.events.iter().enumerate() {
        let _ = writeln!(
            out,
            "  Event #{i}: {} at {}{}",
            event.name,
            event.time_unix_nano,
            attributes(&event.attributes)
        );
    }
}

fn write_links(out: &mut String, span: &Span) {
    for (i, link) in span.links.iter().enumerate() {
        let _ = writeln!(
            out,
            "  Link #{i}: trace {} span {}{}",
            hex(&link.trace_id),
            hex(&link.span_id),
            attributes(&link.attributes)
        );
    }
}

/// Attributes as ` key=Type(value)` pairs, in their order.
fn attributes(attrs: &[KeyValue]) -> String {
    let mut out = String::new();
    for kv in attrs {
        let _ = write!(out, " {}={}", kv.key, value(kv.value.as_ref()));
    }
    out
}

/// Renders a value with its type, as the Collector's debug exporter does: `Str(x)`, `Int(1)`.
pub fn value(v: Option<&AnyValue>) -> String {
    use any_value::Value;
    match v.and_then(|v| v.value.as_ref()) {
        None => "Empty()".to_string(),
        Some(Value::StringValue(s)) => format!("Str({s})"),
        Some(Value::BoolValue(b)) => format!("Bool({b})"),
        Some(Value::IntValue(i)) => format!("Int({i})"),
        Some(Value::DoubleValue(d)) => format!("Double({d})"),
        Some(Value::BytesValue(b)) => format!("Bytes({})", hex(b)),
        Some(Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| value(Some(v))).collect();
            format!("Slice([{}])", items.join(", "))
        }
        Some(Value::KvlistValue(kv)) => format!("Map({{{} }})", attributes(&kv.values)),
        Some(Value::StringValueStrindex(i)) => format!("StrIndex({i})"),
    }
}

fn find(attrs: &[KeyValue], key: &str) -> Option<String> {
    let kv = attrs.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => Some(value(kv.value.as_ref())),
    }
}

fn duration(span: &Span) -> String {
    let nanos = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano);
    format!("{:?}", std::time::Duration::from_nanos(nanos))
}

fn status_code(span: &Span) -> &'static str {
    match span.status.as_ref().map(|s| s.code) {
        Some(1) => "Ok",
        Some(2) => "Error",
        _ => "Unset",
    }
}

fn kind(kind: i32) -> &'static str {
    match kind {
        1 => "Internal",
        2 => "Server",
        3 => "Client",
        4 => "Producer",
        5 => "Consumer",
        _ => "Unspecified",
    }
}

fn parent(id: &[u8]) -> String {
    if id.is_empty() { "-".into() } else { hex(id) }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}
