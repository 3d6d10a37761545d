//! The Collector's attribute actions, compiled once and applied to span attributes in order.

use regex::Regex;
use sha2::{Digest, Sha256};

use super::config::{ActionConfig, ActionKind, ConvertedType, Literal};
use super::matcher::value_text;
use crate::component::{AnyValue, KeyValue, any_value::Value};

/// Where insert/update/upsert take their value from.
#[derive(Debug)]
pub enum Source {
    Literal(AnyValue),
    From(String),
}

/// Which keys delete/hash act on.
#[derive(Debug)]
pub enum Target {
    Key(String),
    Pattern(Regex),
}

impl Target {
    fn matches(&self, key: &str) -> bool {
        match self {
            Target::Key(k) => k == key,
            Target::Pattern(re) => re.is_match(key),
        }
    }
}

/// One ready-to-run action.
#[derive(Debug)]
pub enum Action {
    Insert(String, Source),
    Update(String, Source),
    Upsert(String, Source),
    Delete(Target),
    Hash(Target),
    Extract(String, Regex),
    Convert(String, ConvertedType),
}

/// Compiles a validated action; errors only on what validation already rejects.
pub fn compile(config: &ActionConfig) -> Result<Action, String> {
    let kind = config.action.ok_or("action is required")?;
    let key = config.key.clone();
    let target = || -> Result<Target, String> {
        match &config.pattern {
            Some(p) => Regex::new(p)
                .map(Target::Pattern)
                .map_err(|e| e.to_string()),
            None => Ok(Target::Key(key.clone())),
        }
    };
    Ok(match kind {
        ActionKind::Insert => Action::Insert(key.clone(), source(config)?),
        ActionKind::Update => Action::Update(key.clone(), source(config)?),
        ActionKind::Upsert => Action::Upsert(key.clone(), source(config)?),
        ActionKind::Delete => Action::Delete(target()?),
        ActionKind::Hash => Action::Hash(target()?),
        ActionKind::Extract => {
            let pattern = config.pattern.as_deref().ok_or("extract needs a pattern")?;
            Action::Extract(key, Regex::new(pattern).map_err(|e| e.to_string())?)
        }
        ActionKind::Convert => Action::Convert(
            key,
            config
                .converted_type
                .ok_or("convert needs converted_type")?,
        ),
    })
}

fn source(config: &ActionConfig) -> Result<Source, String> {
    match (&config.value, &config.from_attribute) {
        (Some(v), None) => Ok(Source::Literal(literal_value(v))),
        (None, Some(from)) => Ok(Source::From(from.clone())),
        _ => Err("set exactly one of value and from_attribute".to_string()),
    }
}

fn literal_value(literal: &Literal) -> AnyValue {
    let value = match literal {
        Literal::Bool(b) => Value::BoolValue(*b),
        Literal::Int(i) => Value::IntValue(*i),
        Literal::Double(d) => Value::DoubleValue(*d),
        Literal::String(s) => Value::StringValue(s.clone()),
    };
    AnyValue { value: Some(value) }
}

/// Counts of what the actions changed, for the processor's metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    pub removed: u64,
    pub hashed: u64,
    pub other: u64,
}

impl Changes {
    pub fn any(&self) -> bool {
        self.removed + self.hashed + self.other > 0
    }
}

impl Action {
    /// Applies the action to one span's attributes.
    pub fn apply(&self, attrs: &mut Vec<KeyValue>, salt: &str, changes: &mut Changes) {
        match self {
            Action::Insert(key, src) => set(attrs, key, src, true, false, changes),
            Action::Update(key, src) => set(attrs, key, src, false, true, changes),
            Action::Upsert(key, src) => set(attrs, key, src, true, true, changes),
            Action::Delete(target) => {
                let before = attrs.len();
                attrs.retain(|kv| !target.matches(&kv.key));
                changes.removed += (before - attrs.len()) as u64;
            }
            Action::Hash(target) => {
                for kv in attrs.iter_mut().filter(|kv| target.matches(&kv.key)) {
                    kv.value = Some(salted_hash(salt, kv.value.as_ref()));
                    changes.hashed += 1;
                }
            }
            Action::Extract(key, re) => extract(attrs, key, re, changes),
            Action::Convert(key, to) => {
                if let Some(kv) = attrs.iter_mut().find(|kv| kv.key == *key)
                    && let Some(converted) = convert(kv.value.as_ref(), *to)
                {
                    kv.value = Some(converted);
                    changes.other += 1;
                }
            }
        }
    }
}

fn set(
    attrs: &mut Vec<KeyValue>,
    key: &str,
    src: &Source,
    insert: bool,
    update: bool,
    changes: &mut Changes,
) {
    let value = match src {
        Source::Literal(v) => v.clone(),
        Source::From(from) => match attrs.iter().find(|kv| kv.key == *from) {
            Some(kv) => kv.value.clone().unwrap_or_default(),
            None => return,
        },
    };
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) if update => kv.value = Some(value),
        Some(_) => return,
        None if insert => attrs.push(KeyValue {
            key: key.to_string(),
            value: Some(value),
            ..Default::default()
        }),
        None => return,
    }
    changes.other += 1;
}

fn extract(attrs: &mut Vec<KeyValue>, key: &str, re: &Regex, changes: &mut Changes) {
    let Some(Value::StringValue(text)) = attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    else {
        return;
    };
    let Some(caps) = re.captures(text) else {
        return;
    };
    let mut found = Vec::new();
    for name in re.capture_names().flatten() {
        if let Some(m) = caps.name(name) {
            found.push((name.to_string(), m.as_str().to_string()));
        }
    }
    for (name, value) in found {
        let src = Source::Literal(AnyValue {
            value: Some(Value::StringValue(value)),
        });
        set(attrs, &name, &src, true, true, changes);
    }
}

/// The value converted as the Collector does; `None` leaves the attribute unchanged.
pub fn convert(value: Option<&AnyValue>, to: ConvertedType) -> Option<AnyValue> {
    let current = value?.value.as_ref()?;
    let converted = match (to, current) {
        (ConvertedType::String, _) => Value::StringValue(value_text(value)?.into_owned()),
        (ConvertedType::Int, Value::IntValue(i)) => Value::IntValue(*i),
        (ConvertedType::Int, Value::DoubleValue(d)) => Value::IntValue(*d as i64),
        (ConvertedType::Int, Value::BoolValue(b)) => Value::IntValue(i64::from(*b)),
        (ConvertedType::Int, Value::StringValue(s)) => Value::IntValue(s.trim().parse().ok()?),
        (ConvertedType::Double, Value::IntValue(i)) => Value::DoubleValue(*i as f64),
        (ConvertedType::Double, Value::DoubleValue(d)) => Value::DoubleValue(*d),
        (ConvertedType::Double, Value::BoolValue(b)) => Value::DoubleValue(f64::from(u8::from(*b))),
        (ConvertedType::Double, Value::StringValue(s)) => {
            Value::DoubleValue(s.trim().parse().ok()?)
        }
        (ConvertedType::Bool, Value::BoolValue(b)) => Value::BoolValue(*b),
        (ConvertedType::Bool, Value::IntValue(i)) => Value::BoolValue(*i != 0),
        (ConvertedType::Bool, Value::DoubleValue(d)) => Value::BoolValue(*d != 0.0),
        (ConvertedType::Bool, Value::StringValue(s)) => Value::BoolValue(s.trim().parse().ok()?),
        _ => return None,
    };
    Some(AnyValue {
        value: Some(converted),
    })
}

/// The hex SHA-256 of `salt` followed by the value's bytes (strings as UTF-8, scalars as
/// their text, arrays and maps as their protobuf encoding), as a string value.
pub fn salted_hash(salt: &str, value: Option<&AnyValue>) -> AnyValue {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => hasher.update(s.as_bytes()),
        Some(Value::BytesValue(b)) => hasher.update(b),
        Some(Value::ArrayValue(_) | Value::KvlistValue(_)) => hasher.update(
            prost::Message::encode_to_vec(value.unwrap_or(&AnyValue::default())),
        ),
        _ => {
            if let Some(text) = value_text(value) {
                hasher.update(text.as_bytes());
            }
        }
    }
    AnyValue {
        value: Some(Value::StringValue(hex(&hasher.finalize()))),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}
