//! Compiled matchers: allowlist keys (exact + globs) and the `include`/`exclude` span selectors.

use std::collections::HashSet;

use regex::{Regex, RegexSet};

use super::config::{MatchConfig, MatchType, span_kind_number};
use crate::component::{AnyValue, KeyValue, Span, any_value};

/// The keys of one scope's allowlist: a hash set for exact keys and one `RegexSet` for all
/// globs, so a key costs one hash lookup plus at most one automaton pass.
#[derive(Debug)]
pub struct KeyMatcher {
    all: bool,
    exact: HashSet<String>,
    globs: Option<RegexSet>,
}

impl KeyMatcher {
    pub fn new(patterns: &[String]) -> Result<Self, regex::Error> {
        let mut exact = HashSet::new();
        let mut globs = Vec::new();
        let mut all = false;
        for p in patterns {
            if p == "*" {
                all = true;
            } else if p.contains(['*', '?']) {
                globs.push(glob_to_regex(p));
            } else {
                exact.insert(p.clone());
            }
        }
        let globs = if globs.is_empty() {
            None
        } else {
            Some(RegexSet::new(&globs)?)
        };
        Ok(Self { all, exact, globs })
    }

    pub fn allows(&self, key: &str) -> bool {
        self.all || self.exact.contains(key) || self.globs.as_ref().is_some_and(|g| g.is_match(key))
    }
}

/// An anchored regex equivalent to a glob where `*` is any run and `?` one character.
pub fn glob_to_regex(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 8);
    out.push('^');
    let mut literal = [0u8; 4];
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            _ => out.push_str(&regex::escape(c.encode_utf8(&mut literal))),
        }
    }
    out.push('$');
    out
}

/// Strings compared exactly or by regex, depending on `match_type`.
#[derive(Debug)]
enum Strings {
    Strict(Vec<String>),
    Regexp(Vec<Regex>),
}

impl Strings {
    fn new(match_type: MatchType, items: &[String]) -> Result<Self, regex::Error> {
        Ok(match match_type {
            MatchType::Strict => Strings::Strict(items.to_vec()),
            MatchType::Regexp => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(Regex::new(item)?);
                }
                Strings::Regexp(out)
            }
        })
    }

    fn is_empty(&self) -> bool {
        match self {
            Strings::Strict(v) => v.is_empty(),
            Strings::Regexp(v) => v.is_empty(),
        }
    }

    fn any_matches(&self, text: &str) -> bool {
        match self {
            Strings::Strict(v) => v.iter().any(|s| s == text),
            Strings::Regexp(v) => v.iter().any(|r| r.is_match(text)),
        }
    }
}

/// One attribute condition: the key, and optionally its value as text.
#[derive(Debug)]
struct AttrCondition {
    key: String,
    value: Option<Strings>,
}

/// A compiled `include`/`exclude` block.
#[derive(Debug)]
pub struct SpanMatcher {
    services: Strings,
    span_names: Strings,
    span_kinds: Vec<i32>,
    attributes: Vec<AttrCondition>,
}

impl SpanMatcher {
    pub fn new(config: &MatchConfig) -> Result<Self, regex::Error> {
        let mt = config.match_type;
        let mut attributes = Vec::with_capacity(config.attributes.len());
        for a in &config.attributes {
            let value = match &a.value {
                Some(v) => Some(Strings::new(mt, std::slice::from_ref(v))?),
                None => None,
            };
            attributes.push(AttrCondition {
                key: a.key.clone(),
                value,
            });
        }
        Ok(Self {
            services: Strings::new(mt, &config.services)?,
            span_names: Strings::new(mt, &config.span_names)?,
            span_kinds: config
                .span_kinds
                .iter()
                .filter_map(|k| span_kind_number(k))
                .collect(),
            attributes,
        })
    }

    /// True when every configured property matches the span (service from its resource).
    pub fn matches(&self, service: Option<&str>, span: &Span) -> bool {
        if !self.services.is_empty() && !service.is_some_and(|s| self.services.any_matches(s)) {
            return false;
        }
        if !self.span_names.is_empty() && !self.span_names.any_matches(&span.name) {
            return false;
        }
        if !self.span_kinds.is_empty() && !self.span_kinds.contains(&span.kind) {
            return false;
        }
        self.attributes
            .iter()
            .all(|cond| attribute_matches(cond, &span.attributes))
    }
}

fn attribute_matches(cond: &AttrCondition, attributes: &[KeyValue]) -> bool {
    let Some(kv) = attributes.iter().find(|kv| kv.key == cond.key) else {
        return false;
    };
    match &cond.value {
        None => true,
        Some(expected) => match value_text(kv.value.as_ref()) {
            Some(text) => expected.any_matches(&text),
            None => false,
        },
    }
}

/// A scalar value as text, the way the Collector compares attribute values.
pub fn value_text(value: Option<&AnyValue>) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    match value?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(Cow::Borrowed(s)),
        any_value::Value::IntValue(i) => Some(Cow::Owned(i.to_string())),
        any_value::Value::DoubleValue(d) => Some(Cow::Owned(d.to_string())),
        any_value::Value::BoolValue(b) => Some(Cow::Owned(b.to_string())),
        _ => None,
    }
}
