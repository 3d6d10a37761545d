//! HTTP query-parameter parsing shared by the Tempo and Jaeger APIs; every error names its parameter.

use std::time::Duration;

/// A query parameter that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid parameter {param}: {message}")]
pub struct ParamError {
    pub param: String,
    pub message: String,
}

fn err(param: &str, message: impl Into<String>) -> ParamError {
    ParamError {
        param: param.to_string(),
        message: message.into(),
    }
}

/// A trace id in hex, 1 to 32 digits, any case. Shorter ids are left-padded with zeros
/// because Jaeger prints 64-bit ids (and 128-bit ids whose high half is zero) as 16 digits.
pub fn trace_id(param: &str, text: &str) -> Result<[u8; 16], ParamError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(err(param, "must not be empty"));
    }
    if let Some((pos, c)) = text.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(err(
            param,
            format!("must be hexadecimal, found {c:?} at position {}", pos + 1),
        ));
    }
    if text.len() > 32 {
        return Err(err(
            param,
            format!("must be at most 32 hex digits, got {}", text.len()),
        ));
    }
    let padded = format!("{text:0>32}");
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        // Every character is an ASCII hex digit, so slicing and parsing cannot fail.
        *byte = u8::from_str_radix(&padded[2 * i..2 * i + 2], 16)
            .map_err(|e| err(param, e.to_string()))?;
    }
    Ok(id)
}

/// A Go-style duration as Tempo takes it: `10ns`, `250us`/`250µs`, `100ms`, `1.5s`, `1m30s`, `2h`.
pub fn duration(param: &str, text: &str) -> Result<Duration, ParamError> {
    parse_go_duration(text.trim()).map_err(|message| err(param, message))
}

/// Parses a Go `time.ParseDuration` string (without a sign); errors are bare messages.
pub(crate) fn parse_go_duration(text: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a duration such as 100ms, 1.5s or 1m30s";
    if text.is_empty() {
        return Err(format!("empty duration: {HINT}"));
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration: {HINT}"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = unit_nanos(unit).ok_or_else(|| match unit {
            "" => format!("{text:?} is missing a unit (ns, us, ms, s, m, h)"),
            _ => format!("{text:?} has an unknown unit {unit:?}: use ns, us, ms, s, m or h"),
        })?;
        total_nanos += value * scale;
        rest = &rest[unit_len..];
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return Err(format!("{text:?} is too long a duration"));
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

fn unit_nanos(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1.0,
        // Go accepts the micro sign (U+00B5) and the Greek mu (U+03BC).
        "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    })
}

/// Unix seconds as Tempo's `start`/`end` take them, returned as unix nanoseconds.
pub fn unix_seconds(param: &str, text: &str) -> Result<u64, ParamError> {
    scaled_unix(param, text, 1_000_000_000, "seconds")
}

/// Unix microseconds as Jaeger's `start`/`end` take them, returned as unix nanoseconds.
pub fn unix_micros(param: &str, text: &str) -> Result<u64, ParamError> {
    scaled_unix(param, text, 1_000, "microseconds")
}

fn scaled_unix(param: &str, text: &str, scale: u64, unit: &str) -> Result<u64, ParamError> {
    let text = text.trim();
    let value: u64 = text.parse().map_err(|_| {
        err(
            param,
            format!("expected unix time in {unit} (a non-negative integer), got {text:?}"),
        )
    })?;
    value
        .checked_mul(scale)
        .ok_or_else(|| err(param, format!("unix time {value} {unit} is out of range")))
}

/// A positive integer, capped at `max` so one request cannot ask for unbounded work.
pub fn limit(param: &str, text: &str, max: usize) -> Result<usize, ParamError> {
    let text = text.trim();
    match text.parse::<usize>() {
        Ok(0) | Err(_) => Err(err(
            param,
            format!("must be a positive integer, got {text:?}"),
        )),
        Ok(n) => Ok(n.min(max)),
    }
}

/// Tempo's `tags`: logfmt pairs such as `service.name=checkout http.route="/a b"`.
pub fn logfmt_tags(param: &str, text: &str) -> Result<Vec<(String, String)>, ParamError> {
    parse_logfmt(text).map_err(|message| err(param, message))
}

fn parse_logfmt(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            return Err("a tag has an empty key: expected key=value".to_string());
        }
        if chars.next_if_eq(&'=').is_none() {
            return Err(format!("tag {key:?} has no value: expected key=value"));
        }
        let value = if chars.next_if_eq(&'"').is_some() {
            quoted_value(&key, &mut chars)?
        } else {
            let mut value = String::new();
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
            value
        };
        pairs.push((key, value));
    }
}

/// Reads a quoted value after its opening quote, up to and including the closing one.
fn quoted_value(key: &str, chars: &mut impl Iterator<Item = char>) -> Result<String, String> {
    let mut value = String::new();
    loop {
        match chars.next() {
            None => return Err(format!("tag {key:?} has an unterminated quoted value")),
            Some('"') => return Ok(value),
            Some('\\') => match chars.next() {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some('r') => value.push('\r'),
                Some(c) => value.push(c),
                None => return Err(format!("tag {key:?} has an unterminated quoted value")),
            },
            Some(c) => value.push(c),
        }
    }
}

/// Jaeger's `tags`: a JSON object of scalars, `{"k":"v","n":1,"b":true}`, as text values
/// (the store compares attribute values as text). Logfmt is accepted too, for hand-typed URLs.
pub fn jaeger_tags(param: &str, text: &str) -> Result<Vec<(String, String)>, ParamError> {
    if !text.trim_start().starts_with('{') {
        return logfmt_tags(param, text);
    }
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| err(param, format!("expected a JSON object of tags: {e}")))?;
    let mut pairs = Vec::with_capacity(object.len());
    for (key, value) in object {
        let text = json_scalar_text(&value).ok_or_else(|| {
            err(
                param,
                format!("tag {key:?} must be a string, number or boolean, got {value}"),
            )
        })?;
        pairs.push((key, text));
    }
    Ok(pairs)
}

/// The store's text form of a JSON scalar: integers in decimal, floats as Rust prints `f64`.
fn json_scalar_text(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i.to_string())
            } else if let Some(u) = n.as_u64() {
                Some(u.to_string())
            } else {
                n.as_f64().map(|f| f.to_string())
            }
        }
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<impl std::fmt::Debug, ParamError>) -> String {
        result
            .expect_err("the input should be rejected")
            .to_string()
    }

    #[test]
    fn trace_ids_are_hex_padded_and_case_insensitive() {
        let full = trace_id("traceID", "0102030405060708090A0b0c0d0e0f10").unwrap();
        assert_eq!(
            full,
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
        );
        let jaeger = trace_id("traceID", "00000000000000ff").unwrap();
        let mut expected = [0u8; 16];
        expected[15] = 0xff;
        assert_eq!(jaeger, expected);
        assert_eq!(trace_id("id", "abc").unwrap()[14..], [0x0a, 0xbc]);
    }

    #[test]
    fn bad_trace_ids_say_why() {
        assert_eq!(
            message(trace_id("traceID", "")),
            "invalid parameter traceID: must not be empty"
        );
        assert_eq!(
            message(trace_id("traceID", "12g4")),
            "invalid parameter traceID: must be hexadecimal, found 'g' at position 3"
        );
        assert_eq!(
            message(trace_id("traceID", &"a".repeat(33))),
            "invalid parameter traceID: must be at most 32 hex digits, got 33"
        );
    }

    #[test]
    fn go_durations_parse() {
        let cases = [
            ("1s", Duration::from_secs(1)),
            ("100ms", Duration::from_millis(100)),
            ("1.5s", Duration::from_millis(1500)),
            ("1m30s", Duration::from_secs(90)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("10ns", Duration::from_nanos(10)),
            ("2h", Duration::from_secs(7200)),
            ("0", Duration::ZERO),
            (" 5ms ", Duration::from_millis(5)),
        ];
        for (text, expected) in cases {
            assert_eq!(duration("minDuration", text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn bad_durations_name_the_parameter_and_problem() {
        assert_eq!(
            message(duration("minDuration", "5")),
            "invalid parameter minDuration: \"5\" is missing a unit (ns, us, ms, s, m, h)"
        );
        assert_eq!(
            message(duration("maxDuration", "5d")),
            "invalid parameter maxDuration: \"5d\" has an unknown unit \"d\": use ns, us, ms, s, m or h"
        );
        assert_eq!(
            message(duration("minDuration", "-1s")),
            "invalid parameter minDuration: \"-1s\" is not a duration: expected a duration such as 100ms, 1.5s or 1m30s"
        );
        assert_eq!(
            message(duration("minDuration", "")),
            "invalid parameter minDuration: empty duration: expected a duration such as 100ms, 1.5s or 1m30s"
        );
        assert_eq!(
            message(duration("minDuration", "1..5s")),
            "invalid parameter minDuration: \"1..5s\" is not a duration: expected a duration such as 100ms, 1.5s or 1m30s"
        );
    }

    #[test]
    fn unix_times_become_nanoseconds() {
        assert_eq!(
            unix_seconds("start", "1700000000").unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            unix_micros("start", "1700000000123456").unwrap(),
            1_700_000_000_123_456_000
        );
        assert_eq!(
            message(unix_seconds("end", "soon")),
            "invalid parameter end: expected unix time in seconds (a non-negative integer), got \"soon\""
        );
        assert_eq!(
            message(unix_micros("end", "-5")),
            "invalid parameter end: expected unix time in microseconds (a non-negative integer), got \"-5\""
        );
        assert_eq!(
            message(unix_seconds("start", "99999999999999999999")),
            "invalid parameter start: expected unix time in seconds (a non-negative integer), got \"99999999999999999999\""
        );
        assert_eq!(
            message(unix_seconds("start", "18446744074")),
            "invalid parameter start: unix time 18446744074 seconds is out of range"
        );
    }

    #[test]
    fn limits_are_positive_and_capped() {
        assert_eq!(limit("limit", "20", 100).unwrap(), 20);
        assert_eq!(limit("limit", "5000", 100).unwrap(), 100);
        assert_eq!(
            message(limit("limit", "0", 100)),
            "invalid parameter limit: must be a positive integer, got \"0\""
        );
        assert_eq!(
            message(limit("limit", "ten", 100)),
            "invalid parameter limit: must be a positive integer, got \"ten\""
        );
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn logfmt_tags_parse_bare_and_quoted_values() {
        let parsed = logfmt_tags(
            "tags",
            r#"service.name=checkout  http.route="/a b" error=true note="say \"hi\"" empty="#,
        )
        .unwrap();
        assert_eq!(
            parsed,
            pairs(&[
                ("service.name", "checkout"),
                ("http.route", "/a b"),
                ("error", "true"),
                ("note", "say \"hi\""),
                ("empty", ""),
            ])
        );
        assert!(logfmt_tags("tags", "   ").unwrap().is_empty());
    }

    #[test]
    fn bad_logfmt_tags_say_which_tag() {
        assert_eq!(
            message(logfmt_tags("tags", "a=1 error")),
            "invalid parameter tags: tag \"error\" has no value: expected key=value"
        );
        assert_eq!(
            message(logfmt_tags("tags", "=x")),
            "invalid parameter tags: a tag has an empty key: expected key=value"
        );
        assert_eq!(
            message(logfmt_tags("tags", "a=\"open")),
            "invalid parameter tags: tag \"a\" has an unterminated quoted value"
        );
    }

    #[test]
    fn jaeger_tags_take_json_scalars_as_text() {
        let mut parsed = jaeger_tags(
            "tags",
            r#"{"http.method":"GET","http.status_code":200,"ratio":1.5,"whole":2.0,"error":true}"#,
        )
        .unwrap();
        // JSON object order is not significant.
        parsed.sort();
        assert_eq!(
            parsed,
            pairs(&[
                ("error", "true"),
                ("http.method", "GET"),
                ("http.status_code", "200"),
                ("ratio", "1.5"),
                ("whole", "2"),
            ])
        );
        assert_eq!(
            jaeger_tags("tags", "error=true").unwrap(),
            pairs(&[("error", "true")])
        );
    }

    #[test]
    fn bad_jaeger_tags_say_why() {
        assert_eq!(
            message(jaeger_tags("tags", r#"{"a":[1]}"#)),
            "invalid parameter tags: tag \"a\" must be a string, number or boolean, got [1]"
        );
        let broken = message(jaeger_tags("tags", r#"{"a":"#));
        assert!(
            broken.starts_with("invalid parameter tags: expected a JSON object of tags: "),
            "{broken}"
        );
    }
}
