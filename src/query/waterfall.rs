//! Terminal waterfall of one trace: the span tree with start offsets, durations, bars and status.

use std::collections::{HashMap, HashSet};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, status::StatusCode};

use super::table::{display_width, pad_left, pad_right, printable, truncate};

/// How `render_waterfall` lays out a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaterfallOptions {
    /// Terminal columns every line fits in; widths below 50 are treated as 50.
    pub width: usize,
    /// ANSI colour: errors in bold red. Off means plain text with no escape codes.
    pub color: bool,
    /// Attribute keys shown after the status when a span (or its resource) has them.
    pub attributes: Vec<String>,
}

impl Default for WaterfallOptions {
    fn default() -> Self {
        let keys = [
            "http.route",
            "http.method",
            "http.status_code",
            "http.response.status_code",
            "db.system",
            "messaging.system",
            "error.type",
        ];
        Self {
            width: 120,
            color: false,
            attributes: keys.iter().map(|k| k.to_string()).collect(),
        }
    }
}

const MIN_WIDTH: usize = 50;
/// The name column never takes more than this share of the width.
const NAME_SHARE_PERCENT: usize = 35;
const GAP: &str = "  ";
const PARENT_MISSING: &str = " (parent missing)";
/// A parent chain that loops back on itself has no root; its spans are shown from where it was entered.
const PARENT_LOOP: &str = " (parent loop)";
const UNKNOWN_SERVICE: &str = "unknown_service";
const BAR_FULL: char = '█';
const BAR_EMPTY: char = '░';
const RED_BOLD: &str = "\x1b[1;31m";
const RESET: &str = "\x1b[0m";

/// One span with what the waterfall needs from its resource.
struct Node<'a> {
    span: &'a Span,
    resource: &'a [KeyValue],
    service: &'a str,
}

/// One printed span line before layout: its tree prefix and an optional top-level marker.
struct Row {
    node: usize,
    prefix: String,
    marker: &'static str,
}

/// Cell texts of one row, measured before the columns are sized.
struct Cells {
    name: String,
    marker: &'static str,
    offset: String,
    duration: String,
    /// Status text; the leading part of `details` that gets coloured on error.
    status: String,
    details: String,
    error: bool,
    start: u64,
    end: u64,
}

/// Column widths for one rendering.
struct Layout {
    name: usize,
    offset: usize,
    duration: usize,
    bar: usize,
    details: usize,
}

/// Renders every span of `resource_spans` as one waterfall: a header line, then one line per
/// span in tree order. Each line ends with `\n` and fits `options.width` columns.
pub fn render_waterfall(resource_spans: &[ResourceSpans], options: &WaterfallOptions) -> String {
    let nodes = collect_nodes(resource_spans);
    let width = options.width.max(MIN_WIDTH);
    if nodes.is_empty() {
        return "trace: no spans\n".to_string();
    }
    let start = nodes.iter().map(|n| n.span.start_time_unix_nano).min();
    let start = start.unwrap_or(0);
    let end = nodes
        .iter()
        .map(|n| span_end(n.span))
        .max()
        .unwrap_or(start);
    let window = Window {
        start,
        total: end - start,
    };
    let cells: Vec<Cells> = tree_rows(&nodes)
        .iter()
        .map(|row| row_cells(&nodes, row, start, options))
        .collect();
    let layout = layout(&cells, width);

    let mut out = header(&nodes, window.total, width, options.color);
    for cell in &cells {
        out.push_str(&render_row(cell, &layout, window, options.color));
        out.push('\n');
    }
    out
}

/// The trace's time span, which bars are scaled to.
#[derive(Clone, Copy)]
struct Window {
    start: u64,
    total: u64,
}

fn collect_nodes(resource_spans: &[ResourceSpans]) -> Vec<Node<'_>> {
    let mut nodes = Vec::new();
    for resource_span in resource_spans {
        let resource = resource_span
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes[..]);
        let service = match find_attribute(resource, "service.name") {
            Some(any_value::Value::StringValue(name)) => name.as_str(),
            _ => UNKNOWN_SERVICE,
        };
        for scope_span in &resource_span.scope_spans {
            for span in &scope_span.spans {
                nodes.push(Node {
                    span,
                    resource,
                    service,
                });
            }
        }
    }
    // Sorting once by start keeps every child list and the top level in start order.
    nodes.sort_by_key(|n| n.span.start_time_unix_nano);
    nodes
}

/// Orders the spans depth-first by parent, children by start time, with tree-drawing prefixes.
fn tree_rows(nodes: &[Node<'_>]) -> Vec<Row> {
    let mut by_id: HashMap<&[u8], usize> = HashMap::new();
    for (index, node) in nodes.iter().enumerate() {
        by_id.entry(&node.span.span_id[..]).or_insert(index);
    }
    let mut children = vec![Vec::new(); nodes.len()];
    let mut top = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let parent = &node.span.parent_span_id[..];
        if parent.iter().all(|b| *b == 0) {
            top.push((index, ""));
            continue;
        }
        match by_id.get(parent) {
            Some(&p) if p != index => children[p].push(index),
            _ => top.push((index, PARENT_MISSING)),
        }
    }
    let mut rows = Vec::with_capacity(nodes.len());
    let mut visited = vec![false; nodes.len()];
    for (index, marker) in top {
        walk(index, marker, &children, &mut visited, &mut rows);
    }
    for index in 0..nodes.len() {
        if !visited[index] {
            walk(index, PARENT_LOOP, &children, &mut visited, &mut rows);
        }
    }
    rows
}

/// Depth-first from `root` with an explicit stack, so a deep trace cannot overflow the call stack.
fn walk(
    root: usize,
    marker: &'static str,
    children: &[Vec<usize>],
    visited: &mut [bool],
    rows: &mut Vec<Row>,
) {
    // (span, prefix for its own line, prefix its children continue from)
    let mut stack = vec![(root, String::new(), String::new())];
    while let Some((index, prefix, continuation)) = stack.pop() {
        if visited[index] {
            continue;
        }
        visited[index] = true;
        rows.push(Row {
            node: index,
            prefix,
            marker: if index == root { marker } else { "" },
        });
        let kids = &children[index];
        for (position, &child) in kids.iter().enumerate().rev() {
            let last = position + 1 == kids.len();
            let branch = if last { "└─ " } else { "├─ " };
            let rest = if last { "   " } else { "│  " };
            stack.push((
                child,
                format!("{continuation}{branch}"),
                format!("{continuation}{rest}"),
            ));
        }
    }
}

fn row_cells(nodes: &[Node<'_>], row: &Row, trace_start: u64, options: &WaterfallOptions) -> Cells {
    let node = &nodes[row.node];
    let span = node.span;
    let start = span.start_time_unix_nano;
    let end = span_end(span);
    let (status, error) = status_text(span);
    let status = printable(&status);
    let attributes = printable(&attribute_texts(node, &options.attributes).join(" "));
    let mut details = status.clone();
    if !attributes.is_empty() {
        if !details.is_empty() {
            details.push_str(GAP);
        }
        details.push_str(&attributes);
    }
    Cells {
        name: printable(&format!("{}{}: {}", row.prefix, node.service, span.name)),
        marker: row.marker,
        offset: format!("+{}", format_duration(start - trace_start)),
        duration: format_duration(end - start),
        status,
        details,
        error,
        start,
        end,
    }
}

/// A span's end, never before its start, so a malformed span reads as zero-length.
fn span_end(span: &Span) -> u64 {
    span.end_time_unix_nano.max(span.start_time_unix_nano)
}

fn status_text(span: &Span) -> (String, bool) {
    let Some(status) = &span.status else {
        return (String::new(), false);
    };
    match StatusCode::try_from(status.code) {
        Ok(StatusCode::Error) if status.message.is_empty() => ("ERROR".to_string(), true),
        Ok(StatusCode::Error) => (format!("ERROR: {}", status.message), true),
        Ok(StatusCode::Ok) => ("OK".to_string(), false),
        _ => (String::new(), false),
    }
}

/// `key=value` for each wanted key the span has, falling back to its resource.
fn attribute_texts(node: &Node<'_>, keys: &[String]) -> Vec<String> {
    let mut texts = Vec::new();
    for key in keys {
        let value = find_attribute(&node.span.attributes, key)
            .or_else(|| find_attribute(node.resource, key));
        if let Some(value) = value {
            texts.push(format!("{key}={}", value_text(value)));
        }
    }
    texts
}

fn find_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    let found = attributes.iter().find(|kv| kv.key == key)?;
    found.value.as_ref()?.value.as_ref()
}

fn value_text(value: &any_value::Value) -> String {
    use any_value::Value;
    match value {
        Value::StringValue(text) => text.clone(),
        Value::BoolValue(flag) => flag.to_string(),
        Value::IntValue(number) => number.to_string(),
        Value::DoubleValue(number) => number.to_string(),
        Value::BytesValue(bytes) => hex(bytes),
        Value::ArrayValue(array) => {
            let items: Vec<String> = array.values.iter().map(any_text).collect();
            format!("[{}]", items.join(","))
        }
        Value::KvlistValue(list) => {
            let items: Vec<String> = list
                .values
                .iter()
                .map(|kv| {
                    format!(
                        "{}={}",
                        kv.key,
                        kv.value.as_ref().map_or(String::new(), any_text)
                    )
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::StringValueStrindex(index) => format!("#{index}"),
    }
}

fn any_text(value: &AnyValue) -> String {
    value.value.as_ref().map_or(String::new(), value_text)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Sizes the columns: names up to a share of the width, bars and details share the rest.
fn layout(cells: &[Cells], width: usize) -> Layout {
    let widest = |f: fn(&Cells) -> usize| cells.iter().map(f).max().unwrap_or(0);
    let name_cap = width * NAME_SHARE_PERCENT / 100;
    let name = widest(|c| display_width(&c.name) + display_width(c.marker)).min(name_cap);
    let offset = widest(|c| display_width(&c.offset));
    let duration = widest(|c| display_width(&c.duration));
    let fixed = name + offset + duration + 3 * GAP.len();
    let rest = width.saturating_sub(fixed);
    let details_wanted = widest(|c| display_width(&c.details));
    // The bar takes what the details leave, but never less than half the room: timing is
    // what a waterfall is for, and the details are cut with `…` first.
    let bar = if details_wanted == 0 {
        rest
    } else {
        rest.saturating_sub(details_wanted + GAP.len())
            .max(rest / 2)
    };
    let bar = bar.max(1);
    let details = rest.saturating_sub(bar + GAP.len());
    Layout {
        name,
        offset,
        duration,
        bar,
        details,
    }
}

fn header(nodes: &[Node<'_>], total: u64, width: usize, color: bool) -> String {
    let trace_id = hex(&nodes[0].span.trace_id);
    let services: HashSet<&str> = nodes.iter().map(|n| n.service).collect();
    let errors = nodes.iter().filter(|n| status_text(n.span).1).count();
    let plain = format!(
        "trace {trace_id}  {}  {}  {}",
        plural(nodes.len(), "span"),
        plural(services.len(), "service"),
        format_duration(total),
    );
    let errors_text = plural(errors, "error");
    let full = format!("{plain}{GAP}{errors_text}");
    if display_width(&full) > width {
        // Too narrow for the whole header: cut it, and colour nothing rather than half a word.
        return format!("{}\n", truncate(&full, width));
    }
    if color && errors > 0 {
        return format!("{plain}{GAP}{RED_BOLD}{errors_text}{RESET}\n");
    }
    format!("{full}\n")
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

fn render_row(cells: &Cells, layout: &Layout, trace: Window, color: bool) -> String {
    let room = layout.name.saturating_sub(display_width(cells.marker));
    let name = format!("{}{}", truncate(&cells.name, room), cells.marker);
    let mut line = pad_right(&truncate(&name, layout.name), layout.name);
    line.push_str(GAP);
    line.push_str(&pad_left(&cells.offset, layout.offset));
    line.push_str(GAP);
    line.push_str(&pad_left(&cells.duration, layout.duration));
    line.push_str(GAP);
    line.push_str(&bar(
        cells.start - trace.start,
        cells.end - trace.start,
        trace.total,
        layout.bar,
    ));
    let details = truncate(&cells.details, layout.details);
    if details.is_empty() {
        return line;
    }
    line.push_str(GAP);
    if color && cells.error {
        // Colour only the status; the escape codes take no columns, so widths stay right.
        let status_chars = display_width(&cells.status).min(display_width(&details));
        let status: String = details.chars().take(status_chars).collect();
        let rest: String = details.chars().skip(status_chars).collect();
        line.push_str(&format!("{RED_BOLD}{status}{RESET}{rest}"));
    } else {
        line.push_str(&details);
    }
    line
}

/// A `width`-cell track with the span's extent filled; every span gets at least one cell.
fn bar(from: u64, to: u64, total: u64, width: usize) -> String {
    let (first, last) = if total == 0 {
        (0, width)
    } else {
        let scale = |t: u64, round_up: bool| {
            let scaled = u128::from(t) * width as u128;
            let total = u128::from(total);
            let cells = if round_up {
                scaled.div_ceil(total)
            } else {
                scaled / total
            };
            usize::try_from(cells).unwrap_or(width).min(width)
        };
        let first = scale(from, false).min(width.saturating_sub(1));
        (first, scale(to, true).max(first + 1))
    };
    (0..width)
        .map(|cell| {
            if cell >= first && cell < last {
                BAR_FULL
            } else {
                BAR_EMPTY
            }
        })
        .collect()
}

/// `950ns`, `12.3µs`, `1.00ms`, `45.1ms`, `2.50s`: three significant digits in the largest
/// unit that keeps the number below 1000 (seconds grow past 1000 rather than switching unit).
pub fn format_duration(nanos: u64) -> String {
    let rounded = round_to_three_digits(nanos);
    let (scale, unit) = match rounded {
        0..1_000 => (1, "ns"),
        1_000..1_000_000 => (1_000, "µs"),
        1_000_000..1_000_000_000 => (1_000_000, "ms"),
        _ => (1_000_000_000, "s"),
    };
    let whole = rounded / scale;
    let decimals = 3usize.saturating_sub(decimal_digits(whole) as usize);
    if decimals == 0 || scale == 1 {
        return format!("{whole}{unit}");
    }
    let step = scale / 10u64.pow(decimals as u32);
    let fraction = (rounded % scale) / step;
    format!("{whole}.{fraction:0decimals$}{unit}")
}

/// Rounds half up to three significant digits, in integers so nothing drifts.
fn round_to_three_digits(nanos: u64) -> u64 {
    let digits = decimal_digits(nanos);
    if digits <= 3 {
        return nanos;
    }
    let step = 10u64.pow(digits - 3);
    let rounded = (u128::from(nanos) + u128::from(step / 2)) / u128::from(step) * u128::from(step);
    u64::try_from(rounded).unwrap_or(u64::MAX)
}

fn decimal_digits(value: u64) -> u32 {
    value.checked_ilog10().map_or(1, |log| log + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Status};

    const MS: u64 = 1_000_000;
    const T0: u64 = 1_700_000_000_000_000_000;
    const TRACE: [u8; 16] = [0xab; 16];

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn text(key: &str, value: &str) -> KeyValue {
        kv(key, Value::StringValue(value.to_string()))
    }

    fn span(id: u8, parent: u8, name: &str, start_ms: f64, end_ms: f64) -> Span {
        Span {
            trace_id: TRACE.to_vec(),
            span_id: vec![id; 8],
            parent_span_id: if parent == 0 {
                Vec::new()
            } else {
                vec![parent; 8]
            },
            name: name.to_string(),
            start_time_unix_nano: T0 + (start_ms * MS as f64) as u64,
            end_time_unix_nano: T0 + (end_ms * MS as f64) as u64,
            ..Default::default()
        }
    }

    fn service(name: &str, spans: Vec<Span>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", name)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// frontend → checkout (→ payment, failing) and checkout → publish, plus a span whose parent
    /// was never received. The later child comes first in the input to prove the sort.
    fn small_trace() -> Vec<ResourceSpans> {
        let mut root = span(1, 0, "GET /checkout", 0.0, 100.0);
        root.attributes = vec![
            text("http.route", "/checkout"),
            text("http.method", "GET"),
            text("user.id", "u-42"),
        ];
        let mut publish = span(4, 2, "publish orders", 70.0, 72.0);
        publish.attributes = vec![text("messaging.system", "kafka")];
        let mut checkout = span(2, 1, "POST /api/checkout", 5.0, 65.0);
        checkout.status = Some(Status {
            code: StatusCode::Ok as i32,
            ..Default::default()
        });
        let mut charge = span(3, 2, "POST /charge", 10.0, 55.5);
        charge.attributes = vec![kv("http.status_code", Value::IntValue(500))];
        charge.status = Some(Status {
            code: StatusCode::Error as i32,
            message: "card declined".to_string(),
        });
        let orphan = span(5, 9, "process orders", 80.0, 99.0);
        vec![
            service("checkout", vec![publish, checkout]),
            service("frontend", vec![root]),
            service("payment", vec![charge]),
            service("fulfillment", vec![orphan]),
        ]
    }

    fn options(width: usize, color: bool) -> WaterfallOptions {
        WaterfallOptions {
            width,
            color,
            ..Default::default()
        }
    }

    #[test]
    fn renders_the_tree_with_offsets_bars_status_and_attributes() {
        let out = render_waterfall(&small_trace(), &options(100, false));
        let expected = [
            "trace abababababababababababababababab  5 spans  4 services  100ms  1 error",
            "frontend: GET /checkout                 +0ns   100ms  ███████████████████████  http.route=/checkout…",
            "└─ checkout: POST /api/checkout      +5.00ms  60.0ms  ░██████████████░░░░░░░░  OK",
            "   ├─ payment: POST /charge          +10.0ms  45.5ms  ░░███████████░░░░░░░░░░  ERROR: card declined…",
            "   └─ checkout: publish orders       +70.0ms  2.00ms  ░░░░░░░░░░░░░░░░█░░░░░░  messaging.system=kaf…",
            "fulfillment: proc… (parent missing)  +80.0ms  19.0ms  ░░░░░░░░░░░░░░░░░░█████",
        ];
        assert_eq!(out.lines().collect::<Vec<_>>(), expected);
        assert!(!out.contains('\x1b'), "no escape codes without colour");
    }

    #[test]
    fn colour_wraps_only_the_error_status_and_count() {
        let out = render_waterfall(&small_trace(), &options(100, true));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "trace abababababababababababababababab  5 spans  4 services  100ms  \x1b[1;31m1 error\x1b[0m"
        );
        assert_eq!(
            lines[3],
            "   ├─ payment: POST /charge          +10.0ms  45.5ms  ░░███████████░░░░░░░░░░  \x1b[1;31mERROR: card declined\x1b[0m…"
        );
        let plain = render_waterfall(&small_trace(), &options(100, false));
        let plain: Vec<&str> = plain.lines().collect();
        for index in [1, 2, 4, 5] {
            assert_eq!(
                lines[index], plain[index],
                "line {index} has no error to colour"
            );
        }
    }

    #[test]
    fn every_line_fits_the_width() {
        for width in [50, 64, 80, 120, 200] {
            let out = render_waterfall(&small_trace(), &options(width, false));
            for line in out.lines() {
                assert!(display_width(line) <= width, "{width}: {line:?}");
            }
        }
        // Below the minimum the minimum applies rather than an unreadable squeeze.
        let out = render_waterfall(&small_trace(), &options(10, false));
        assert!(out.lines().all(|line| display_width(line) <= MIN_WIDTH));
    }

    #[test]
    fn wide_terminal_shows_every_attribute_and_a_longer_bar() {
        let out = render_waterfall(&small_trace(), &options(160, false));
        let charge = out
            .lines()
            .find(|l| l.contains("payment"))
            .unwrap_or_default();
        assert!(
            charge.ends_with("ERROR: card declined  http.status_code=500"),
            "{charge}"
        );
        let bar: String = charge
            .chars()
            .filter(|c| *c == BAR_FULL || *c == BAR_EMPTY)
            .collect();
        // Name (44), offset (7), duration (6) and details (42) keep their full width; the bar
        // gets the rest after four two-space gaps.
        assert_eq!(bar.chars().count(), 160 - 44 - 7 - 6 - 42 - 4 * 2);
    }

    #[test]
    fn chosen_attributes_come_from_the_span_or_its_resource() {
        let mut trace = small_trace();
        let resource = trace[1].resource.as_mut().map(|r| &mut r.attributes);
        resource
            .into_iter()
            .for_each(|a| a.push(text("deployment.environment", "prod")));
        let options = WaterfallOptions {
            attributes: vec!["user.id".to_string(), "deployment.environment".to_string()],
            ..options(160, false)
        };
        let out = render_waterfall(&trace, &options);
        let root = out.lines().nth(1).unwrap_or_default();
        assert!(
            root.ends_with("user.id=u-42 deployment.environment=prod"),
            "{root}"
        );
        assert!(!out.contains("http.route"));
    }

    #[test]
    fn a_parent_loop_and_an_empty_trace_still_render() {
        let a = span(1, 2, "a", 0.0, 1.0);
        let b = span(2, 1, "b", 0.5, 1.0);
        let out = render_waterfall(&[service("loop", vec![a, b])], &options(80, false));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with("loop: a (parent loop)"),
            "{}",
            lines[1]
        );
        assert!(lines[2].starts_with("└─ loop: b  "), "{}", lines[2]);
        assert_eq!(
            render_waterfall(&[], &options(80, false)),
            "trace: no spans\n"
        );
    }

    #[test]
    fn a_span_ending_before_it_starts_counts_as_zero_length() {
        let mut bad = span(1, 0, "bad", 5.0, 5.0);
        bad.end_time_unix_nano = 0;
        let out = render_waterfall(&[service("svc", vec![bad])], &options(60, false));
        assert!(out.starts_with("trace abab"));
        assert!(out.contains("  0ns  "), "{out}");
    }

    #[test]
    fn control_characters_in_span_data_are_escaped() {
        let mut span = span(1, 0, "GET /\nfake line", 0.0, 1.0);
        span.attributes = vec![text("http.route", "/\x1b[2J")];
        span.status = Some(Status {
            code: StatusCode::Error as i32,
            message: "boom\r\n".to_string(),
        });
        let out = render_waterfall(&[service("svc", vec![span])], &options(160, true));
        assert_eq!(out.lines().count(), 2, "{out}");
        let line = out.lines().nth(1).unwrap_or_default();
        assert!(line.starts_with("svc: GET /\\nfake line  "), "{line}");
        assert!(
            line.ends_with("ERROR: boom\\r\\n\x1b[0m  http.route=/\\u{1b}[2J"),
            "{line}"
        );
    }

    #[test]
    fn durations_keep_three_significant_digits() {
        let cases = [
            (0, "0ns"),
            (999, "999ns"),
            (1_000, "1.00µs"),
            (12_345, "12.3µs"),
            (999_499, "999µs"),
            (999_500, "1.00ms"),
            (45_149_999, "45.1ms"),
            (45_150_000, "45.2ms"),
            (100_000_000, "100ms"),
            (2_500_000_000, "2.50s"),
            (1_234_000_000_000, "1230s"),
            (u64::MAX, "18400000000s"),
        ];
        for (nanos, expected) in cases {
            assert_eq!(format_duration(nanos), expected, "{nanos}ns");
        }
    }
}
