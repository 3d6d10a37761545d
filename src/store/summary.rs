//! The trace summary: what search needs to know of one trace, per block or merged.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::component::wire::view::ValueView;

use super::StoreError;
use super::convert::{OriginView, SpanRef, write_view};

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

/// One summary per trace id: the parts of each trace (one per block, plus the live
/// buffers) merged.
pub fn merge_by_trace(parts: impl IntoIterator<Item = TraceSummary>) -> Vec<TraceSummary> {
    let mut traces: HashMap<[u8; 16], TraceSummary> = HashMap::new();
    for part in parts {
        match traces.entry(part.trace_id) {
            Entry::Occupied(mut known) => known.get_mut().merge(part),
            Entry::Vacant(slot) => {
                slot.insert(part);
            }
        }
    }
    traces.into_values().collect()
}

/// Summarises spans that come sorted by (trace id, start time), one trace after another:
/// a block's spans as the encoder writes them (it hands over each span's attributes as it
/// reads them for the span table), or one chunk's. A trace's texts are borrowed from the
/// spans' bytes, so summarising allocates a few short lists per trace and copies nothing.
pub(crate) struct Summariser<'i, 'a> {
    indexed: &'i [String],
    open: Option<TraceRow<'a>>,
    done: Vec<TraceRow<'a>>,
    /// Room to print a value that is not a string.
    scratch: String,
}

/// One trace of a block, summarised, its texts borrowed from its spans' bytes.
pub(crate) struct TraceRow<'a> {
    pub trace_id: [u8; 16],
    /// Service and name of the parentless span, else of the earliest span (the first).
    pub root: (&'a str, &'a str),
    /// The status code of the parentless span, once one was seen.
    root_code: Option<i32>,
    any_ok: bool,
    pub start: u64,
    pub end: u64,
    pub span_count: u32,
    pub error_count: u32,
    /// Sorted and distinct once the trace is complete, as are the lists below.
    pub services: Vec<&'a str>,
    pub error_services: Vec<&'a str>,
    pub operations: Vec<(&'a str, &'a str)>,
    /// (indexed key, value): sorted by key, then value.
    pub values: Vec<(&'a str, Cow<'a, str>)>,
    /// Origins whose resource attributes were read for this trace.
    origins: Vec<&'a OriginView<'a>>,
}

impl<'a> TraceRow<'a> {
    fn new(trace_id: [u8; 16], row: &SpanRef<'a>) -> Self {
        Self {
            trace_id,
            root: (row.origin.service, row.span.name),
            root_code: None,
            any_ok: false,
            start: u64::MAX,
            end: 0,
            span_count: 0,
            error_count: 0,
            // Room for a typical trace's lists up front: grown from empty, each took
            // two or three reallocations per trace.
            services: Vec::with_capacity(4),
            error_services: Vec::new(),
            operations: Vec::with_capacity(8),
            values: Vec::with_capacity(8),
            origins: Vec::with_capacity(4),
        }
    }

    pub fn has_root(&self) -> bool {
        self.root_code.is_some()
    }

    /// `error`, `ok` or `unset` (see `TraceSummary`).
    pub fn status(&self) -> &'static str {
        status_of(self.error_count, self.root_code, self.any_ok)
    }

    /// Adds an indexed value unless the trace has it. A value that is not a string is
    /// printed into `scratch` first and copied only when new (most repeat, like a status
    /// code of 200).
    fn add_value(&mut self, key: &'a str, value: ValueView<'a>, scratch: &mut String) {
        let text = match value {
            ValueView::Text(text) => text,
            other => {
                scratch.clear();
                write_view(other, scratch);
                scratch.as_str()
            }
        };
        if self.values.iter().any(|(k, v)| *k == key && v == text) {
            return;
        }
        let value = match value {
            ValueView::Text(text) => Cow::Borrowed(text),
            _ => Cow::Owned(text.to_owned()),
        };
        self.values.push((key, value));
    }

    /// Sorts the lists, as the summary's sets are.
    fn complete(&mut self) {
        self.services.sort_unstable();
        self.error_services.sort_unstable();
        self.operations.sort_unstable();
        self.values.sort_unstable();
        self.origins = Vec::new();
    }

    /// The summary with its texts owned.
    pub fn summary(&self) -> TraceSummary {
        let owned = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        let mut attributes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (key, value) in &self.values {
            attributes
                .entry(key.to_string())
                .or_default()
                .insert(value.to_string());
        }
        TraceSummary {
            trace_id: self.trace_id,
            root_service: self.root.0.to_string(),
            root_name: self.root.1.to_string(),
            has_root: self.has_root(),
            start_unix_nano: self.start,
            end_unix_nano: self.end,
            status: self.status().to_string(),
            span_count: self.span_count,
            error_count: self.error_count,
            services: owned(&self.services),
            error_services: owned(&self.error_services),
            operations: self
                .operations
                .iter()
                .map(|(s, n)| (s.to_string(), n.to_string()))
                .collect(),
            attributes,
        }
    }
}

/// Adds `item` to a short list of distinct items.
fn insert_new<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

impl<'i, 'a> Summariser<'i, 'a> {
    pub(crate) fn new(indexed: &'i [String]) -> Self {
        Self {
            indexed,
            open: None,
            done: Vec::new(),
            scratch: String::new(),
        }
    }

    /// Adds the next span, attributes included.
    pub(crate) fn push(&mut self, row: &SpanRef<'a>) -> Result<(), StoreError> {
        self.push_fields(row);
        row.span
            .for_each_attribute(|key, value| self.span_attribute(key, value))?;
        Ok(())
    }

    /// Adds the next span but for its own attributes, which the caller hands over with
    /// `span_attribute` before the next span.
    pub(crate) fn push_fields(&mut self, row: &SpanRef<'a>) {
        let trace_id = fixed_id(row.span.trace_id);
        if self.open.as_ref().is_none_or(|o| o.trace_id != trace_id) {
            self.close();
        }
        let t = self
            .open
            .get_or_insert_with(|| TraceRow::new(trace_id, row));
        let (span, service) = (&row.span, row.origin.service);
        if span.parent_span_id.is_empty() && t.root_code.is_none() {
            t.root = (service, span.name);
            t.root_code = Some(span.status_code);
        }
        t.any_ok |= span.status_code == STATUS_OK;
        t.start = t.start.min(span.start);
        t.end = t.end.max(span.end);
        t.span_count += 1;
        if span.status_code == STATUS_ERROR {
            t.error_count += 1;
            insert_new(&mut t.error_services, service);
        }
        insert_new(&mut t.services, service);
        insert_new(&mut t.operations, (service, span.name));
        // A resource's attributes are the same for all its spans: read once per trace.
        if self.indexed.is_empty() || t.origins.iter().any(|o| std::ptr::eq(*o, row.origin)) {
            return;
        }
        t.origins.push(row.origin);
        for &(key, value) in &row.origin.resource {
            if let Some(key) = indexed_key(self.indexed, key) {
                t.add_value(key, value, &mut self.scratch);
            }
        }
    }

    /// One attribute of the span last added by `push_fields`.
    pub(crate) fn span_attribute(&mut self, key: &'a str, value: ValueView<'a>) {
        if let (Some(key), Some(t)) = (indexed_key(self.indexed, key), self.open.as_mut()) {
            t.add_value(key, value, &mut self.scratch);
        }
    }

    fn close(&mut self) {
        if let Some(mut trace) = self.open.take() {
            trace.complete();
            self.done.push(trace);
        }
    }

    /// One row per trace, in the order the traces came.
    pub(crate) fn finish(mut self) -> Vec<TraceRow<'a>> {
        self.close();
        self.done
    }
}

/// `key` when it is one of the indexed attributes.
fn indexed_key<'a>(indexed: &[String], key: &'a str) -> Option<&'a str> {
    indexed.iter().any(|k| k == key).then_some(key)
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

/// Ids of the wrong length (malformed input) read as zeros, as the span table stores them.
pub fn fixed_id(id: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    if id.len() == 16 {
        out.copy_from_slice(id);
    }
    out
}
