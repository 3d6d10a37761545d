//! Applies the actions, then the allowlists (the last word, so nothing an action adds escapes).
//!
//! Cost: per attribute, an allowlist check is one hash-set lookup plus, when globs are
//! configured, one pass of a single `RegexSet` automaton over the key; deletion is an
//! in-place `retain`, so a span whose keys are all allowed costs no allocation. Hashing
//! allocates one 64-byte string per hashed value. `include`/`exclude` are checked once per
//! span and only when actions exist. The batch is re-measured only when something changed.

use async_trait::async_trait;
use metrics::{Counter, counter};

use super::actions::{self, Action, Changes, salted_hash};
use super::config::{AttributesConfig, DisallowedAction, ScopeAllowlist};
use super::matcher::{KeyMatcher, SpanMatcher};
use crate::component::names::{ATTRIBUTES_HASHED, ATTRIBUTES_REMOVED};
use crate::component::tenant::TENANT_ATTRIBUTE;
use crate::component::{
    ComponentError, Dropped, Emitter, KeyValue, ProcessError, Processor, Resource, ResourceSpans,
    Span, TraceBatch, any_value,
};

/// Resource keys no allowlist removes or hashes: the tenant (routing, quotas, storage
/// partitions) and the service (every query and sampling policy depends on it).
pub const PROTECTED_RESOURCE_KEYS: [&str; 2] = [TENANT_ATTRIBUTE, "service.name"];

/// One scope's compiled allowlist.
struct ScopeRule {
    keys: KeyMatcher,
    hash: bool,
    protect: bool,
}

impl ScopeRule {
    fn new(config: &ScopeAllowlist, protect: bool) -> Result<Self, regex::Error> {
        Ok(Self {
            keys: KeyMatcher::new(&config.allowed_keys)?,
            hash: config.action == DisallowedAction::Hash,
            protect,
        })
    }

    fn keeps(&self, key: &str) -> bool {
        (self.protect && PROTECTED_RESOURCE_KEYS.contains(&key)) || self.keys.allows(key)
    }

    fn apply(&self, attrs: &mut Vec<KeyValue>, salt: &str, changes: &mut Changes) {
        if self.hash {
            for kv in attrs.iter_mut() {
                if !self.keeps(&kv.key) {
                    kv.value = Some(salted_hash(salt, kv.value.as_ref()));
                    changes.hashed += 1;
                }
            }
        } else {
            let before = attrs.len();
            attrs.retain(|kv| self.keeps(&kv.key));
            changes.removed += (before - attrs.len()) as u64;
        }
    }
}

/// The processor's own counters, resolved once.
struct AttributesMetrics {
    removed: Counter,
    hashed: Counter,
}

/// One pipeline's attributes processor.
pub struct AttributesProcessor {
    resource: Option<ScopeRule>,
    span: Option<ScopeRule>,
    event: Option<ScopeRule>,
    link: Option<ScopeRule>,
    salt: String,
    actions: Vec<Action>,
    include: Option<SpanMatcher>,
    exclude: Option<SpanMatcher>,
    metrics: AttributesMetrics,
}

fn rule(config: &Option<ScopeAllowlist>, protect: bool) -> Result<Option<ScopeRule>, String> {
    match config {
        Some(c) => ScopeRule::new(c, protect)
            .map(Some)
            .map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

fn matcher(config: &Option<super::config::MatchConfig>) -> Result<Option<SpanMatcher>, String> {
    match config {
        Some(c) => SpanMatcher::new(c).map(Some).map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

impl AttributesProcessor {
    pub fn new(config: &AttributesConfig, id: &str) -> Result<Self, ComponentError> {
        let err = |m: String| ComponentError::other(id, m);
        let mut compiled = Vec::with_capacity(config.actions.len());
        for (i, a) in config.actions.iter().enumerate() {
            compiled.push(actions::compile(a).map_err(|e| err(format!("actions[{i}]: {e}")))?);
        }
        let list = &config.allowlist;
        Ok(Self {
            resource: rule(&list.resource, true).map_err(err)?,
            span: rule(&list.span, false).map_err(err)?,
            event: rule(&list.event, false).map_err(err)?,
            link: rule(&list.link, false).map_err(err)?,
            salt: config.hash_salt.clone(),
            actions: compiled,
            include: matcher(&config.include).map_err(err)?,
            exclude: matcher(&config.exclude).map_err(err)?,
            metrics: AttributesMetrics {
                removed: counter!(ATTRIBUTES_REMOVED, "processor" => id.to_string()),
                hashed: counter!(ATTRIBUTES_HASHED, "processor" => id.to_string()),
            },
        })
    }

    /// Applies everything to one resource's spans.
    pub fn apply(&self, rs: &mut ResourceSpans, changes: &mut Changes) {
        let service = service_name(rs.resource.as_ref());
        for ss in &mut rs.scope_spans {
            for span in &mut ss.spans {
                self.apply_span(service, span, changes);
            }
        }
        if let (Some(rule), Some(resource)) = (&self.resource, rs.resource.as_mut()) {
            rule.apply(&mut resource.attributes, &self.salt, changes);
        }
    }

    fn apply_span(&self, service: Option<&str>, span: &mut Span, changes: &mut Changes) {
        if !self.actions.is_empty() && self.selected(service, span) {
            for action in &self.actions {
                action.apply(&mut span.attributes, &self.salt, changes);
            }
        }
        if let Some(rule) = &self.span {
            rule.apply(&mut span.attributes, &self.salt, changes);
        }
        if let Some(rule) = &self.event {
            for event in &mut span.events {
                rule.apply(&mut event.attributes, &self.salt, changes);
            }
        }
        if let Some(rule) = &self.link {
            for link in &mut span.links {
                rule.apply(&mut link.attributes, &self.salt, changes);
            }
        }
    }

    fn selected(&self, service: Option<&str>, span: &Span) -> bool {
        let included = self
            .include
            .as_ref()
            .is_none_or(|m| m.matches(service, span));
        let excluded = self
            .exclude
            .as_ref()
            .is_some_and(|m| m.matches(service, span));
        included && !excluded
    }
}

/// The resource's `service.name`, if it is a string.
fn service_name(resource: Option<&Resource>) -> Option<&str> {
    for kv in &resource?.attributes {
        if kv.key == "service.name"
            && let Some(any_value::Value::StringValue(s)) =
                kv.value.as_ref().and_then(|v| v.value.as_ref())
        {
            return Some(s);
        }
    }
    None
}

#[async_trait]
impl Processor for AttributesProcessor {
    async fn process(
        &mut self,
        mut batch: TraceBatch,
        out: &mut Emitter,
        _dropped: &mut Dropped,
    ) -> Result<(), ProcessError> {
        let mut changes = Changes::default();
        for rs in batch.resource_spans_mut() {
            self.apply(rs, &mut changes);
        }
        if changes.any() {
            self.metrics.removed.increment(changes.removed);
            self.metrics.hashed.increment(changes.hashed);
            batch.remeasure();
        }
        out.emit(batch);
        Ok(())
    }
}
