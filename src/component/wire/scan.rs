//! Validating a request without building it: the same checks as the decoder, no allocation
//! per span.
//!
//! A receiver whose pipelines only forward, store the wire form or drop spans need not
//! build opentelemetry-proto's structs at all: this pass refuses exactly what
//! [`decode_request`](super::decode_request) refuses, with the same error, and reports
//! what the receiver must know before accepting a request: how many spans it holds, how
//! many have invalid ids, and which `tenant.id` each resource claims.

use std::ops::Range;

use super::{Cursor, Result, span_ids_problem};
use crate::component::tenant::TENANT_ATTRIBUTE;

/// What a valid request holds.
#[derive(Debug, Default)]
pub(crate) struct Scan<'a> {
    pub spans: usize,
    /// Spans whose trace or span id is invalid (see `span_ids_problem`).
    pub invalid_spans: usize,
    /// Every `resource_spans` entry, in order.
    pub resources: Vec<ScannedResource<'a>>,
}

/// One `ResourceSpans` entry of a request.
#[derive(Debug)]
pub(crate) struct ScannedResource<'a> {
    /// Where its field starts (tag and length included).
    pub field_start: usize,
    /// Its message body.
    pub body: Range<usize>,
    pub tenant: TenantClaim<'a>,
}

/// The `tenant.id` attributes of a resource, as a decoder would see them once every
/// occurrence of the resource is merged.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TenantClaim<'a> {
    /// How many attributes have the key.
    pub count: usize,
    /// The first one's value: `Some(None)` when it is not a string.
    pub first: Option<Option<&'a str>>,
}

/// Checks a whole request as `decode_request` would decode it.
pub(crate) fn scan_request(buf: &[u8]) -> Result<Scan<'_>> {
    let mut c = Cursor {
        buf,
        pos: 0,
        end: buf.len(),
        message: "ExportTraceServiceRequest",
    };
    let mut scan = Scan::default();
    loop {
        let field_start = c.pos;
        let Some((field, wire)) = c.key()? else { break };
        match field {
            1 => {
                let mut found = ScannedResource {
                    field_start,
                    body: 0..0,
                    tenant: TenantClaim::default(),
                };
                c.nested(
                    wire,
                    "resource_spans",
                    1,
                    &mut (&mut scan, &mut found),
                    |c, depth, (scan, found)| {
                        found.body = c.pos..c.end;
                        resource_spans(c, depth, scan, &mut found.tenant)
                    },
                )?;
                scan.resources.push(found);
            }
            _ => c.skip(field, wire, 1)?,
        }
    }
    Ok(scan)
}

fn resource_spans<'a>(
    c: &mut Cursor<'a>,
    depth: u32,
    scan: &mut Scan<'a>,
    tenant: &mut TenantClaim<'a>,
) -> Result<()> {
    c.message = "ResourceSpans";
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => c.nested(wire, "resource", depth, tenant, resource)?,
            2 => c.nested(wire, "scope_spans", depth, scan, scope_spans)?,
            3 => c.text(wire, "schema_url").map(drop)?,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn resource<'a>(c: &mut Cursor<'a>, depth: u32, tenant: &mut TenantClaim<'a>) -> Result<()> {
    c.message = "Resource";
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => {
                let (key, value) = key_value(c, wire, depth)?;
                if key == TENANT_ATTRIBUTE {
                    tenant.count += 1;
                    if tenant.first.is_none() {
                        tenant.first = Some(match value {
                            Value::Text(text) => Some(text),
                            Value::Unset | Value::Other => None,
                        });
                    }
                }
            }
            2 => c.uint(wire, "dropped_attributes_count").map(drop)?,
            3 => c.nested(wire, "entity_refs", depth, &mut (), entity_ref)?,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn entity_ref(c: &mut Cursor<'_>, depth: u32, _: &mut ()) -> Result<()> {
    c.message = "EntityRef";
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => c.text(wire, "schema_url").map(drop)?,
            2 => c.text(wire, "type").map(drop)?,
            3 => c.text(wire, "id_keys").map(drop)?,
            4 => c.text(wire, "description_keys").map(drop)?,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn scope_spans(c: &mut Cursor<'_>, depth: u32, scan: &mut Scan<'_>) -> Result<()> {
    c.message = "ScopeSpans";
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => c.nested(wire, "scope", depth, &mut (), scope)?,
            2 => {
                let mut ids = (&[][..], &[][..]);
                c.nested(wire, "spans", depth, &mut ids, span)?;
                scan.spans += 1;
                if span_ids_problem(ids.0, ids.1).is_some() {
                    scan.invalid_spans += 1;
                }
            }
            3 => c.text(wire, "schema_url").map(drop)?,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn scope(c: &mut Cursor<'_>, depth: u32, _: &mut ()) -> Result<()> {
    c.message = "InstrumentationScope";
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => c.text(wire, "name").map(drop)?,
            2 => c.text(wire, "version").map(drop)?,
            3 => key_value(c, wire, depth).map(drop)?,
            4 => c.uint(wire, "dropped_attributes_count").map(drop)?,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

/// Reads a span, keeping the last trace and span id it carries.
fn span<'a>(c: &mut Cursor<'a>, depth: u32, ids: &mut (&'a [u8], &'a [u8])) -> Result<()> {
    c.message = "Span";
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => ids.0 = c.bytes(wire, "trace_id")?,
            2 => ids.1 = c.bytes(wire, "span_id")?,
            3 => c.text(wire, "trace_state").map(drop)?,
            4 => c.bytes(wire, "parent_span_id").map(drop)?,
            5 => c.text(wire, "name").map(drop)?,
            6 => c.uint(wire, "kind").map(drop)?,
            7 => c.fixed64(wire, "start_time_unix_nano").map(drop)?,
            8 => c.fixed64(wire, "end_time_unix_nano").map(drop)?,
            9 => key_value(c, wire, depth).map(drop)?,
            10 => c.uint(wire, "dropped_attributes_count").map(drop)?,
            11 => c.nested(wire, "events", depth, &mut (), event)?,
            12 => c.uint(wire, "dropped_events_count").map(drop)?,
            13 => c.nested(wire, "links", depth, &mut (), link)?,
            14 => c.uint(wire, "dropped_links_count").map(drop)?,
            15 => c.nested(wire, "status", depth, &mut (), status)?,
            16 => c.fixed32(wire, "flags").map(drop)?,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn status(c: &mut Cursor<'_>, depth: u32, _: &mut ()) -> Result<()> {
    c.message = "Status";
    while let Some((field, wire)) = c.key()? {
        match field {
            2 => c.text(wire, "message").map(drop)?,
            3 => c.uint(wire, "code").map(drop)?,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn event(c: &mut Cursor<'_>, depth: u32, _: &mut ()) -> Result<()> {
    c.message = "Event";
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => c.fixed64(wire, "time_unix_nano").map(drop)?,
            2 => c.text(wire, "name").map(drop)?,
            3 => key_value(c, wire, depth).map(drop)?,
            4 => c.uint(wire, "dropped_attributes_count").map(drop)?,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn link(c: &mut Cursor<'_>, depth: u32, _: &mut ()) -> Result<()> {
    c.message = "Link";
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => c.bytes(wire, "trace_id").map(drop)?,
            2 => c.bytes(wire, "span_id").map(drop)?,
            3 => c.text(wire, "trace_state").map(drop)?,
            4 => key_value(c, wire, depth).map(drop)?,
            5 => c.uint(wire, "dropped_attributes_count").map(drop)?,
            6 => c.fixed32(wire, "flags").map(drop)?,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

/// What an `AnyValue` holds once every occurrence is merged (the last member set wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Unset,
    Text(&'a str),
    Other,
}

/// Reads one attribute (a `KeyValue` field): its last key and its merged value.
fn key_value<'a>(c: &mut Cursor<'a>, wire: u8, depth: u32) -> Result<(&'a str, Value<'a>)> {
    let mut out = ("", Value::Unset);
    c.nested(wire, "attributes", depth, &mut out, |c, depth, out| {
        c.message = "KeyValue";
        while let Some((field, wire)) = c.key()? {
            match field {
                1 => out.0 = c.text(wire, "key")?,
                2 => c.nested(wire, "value", depth, &mut out.1, any_value)?,
                3 => c.uint(wire, "key_strindex").map(drop)?,
                _ => c.skip(field, wire, depth)?,
            }
        }
        Ok(())
    })?;
    Ok(out)
}

fn any_value<'a>(c: &mut Cursor<'a>, depth: u32, out: &mut Value<'a>) -> Result<()> {
    c.message = "AnyValue";
    while let Some((field, wire)) = c.key()? {
        *out = match field {
            1 => Value::Text(c.text(wire, "string_value")?),
            2 => c.uint(wire, "bool_value").map(|_| Value::Other)?,
            3 => c.uint(wire, "int_value").map(|_| Value::Other)?,
            4 => c.fixed64(wire, "double_value").map(|_| Value::Other)?,
            5 => c
                .nested(wire, "array_value", depth, &mut (), array_value)
                .map(|_| Value::Other)?,
            6 => c
                .nested(wire, "kvlist_value", depth, &mut (), key_value_list)
                .map(|_| Value::Other)?,
            7 => c.bytes(wire, "bytes_value").map(|_| Value::Other)?,
            8 => c
                .uint(wire, "string_value_strindex")
                .map(|_| Value::Other)?,
            _ => {
                c.skip(field, wire, depth)?;
                continue;
            }
        };
    }
    Ok(())
}

fn array_value(c: &mut Cursor<'_>, depth: u32, _: &mut ()) -> Result<()> {
    c.message = "ArrayValue";
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => c.nested(wire, "values", depth, &mut Value::Unset, any_value)?,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn key_value_list(c: &mut Cursor<'_>, depth: u32, _: &mut ()) -> Result<()> {
    c.message = "KeyValueList";
    while let Some((field, wire)) = c.key()? {
        match field {
            1 => key_value(c, wire, depth).map(drop)?,
            _ => c.skip(field, wire, depth)?,
        }
    }
    Ok(())
}
