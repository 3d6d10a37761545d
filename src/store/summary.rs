//! The trace summary: what search needs to know of one trace, per block or merged.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::component::wire::view::ValueView;

use super::StoreError;
use super::convert::{SpanRef, view_text};

const STATUS_OK: i32 = 1;
const STATUS_ERROR: i32 = 2;

/// One trace as the summary table keeps it (one row per trace per block).
///
/// `status` is `"error"` when any span has status ERROR; otherwise the root span's status
/// (`"ok"` or `"unset"`); when the root is not among the spans, `"ok"` if any span is OK,
/// else `"unset"`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceSummary {
    pub trace_id: [u8; 16],
    pub root_service: String,
    pub root_name: String,
    /// The trace's parentless span is among the summarised spans; without it the root
    /// fields name the earliest span.
    pub has_root: bool,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// `error`, `ok` or `unset`.
    pub status: String,
    pub span_count: u32,
    pub error_count: u32,
    pub services: BTreeSet<String>,
    /// Services with at least one ERROR span.
    pub error_services: BTreeSet<String>,
    /// Distinct (service, span name) pairs.
    pub operations: BTreeSet<(String, String)>,
    /// Indexed attribute key → its distinct values (the store's text form); keys without
    /// values are left out.
    pub attributes: BTreeMap<String, BTreeSet<String>>,
}

impl TraceSummary {
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    /// Combines the parts of one trace held by different blocks (or the live buffers): min
    /// start, max end, summed counts, unions; root fields from the part that has the root,
    /// else from the earliest part; status error if any part is error, else the root
    /// part's, else ok if any part is ok.
    pub fn merge(&mut self, other: TraceSummary) {
        let take_root = if self.has_root != other.has_root {
            other.has_root
        } else {
            !self.has_root && other.start_unix_nano < self.start_unix_nano
        };
        let status = merged_status(self, &other, take_root);
        if take_root {
            self.root_service = other.root_service;
            self.root_name = other.root_name;
            self.has_root = other.has_root;
        }
        self.status = status;
        self.start_unix_nano = self.start_unix_nano.min(other.start_unix_nano);
        self.end_unix_nano = self.end_unix_nano.max(other.end_unix_nano);
        self.span_count += other.span_count;
        self.error_count += other.error_count;
        self.services.extend(other.services);
        self.error_services.extend(other.error_services);
        self.operations.extend(other.operations);
        for (key, values) in other.attributes {
            self.attributes.entry(key).or_default().extend(values);
        }
    }
}

fn merged_status(a: &TraceSummary, b: &TraceSummary, b_is_root: bool) -> String {
    let any = |s: &str| a.status == s || b.status == s;
    let status = if any("error") {
        "error"
    } else if a.has_root || b.has_root {
        let root = if b_is_root { b } else { a };
        root.status.as_str()
    } else if any("ok") {
        "ok"
    } else {
        "unset"
    };
    status.to_string()
}

/// One summary per trace id: the parts of each trace merged.
pub fn merge_by_trace<'a>(parts: impl Iterator<Item = &'a TraceSummary>) -> Vec<TraceSummary> {
    let mut traces: HashMap<[u8; 16], TraceSummary> = HashMap::new();
    for part in parts {
        match traces.get_mut(&part.trace_id) {
            Some(known) => known.merge(part.clone()),
            None => {
                traces.insert(part.trace_id, part.clone());
            }
        }
    }
    traces.into_values().collect()
}

/// Splits spans sorted by trace id into runs of one trace each.
pub(crate) fn trace_runs<'s, 'a>(
    rows: &'s [SpanRef<'a>],
) -> impl Iterator<Item = &'s [SpanRef<'a>]> {
    rows.chunk_by(|a, b| a.span.trace_id == b.span.trace_id)
}

/// Summarises the spans of one trace (`run` must not be empty to say anything useful;
/// an empty run gives the default summary).
pub(crate) fn summarise(
    run: &[SpanRef<'_>],
    indexed: &[String],
) -> Result<TraceSummary, StoreError> {
    let Some(first) = run.first() else {
        return Ok(TraceSummary::default());
    };
    let mut t = TraceSummary {
        trace_id: fixed_id(first.span.trace_id),
        start_unix_nano: u64::MAX,
        ..Default::default()
    };
    let root = run.iter().find(|r| r.span.parent_span_id.is_empty());
    t.has_root = root.is_some();
    // Without its root, the earliest span stands in for it.
    let stand_in = root.or_else(|| run.iter().min_by_key(|r| r.span.start));
    if let Some(root) = stand_in {
        t.root_service = root.origin.service.to_string();
        t.root_name = root.span.name.to_string();
    }
    let mut any_ok = false;
    for row in run {
        add_span(&mut t, row, indexed)?;
        any_ok |= row.span.status_code == STATUS_OK;
    }
    t.status = status_of(t.error_count, root.map(|r| r.span.status_code), any_ok).to_string();
    Ok(t)
}

fn status_of(errors: u32, root_code: Option<i32>, any_ok: bool) -> &'static str {
    match (errors, root_code) {
        (1.., _) => "error",
        (0, Some(STATUS_OK)) => "ok",
        (0, Some(_)) => "unset",
        (0, None) if any_ok => "ok",
        (0, None) => "unset",
    }
}

fn add_span(t: &mut TraceSummary, row: &SpanRef<'_>, indexed: &[String]) -> Result<(), StoreError> {
    let span = &row.span;
    let service = row.origin.service;
    t.start_unix_nano = t.start_unix_nano.min(span.start);
    t.end_unix_nano = t.end_unix_nano.max(span.end);
    t.span_count += 1;
    if span.status_code == STATUS_ERROR {
        t.error_count += 1;
        if !t.error_services.contains(service) {
            t.error_services.insert(service.to_string());
        }
    }
    if !t.services.contains(service) {
        t.services.insert(service.to_string());
    }
    let known = t
        .operations
        .iter()
        .any(|(s, n)| s == service && n == span.name);
    if !known {
        t.operations
            .insert((service.to_string(), span.name.to_string()));
    }
    if indexed.is_empty() {
        return Ok(());
    }
    let mut add = |key: &str, value: ValueView<'_>| {
        if indexed.iter().any(|k| k == key) {
            add_value(&mut t.attributes, key, value);
        }
    };
    span.for_each_attribute(&mut add)?;
    for &(key, value) in &row.origin.resource {
        add(key, value);
    }
    Ok(())
}

/// Adds an indexed attribute's value to the trace's distinct values. Most spans repeat
/// values the trace already holds, so nothing is allocated unless the key or value is new.
fn add_value(attributes: &mut BTreeMap<String, BTreeSet<String>>, key: &str, value: ValueView<'_>) {
    let values = match attributes.get_mut(key) {
        Some(values) => values,
        None => attributes.entry(key.to_string()).or_default(),
    };
    if let ValueView::Text(text) = value {
        if !values.contains(text) {
            values.insert(text.to_string());
        }
        return;
    }
    let text = view_text(value);
    if !values.contains(&text) {
        values.insert(text);
    }
}

/// Ids of the wrong length (malformed input) read as zeros, as the span table stores them.
pub fn fixed_id(id: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    if id.len() == 16 {
        out.copy_from_slice(id);
    }
    out
}
