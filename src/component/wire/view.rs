//! Reading a request in place: where its spans, resources and scopes are, and their fields
//! and attributes borrowed from the bytes, for the trace store, which turns spans into
//! columns without building opentelemetry-proto's structs.
//!
//! Checks are the decoder's (each read returns its error), but what a reader skips (an
//! attribute list it does not walk) is not checked: a caller with bytes of unknown origin
//! runs [`scan_request`](super::scan_request) first. A field seen twice keeps its last
//! value; a message field seen twice (a resource, a scope) is read as all its occurrences,
//! as a decoder merges them.

use std::ops::Range;

use super::{Cursor, Result};

/// One `ResourceSpans` entry: its `resource` occurrences and its scopes.
#[derive(Debug, Default, Clone)]
pub(crate) struct ResourceAt {
    pub bodies: Vec<Range<usize>>,
    pub scopes: Vec<ScopeAt>,
}

/// One `ScopeSpans` entry: its `scope` occurrences and the body of each span.
#[derive(Debug, Default, Clone)]
pub(crate) struct ScopeAt {
    pub bodies: Vec<Range<usize>>,
    pub spans: Vec<Range<usize>>,
}

/// Where every resource, scope and span of a request is.
pub(crate) fn request_layout(buf: &[u8]) -> Result<Vec<ResourceAt>> {
    let mut c = Cursor {
        buf,
        pos: 0,
        end: buf.len(),
        message: "ExportTraceServiceRequest",
    };
    let mut out = Vec::new();
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => {
                let mut resource = ResourceAt::default();
                c.nested(wire, "resource_spans", 1, &mut resource, resource_spans)?;
                out.push(resource);
            }
            _ => c.skip(field, wire, 1)?,
        }
    }
    Ok(out)
}

fn resource_spans(c: &mut Cursor<'_>, depth: u32, out: &mut ResourceAt) -> Result<()> {
    c.message = "ResourceSpans";
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => out.bodies.push(body(c, wire, "resource")?),
            2 => {
                let mut scope = ScopeAt::default();
                c.nested(wire, "scope_spans", depth, &mut scope, scope_spans)?;
                out.scopes.push(scope);
            }
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn scope_spans(c: &mut Cursor<'_>, depth: u32, out: &mut ScopeAt) -> Result<()> {
    c.message = "ScopeSpans";
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => out.bodies.push(body(c, wire, "scope")?),
            2 => out.spans.push(body(c, wire, "spans")?),
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

/// Where a length-delimited field's body is.
fn body(c: &mut Cursor<'_>, wire: u8, field: &'static str) -> Result<Range<usize>> {
    let bytes = c.bytes(wire, field)?;
    Ok(c.pos - bytes.len()..c.pos)
}

fn cursor<'a>(body: &'a [u8], message: &'static str) -> Cursor<'a> {
    Cursor {
        buf: body,
        pos: 0,
        end: body.len(),
        message,
    }
}

/// An attribute value as the request holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ValueView<'a> {
    Unset,
    Text(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    /// An array, key-value list or string-table index: the whole `AnyValue` body, for
    /// the rare reader that needs it decoded.
    Other(&'a [u8]),
}

/// Calls `f` with the key and value of every attribute held in `field` of a message body.
pub(crate) fn for_each_attribute<'a>(
    body: &'a [u8],
    field: u32,
    mut f: impl FnMut(&'a str, ValueView<'a>),
) -> Result<()> {
    let mut c = cursor(body, "attributes");
    while let Some((number, wire)) = c.key()? {
        if number == field {
            let (key, value) = key_value(&mut c, wire)?;
            f(key, value);
        } else {
            c.skip(number, wire, 1)?;
        }
    }
    Ok(())
}

// Inlined into each attribute walk: returned through memory, the pair's value was read
// back across two stores (a stalled load per attribute in the profile).
#[inline(always)]
fn key_value<'a>(c: &mut Cursor<'a>, wire: u8) -> Result<(&'a str, ValueView<'a>)> {
    let mut out = ("", ValueView::Unset);
    c.nested(wire, "attributes", 2, &mut out, |c, depth, out| {
        c.message = "KeyValue";
        while let Some((field, wire)) = c.key()? {
            match field {
                1 => out.0 = c.text(wire, "key")?,
                2 => c.nested(wire, "value", depth, &mut out.1, any_value)?,
                _ => c.skip(field, wire, depth)?,
            }
        }
        Ok(())
    })?;
    Ok(out)
}

#[inline(always)]
fn any_value<'a>(c: &mut Cursor<'a>, depth: u32, out: &mut ValueView<'a>) -> Result<()> {
    c.message = "AnyValue";
    let whole = &c.buf[c.pos..c.end];
    while let Some((field, wire)) = c.key()? {
        *out = match field {
            1 => ValueView::Text(c.text(wire, "string_value")?),
            2 => ValueView::Bool(c.uint(wire, "bool_value")? != 0),
            3 => ValueView::Int(c.uint(wire, "int_value")? as i64),
            4 => ValueView::Double(f64::from_bits(c.fixed64(wire, "double_value")?)),
            7 => ValueView::Bytes(c.bytes(wire, "bytes_value")?),
            5..=8 => {
                c.skip(field, wire, depth)?;
                ValueView::Other(whole)
            }
            _ => {
                c.skip(field, wire, depth)?;
                continue;
            }
        };
    }
    Ok(())
}

/// A span's fields; its attributes, events and links are read from the parts of `body`
/// that hold them.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SpanView<'a> {
    pub body: &'a [u8],
    /// From the first to the end of the last occurrence of the attributes, events and
    /// links fields (empty when there are none): walking a span's body for each was most
    /// of reading it again, and most spans have no events or links.
    attributes: &'a [u8],
    events: &'a [u8],
    links: &'a [u8],
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub trace_state: &'a str,
    pub parent_span_id: &'a [u8],
    pub name: &'a str,
    pub kind: i32,
    pub start: u64,
    pub end: u64,
    pub dropped_attributes: u32,
    pub dropped_events: u32,
    pub dropped_links: u32,
    pub status_code: i32,
    pub status_message: &'a str,
    pub flags: u32,
}

/// Field numbers of a span's repeated messages.
pub(crate) const SPAN_ATTRIBUTES: u32 = 9;
const SPAN_EVENTS: u32 = 11;
const SPAN_LINKS: u32 = 13;

impl<'a> SpanView<'a> {
    pub fn read(body: &'a [u8]) -> Result<Self> {
        let mut out = SpanView {
            body,
            ..Default::default()
        };
        let mut c = cursor(body, "Span");
        let mut parts = [(0, 0); 3];
        loop {
            let at = c.pos;
            let Some((field, wire)) = c.key()? else {
                break;
            };
            match field {
                1 => out.trace_id = c.bytes(wire, "trace_id")?,
                2 => out.span_id = c.bytes(wire, "span_id")?,
                3 => out.trace_state = c.text(wire, "trace_state")?,
                4 => out.parent_span_id = c.bytes(wire, "parent_span_id")?,
                5 => out.name = c.text(wire, "name")?,
                6 => out.kind = c.uint(wire, "kind")? as i32,
                7 => out.start = c.fixed64(wire, "start_time_unix_nano")?,
                8 => out.end = c.fixed64(wire, "end_time_unix_nano")?,
                10 => out.dropped_attributes = c.uint(wire, "dropped_attributes_count")? as u32,
                12 => out.dropped_events = c.uint(wire, "dropped_events_count")? as u32,
                14 => out.dropped_links = c.uint(wire, "dropped_links_count")? as u32,
                15 => c.nested(wire, "status", 2, &mut out, status)?,
                16 => out.flags = c.fixed32(wire, "flags")?,
                SPAN_ATTRIBUTES | SPAN_EVENTS | SPAN_LINKS => {
                    c.skip(field, wire, 2)?;
                    let which = match field {
                        SPAN_ATTRIBUTES => 0,
                        SPAN_EVENTS => 1,
                        _ => 2,
                    };
                    let part = &mut parts[which];
                    if part.1 == 0 {
                        part.0 = at;
                    }
                    part.1 = c.pos;
                }
                _ => c.skip(field, wire, 2)?,
            }
        }
        let [attributes, events, links] = parts.map(|(from, to)| &body[from..to]);
        out.attributes = attributes;
        out.events = events;
        out.links = links;
        Ok(out)
    }

    /// Only a span's trace id and start time (what a span is sorted and partitioned by),
    /// read without checking or keeping its other fields.
    pub fn sort_key(body: &'a [u8]) -> Result<(&'a [u8], u64)> {
        let (mut trace_id, mut start) = (&[][..], 0);
        let mut c = cursor(body, "Span");
        while let Some((field, wire)) = c.key()? {
            match field {
                1 => trace_id = c.bytes(wire, "trace_id")?,
                7 => start = c.fixed64(wire, "start_time_unix_nano")?,
                _ => c.skip(field, wire, 2)?,
            }
        }
        Ok((trace_id, start))
    }

    pub fn for_each_attribute(&self, f: impl FnMut(&'a str, ValueView<'a>)) -> Result<()> {
        for_each_attribute(self.attributes, SPAN_ATTRIBUTES, f)
    }

    /// Calls `f` with each event, in order.
    pub fn for_each_event(&self, mut f: impl FnMut(EventView<'a>)) -> Result<()> {
        each_message(self.events, SPAN_EVENTS, |body| {
            f(EventView::read(body)?);
            Ok(())
        })
    }

    /// Calls `f` with each link, in order.
    pub fn for_each_link(&self, mut f: impl FnMut(LinkView<'a>)) -> Result<()> {
        each_message(self.links, SPAN_LINKS, |body| {
            f(LinkView::read(body)?);
            Ok(())
        })
    }
}

fn status<'a>(c: &mut Cursor<'a>, depth: u32, out: &mut SpanView<'a>) -> Result<()> {
    c.message = "Status";
    while let Some((field, wire)) = c.key()? {
        match field {
            2 => out.status_message = c.text(wire, "message")?,
            3 => out.status_code = c.uint(wire, "code")? as i32,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

/// Calls `f` with the body of every occurrence of `field` in a message body.
fn each_message<'a>(
    body: &'a [u8],
    field: u32,
    mut f: impl FnMut(&'a [u8]) -> Result<()>,
) -> Result<()> {
    let mut c = cursor(body, "Span");
    while let Some((number, wire)) = c.key()? {
        if number == field {
            f(c.bytes(wire, "events or links")?)?;
        } else {
            c.skip(number, wire, 2)?;
        }
    }
    Ok(())
}

/// A span event; its attributes are field 3 of `body`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct EventView<'a> {
    pub body: &'a [u8],
    pub time: u64,
    pub name: &'a str,
    pub dropped_attributes: u32,
}

pub(crate) const EVENT_ATTRIBUTES: u32 = 3;

impl<'a> EventView<'a> {
    fn read(body: &'a [u8]) -> Result<Self> {
        let mut out = EventView {
            body,
            ..Default::default()
        };
        let mut c = cursor(body, "Event");
        while let Some((field, wire)) = c.key()? {
            match field {
                1 => out.time = c.fixed64(wire, "time_unix_nano")?,
                2 => out.name = c.text(wire, "name")?,
                4 => out.dropped_attributes = c.uint(wire, "dropped_attributes_count")? as u32,
                _ => c.skip(field, wire, 3)?,
            }
        }
        Ok(out)
    }
}

/// A span link; its attributes are field 4 of `body`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LinkView<'a> {
    pub body: &'a [u8],
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub trace_state: &'a str,
    pub dropped_attributes: u32,
    pub flags: u32,
}

pub(crate) const LINK_ATTRIBUTES: u32 = 4;

impl<'a> LinkView<'a> {
    fn read(body: &'a [u8]) -> Result<Self> {
        let mut out = LinkView {
            body,
            ..Default::default()
        };
        let mut c = cursor(body, "Link");
        while let Some((field, wire)) = c.key()? {
            match field {
                1 => out.trace_id = c.bytes(wire, "trace_id")?,
                2 => out.span_id = c.bytes(wire, "span_id")?,
                3 => out.trace_state = c.text(wire, "trace_state")?,
                5 => out.dropped_attributes = c.uint(wire, "dropped_attributes_count")? as u32,
                6 => out.flags = c.fixed32(wire, "flags")?,
                _ => c.skip(field, wire, 3)?,
            }
        }
        Ok(out)
    }
}

/// A scope's name and version (the last of its occurrences that sets them); its
/// attributes are field 3 of each body.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ScopeView<'a> {
    pub name: &'a str,
    pub version: &'a str,
}

pub(crate) const SCOPE_ATTRIBUTES: u32 = 3;
pub(crate) const RESOURCE_ATTRIBUTES: u32 = 1;

impl<'a> ScopeView<'a> {
    pub fn read(bodies: impl IntoIterator<Item = &'a [u8]>) -> Result<Self> {
        let mut out = ScopeView::default();
        for body in bodies {
            let mut c = cursor(body, "InstrumentationScope");
            while let Some((field, wire)) = c.key()? {
                match field {
                    1 => out.name = c.text(wire, "name")?,
                    2 => out.version = c.text(wire, "version")?,
                    _ => c.skip(field, wire, 2)?,
                }
            }
        }
        Ok(out)
    }
}
