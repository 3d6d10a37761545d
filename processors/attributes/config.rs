//! The attributes processor's configuration: per-scope allowlists and the Collector's `actions`.

use regex::Regex;
use serde::Deserialize;

use crate::component::{ComponentConfig, Problems};

/// Which attributes survive, per scope, and which edits apply to span attributes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttributesConfig {
    /// Per-scope allowlists; a scope without an entry keeps every key.
    pub allowlist: Allowlists,
    /// Text mixed into every SHA-256 hash (allowlist `action: hash` and `hash` actions);
    /// without it hashes of guessable values (emails, ids) can be reversed by brute force.
    pub hash_salt: String,
    /// Edits of span attributes, applied in order (the Collector's `actions`).
    pub actions: Vec<ActionConfig>,
    /// `actions` apply only to spans matching this; absent: every span.
    pub include: Option<MatchConfig>,
    /// `actions` skip spans matching this.
    pub exclude: Option<MatchConfig>,
}

/// One allowlist per attribute scope.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Allowlists {
    /// Resource attributes; `tenant.id` and `service.name` are always kept.
    pub resource: Option<ScopeAllowlist>,
    /// Span attributes.
    pub span: Option<ScopeAllowlist>,
    /// Span event attributes.
    pub event: Option<ScopeAllowlist>,
    /// Span link attributes.
    pub link: Option<ScopeAllowlist>,
}

/// The keys one scope keeps and what happens to the others.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScopeAllowlist {
    /// Exact keys or globs (`*` any run of characters, `?` one character); empty keeps nothing.
    pub allowed_keys: Vec<String>,
    /// What happens to a key not allowed: `delete` (default) or `hash` (salted SHA-256 of the value).
    pub action: DisallowedAction,
}

/// The fate of an attribute whose key is not allowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisallowedAction {
    #[default]
    Delete,
    Hash,
}

/// One of the Collector's attribute actions.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionConfig {
    /// The attribute the action targets (for `extract`: the attribute read).
    pub key: String,
    /// `insert`, `update`, `upsert`, `delete`, `hash`, `extract` or `convert`.
    pub action: Option<ActionKind>,
    /// insert/update/upsert: the literal value (string, integer, float or boolean).
    pub value: Option<Literal>,
    /// insert/update/upsert: copy the value of this attribute instead of a literal.
    pub from_attribute: Option<String>,
    /// delete/hash: a regex on keys instead of `key`; extract: a regex with named captures,
    /// each capture becoming an attribute of its name.
    pub pattern: Option<String>,
    /// convert: `int`, `double`, `string` or `bool`.
    pub converted_type: Option<ConvertedType>,
}

/// The Collector's attribute action names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Insert,
    Update,
    Upsert,
    Delete,
    Hash,
    Extract,
    Convert,
}

/// A literal attribute value as written in YAML.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    Bool(bool),
    Int(i64),
    Double(f64),
    String(String),
}

/// The target type of `convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvertedType {
    Int,
    Double,
    String,
    Bool,
}

/// Which spans `include`/`exclude` select: every given property must match (within a
/// list, any entry may), as in the Collector.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchConfig {
    /// `strict` (exact equality) or `regexp`.
    pub match_type: MatchType,
    /// Values of the resource attribute `service.name`.
    pub services: Vec<String>,
    /// Span names.
    pub span_names: Vec<String>,
    /// Span kinds: `server`, `client`, `producer`, `consumer`, `internal`
    /// (or `SPAN_KIND_SERVER` ...); always matched exactly.
    pub span_kinds: Vec<String>,
    /// Span attributes: the key must be present and, with `value`, its value (as text) match.
    pub attributes: Vec<AttributeMatch>,
}

/// How match strings compare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchType {
    #[default]
    Strict,
    Regexp,
}

/// One attribute condition of `include`/`exclude`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttributeMatch {
    pub key: String,
    pub value: Option<String>,
}

/// The span kind number of a configured name, if it is one.
pub fn span_kind_number(name: &str) -> Option<i32> {
    let lower = name.to_ascii_lowercase();
    let short = lower.strip_prefix("span_kind_").unwrap_or(&lower);
    match short {
        "unspecified" => Some(0),
        "internal" => Some(1),
        "server" => Some(2),
        "client" => Some(3),
        "producer" => Some(4),
        "consumer" => Some(5),
        _ => None,
    }
}

impl ComponentConfig for AttributesConfig {
    fn validate(&self, problems: &mut Problems) {
        let scopes = [
            ("resource", &self.allowlist.resource),
            ("span", &self.allowlist.span),
            ("event", &self.allowlist.event),
            ("link", &self.allowlist.link),
        ];
        let mut hashes = false;
        for (name, scope) in scopes {
            if let Some(scope) = scope {
                validate_scope(name, scope, problems);
                hashes |= scope.action == DisallowedAction::Hash;
            }
        }
        for (i, action) in self.actions.iter().enumerate() {
            validate_action(&format!("actions[{i}]"), action, problems);
            hashes |= action.action == Some(ActionKind::Hash);
        }
        if hashes && self.hash_salt.is_empty() {
            problems.warning(
                "hash_salt",
                "is empty while values are hashed; unsalted hashes of guessable values can be reversed",
            );
        }
        for (name, m) in [("include", &self.include), ("exclude", &self.exclude)] {
            if let Some(m) = m {
                validate_match(name, m, problems);
            }
        }
    }
}

fn validate_scope(name: &str, scope: &ScopeAllowlist, problems: &mut Problems) {
    let path = format!("allowlist::{name}::allowed_keys");
    if scope.allowed_keys.is_empty() {
        let kept = if name == "resource" {
            " except tenant.id and service.name"
        } else {
            ""
        };
        problems.warning(
            path.as_str(),
            format!("is empty: every {name} attribute{kept} is removed (fail closed)"),
        );
    }
    for (i, key) in scope.allowed_keys.iter().enumerate() {
        if key.is_empty() {
            problems.error(format!("{path}[{i}]"), "must not be empty");
        }
    }
}

fn validate_action(path: &str, a: &ActionConfig, problems: &mut Problems) {
    let Some(kind) = a.action else {
        problems.error(
            format!("{path}::action"),
            "is required: one of insert, update, upsert, delete, hash, extract, convert",
        );
        return;
    };
    let uses_pattern = matches!(kind, ActionKind::Delete | ActionKind::Hash) && a.pattern.is_some();
    if a.key.is_empty() && !uses_pattern {
        problems.error(format!("{path}::key"), "is required");
    }
    match kind {
        ActionKind::Insert | ActionKind::Update | ActionKind::Upsert
            if a.value.is_some() == a.from_attribute.is_some() =>
        {
            problems.error(
                format!("{path}::value"),
                "set exactly one of value and from_attribute",
            );
        }
        ActionKind::Extract => match &a.pattern {
            None => problems.error(format!("{path}::pattern"), "is required for extract"),
            Some(p) => check_extract_pattern(&format!("{path}::pattern"), p, problems),
        },
        ActionKind::Convert if a.converted_type.is_none() => problems.error(
            format!("{path}::converted_type"),
            "is required for convert: one of int, double, string, bool",
        ),
        _ => {}
    }
    if kind != ActionKind::Extract
        && let Some(p) = &a.pattern
    {
        check_regex(&format!("{path}::pattern"), p, problems);
    }
}

fn check_extract_pattern(path: &str, pattern: &str, problems: &mut Problems) {
    match Regex::new(pattern) {
        Err(err) => problems.error(path, format!("is not a valid regex: {}", regex_error(&err))),
        Ok(re) if re.capture_names().flatten().next().is_none() => problems.error(
            path,
            "has no named capture group such as (?P<user>\\w+); extract creates one attribute per name",
        ),
        Ok(_) => {}
    }
}

fn validate_match(name: &str, m: &MatchConfig, problems: &mut Problems) {
    if m.services.is_empty()
        && m.span_names.is_empty()
        && m.span_kinds.is_empty()
        && m.attributes.is_empty()
    {
        problems.error(
            name,
            "must name at least one of services, span_names, span_kinds, attributes",
        );
    }
    if m.match_type == MatchType::Regexp {
        for (i, p) in m.services.iter().enumerate() {
            check_regex(&format!("{name}::services[{i}]"), p, problems);
        }
        for (i, p) in m.span_names.iter().enumerate() {
            check_regex(&format!("{name}::span_names[{i}]"), p, problems);
        }
        for (i, a) in m.attributes.iter().enumerate() {
            if let Some(v) = &a.value {
                check_regex(&format!("{name}::attributes[{i}]::value"), v, problems);
            }
        }
    }
    for (i, kind) in m.span_kinds.iter().enumerate() {
        if span_kind_number(kind).is_none() {
            problems.error(
                format!("{name}::span_kinds[{i}]"),
                format!("unknown span kind {kind:?}; known: internal, server, client, producer, consumer, unspecified"),
            );
        }
    }
    for (i, a) in m.attributes.iter().enumerate() {
        if a.key.is_empty() {
            problems.error(format!("{name}::attributes[{i}]::key"), "is required");
        }
    }
}

fn check_regex(path: &str, pattern: &str, problems: &mut Problems) {
    if let Err(err) = Regex::new(pattern) {
        problems.error(path, format!("is not a valid regex: {}", regex_error(&err)));
    }
}

/// The regex crate's multi-line error (pattern, caret, reason) reduced to its reason.
fn regex_error(err: &regex::Error) -> String {
    let text = err.to_string();
    let last = text.lines().last().unwrap_or_default();
    last.trim().trim_start_matches("error: ").to_string()
}
