//! Walks every resource, span, event and link attribute (at any depth) and every span and
//! event name, masking what the configured detectors find.
//!
//! Cost: a string value costs one pass of one `RegexSet` automaton (all detectors and
//! `blocked_values` together) and, when `blocked_key_patterns` is set, one pass over its key;
//! `db.statement` and URL keys are recognised by comparing the key with a few constants.
//! Only a value that matches is re-scanned by the individual regexes, and only a value that
//! changes allocates its replacement; integers, booleans and bytes are never looked at.
//! The batch is re-measured only when something changed.

use async_trait::async_trait;
use metrics::{Counter, counter};
use regex::RegexSet;

use super::config::{Detector, SanitizerConfig};
use super::detectors::Scanner;
use super::mask::Masker;
use super::{sql, url};
use crate::component::names::SANITIZER_MASKED_VALUES;
use crate::component::tenant::TENANT_ATTRIBUTE;
use crate::component::{
    AnyValue, ComponentError, Dropped, Emitter, KeyValue, ProcessError, Processor, Span,
    TraceBatch, any_value::Value,
};

/// Summary attribute: how many attribute values of the span were masked.
pub const MASKED_COUNT_KEY: &str = "sanitizer.masked.count";
/// Summary attribute: the keys whose values were masked, sorted, comma-separated.
pub const MASKED_KEYS_KEY: &str = "sanitizer.masked.keys";

/// Resource keys the sanitizer never changes: the tenant and the service.
pub const PROTECTED_RESOURCE_KEYS: [&str; 2] = [TENANT_ATTRIBUTE, "service.name"];

const DB_STATEMENT_KEYS: [&str; 2] = ["db.statement", "db.query.text"];

/// What masked a value: the `detector` label of the masked-values metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Detector(Detector),
    BlockedValue,
    BlockedKey,
    DbStatement,
    UrlQuery,
}

const LABELS: usize = 11;

impl Label {
    fn index(self) -> usize {
        match self {
            Label::Detector(d) => d as usize,
            Label::BlockedValue => 7,
            Label::BlockedKey => 8,
            Label::DbStatement => 9,
            Label::UrlQuery => 10,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Label::Detector(d) => d.as_str(),
            Label::BlockedValue => "blocked_value",
            Label::BlockedKey => "blocked_key",
            Label::DbStatement => "db_statement",
            Label::UrlQuery => "url_query",
        }
    }
}

/// What one batch masked, and what the current span masked (for its summary).
#[derive(Default)]
struct Tally {
    per_label: [u64; LABELS],
    span_count: i64,
    span_keys: Vec<String>,
}

impl Tally {
    fn add(&mut self, label: Label) {
        self.per_label[label.index()] += 1;
    }

    fn record_key(&mut self, key: &str) {
        self.span_count += 1;
        if !self.span_keys.iter().any(|k| k == key) {
            self.span_keys.push(key.to_string());
        }
    }
}

/// One pipeline's sanitizer.
pub struct SanitizerProcessor {
    scanner: Scanner,
    blocked_keys: Option<RegexSet>,
    masker: Masker,
    db_statement: bool,
    url_query: bool,
    summary: bool,
    counters: Vec<Option<Counter>>,
}

impl SanitizerProcessor {
    pub fn new(config: &SanitizerConfig, id: &str) -> Result<Self, ComponentError> {
        let err = |e: regex::Error| ComponentError::other(id, e.to_string());
        let scanner = Scanner::new(
            &config.detectors,
            &config.blocked_values,
            &config.allowed_values,
        )
        .map_err(err)?;
        let blocked_keys = if config.blocked_key_patterns.is_empty() {
            None
        } else {
            Some(RegexSet::new(&config.blocked_key_patterns).map_err(err)?)
        };
        let masker = if config.hashes() {
            Masker::Hash {
                salt: config.hash_salt.clone(),
            }
        } else {
            Masker::Fixed(config.mask.clone())
        };
        Ok(Self {
            scanner,
            blocked_keys,
            masker,
            db_statement: config.db_statement,
            url_query: config.url_query,
            summary: config.summary,
            counters: counters(config, id),
        })
    }

    /// Sanitizes one span: attributes, events, links, names and status message.
    fn sanitize_span(&self, span: &mut Span, tally: &mut Tally) {
        tally.span_count = 0;
        tally.span_keys.clear();
        self.sanitize_attrs(&mut span.attributes, tally);
        for event in &mut span.events {
            self.sanitize_name(&mut event.name, tally);
            self.sanitize_attrs(&mut event.attributes, tally);
        }
        for link in &mut span.links {
            self.sanitize_attrs(&mut link.attributes, tally);
        }
        self.sanitize_name(&mut span.name, tally);
        if let Some(status) = &mut span.status
            && let Some(clean) = self.scan(&status.message, tally)
        {
            status.message = clean;
        }
        if self.summary && tally.span_count > 0 {
            add_summary(span, tally);
        }
    }

    fn sanitize_attrs(&self, attrs: &mut [KeyValue], tally: &mut Tally) {
        for kv in attrs {
            if self.sanitize_kv(kv, tally) {
                tally.record_key(&kv.key);
            }
        }
    }

    /// Resource attributes, except the tenant and the service: a broad key pattern must not
    /// break routing, quotas and queries, which depend on them.
    fn sanitize_resource(&self, attrs: &mut [KeyValue], tally: &mut Tally) {
        for kv in attrs {
            if !PROTECTED_RESOURCE_KEYS.contains(&kv.key.as_str()) {
                self.sanitize_kv(kv, tally);
            }
        }
    }

    /// True when the value changed.
    fn sanitize_kv(&self, kv: &mut KeyValue, tally: &mut Tally) -> bool {
        if self
            .blocked_keys
            .as_ref()
            .is_some_and(|b| b.is_match(&kv.key))
        {
            return self.mask_whole(kv, tally);
        }
        match &mut kv.value {
            Some(value) => self.sanitize_value(&kv.key, value, tally),
            None => false,
        }
    }

    fn mask_whole(&self, kv: &mut KeyValue, tally: &mut Tally) -> bool {
        let text = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            None => return false,
            Some(Value::StringValue(s)) if self.masker.is_masked(s) => return false,
            Some(Value::StringValue(s)) => s.clone(),
            Some(other) => format!("{other:?}"),
        };
        kv.value = Some(AnyValue {
            value: Some(Value::StringValue(self.masker.mask(&text))),
        });
        tally.add(Label::BlockedKey);
        true
    }

    fn sanitize_value(&self, key: &str, value: &mut AnyValue, tally: &mut Tally) -> bool {
        match &mut value.value {
            Some(Value::StringValue(s)) => match self.sanitize_string(key, s, tally) {
                Some(clean) => {
                    *s = clean;
                    true
                }
                None => false,
            },
            Some(Value::ArrayValue(array)) => {
                let mut changed = false;
                for item in &mut array.values {
                    changed |= self.sanitize_value(key, item, tally);
                }
                changed
            }
            Some(Value::KvlistValue(list)) => {
                let mut changed = false;
                for kv in &mut list.values {
                    changed |= self.sanitize_kv(kv, tally);
                }
                changed
            }
            _ => false,
        }
    }

    fn sanitize_string(&self, key: &str, text: &str, tally: &mut Tally) -> Option<String> {
        let mut current: Option<String> = None;
        if self.db_statement
            && DB_STATEMENT_KEYS.contains(&key)
            && let Some(clean) = sql::obfuscate(text)
        {
            tally.add(Label::DbStatement);
            current = Some(clean);
        }
        if self.url_query && url::URL_KEYS.contains(&key) {
            let source = current.as_deref().unwrap_or(text);
            if let Some(clean) = url::sanitize(source, key == "url.query", &self.masker) {
                tally.add(Label::UrlQuery);
                current = Some(clean);
            }
        }
        let source = current.as_deref().unwrap_or(text);
        self.scan(source, tally).or(current)
    }

    fn sanitize_name(&self, name: &mut String, tally: &mut Tally) {
        if self.url_query
            && url::name_has_query(name)
            && let Some(clean) = url::sanitize(name, false, &self.masker)
        {
            tally.add(Label::UrlQuery);
            *name = clean;
        }
        if let Some(clean) = self.scan(name, tally) {
            *name = clean;
        }
    }

    fn scan(&self, text: &str, tally: &mut Tally) -> Option<String> {
        self.scanner
            .scan(text, &self.masker, &mut |label| tally.add(label))
    }

    fn record(&self, tally: &Tally) {
        for (i, n) in tally.per_label.iter().enumerate() {
            if *n > 0
                && let Some(c) = &self.counters[i]
            {
                c.increment(*n);
            }
        }
    }
}

/// One counter per enabled label, resolved once.
fn counters(config: &SanitizerConfig, id: &str) -> Vec<Option<Counter>> {
    let mut labels: Vec<Label> = config
        .detectors
        .iter()
        .map(|d| Label::Detector(*d))
        .collect();
    let optional = [
        (!config.blocked_values.is_empty(), Label::BlockedValue),
        (!config.blocked_key_patterns.is_empty(), Label::BlockedKey),
        (config.db_statement, Label::DbStatement),
        (config.url_query, Label::UrlQuery),
    ];
    labels.extend(optional.iter().filter(|(on, _)| *on).map(|(_, l)| *l));
    let mut out = vec![None; LABELS];
    for label in labels {
        out[label.index()] = Some(
            counter!(SANITIZER_MASKED_VALUES, "processor" => id.to_string(), "detector" => label.as_str()),
        );
    }
    out
}

/// Sets the summary attributes, replacing any a sender supplied.
fn add_summary(span: &mut Span, tally: &mut Tally) {
    tally.span_keys.sort_unstable();
    let keys = tally.span_keys.join(",");
    span.attributes
        .retain(|kv| kv.key != MASKED_COUNT_KEY && kv.key != MASKED_KEYS_KEY);
    span.attributes.push(KeyValue {
        key: MASKED_COUNT_KEY.to_string(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(tally.span_count)),
        }),
        ..Default::default()
    });
    span.attributes.push(KeyValue {
        key: MASKED_KEYS_KEY.to_string(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(keys)),
        }),
        ..Default::default()
    });
}

#[async_trait]
impl Processor for SanitizerProcessor {
    async fn process(
        &mut self,
        mut batch: TraceBatch,
        out: &mut Emitter,
        _dropped: &mut Dropped,
    ) -> Result<(), ProcessError> {
        let mut tally = Tally::default();
        for rs in batch.resource_spans_mut() {
            if let Some(resource) = &mut rs.resource {
                self.sanitize_resource(&mut resource.attributes, &mut tally);
            }
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    self.sanitize_span(span, &mut tally);
                }
            }
        }
        if tally.per_label.iter().any(|n| *n > 0) {
            self.record(&tally);
            batch.remeasure();
        }
        out.emit(batch);
        Ok(())
    }
}
