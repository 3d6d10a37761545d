//! The value scanner: built-in detectors and user regexes, compiled once into one `RegexSet`
//! prefilter plus one `Regex` each for the (rare) values that match.

use std::net::Ipv6Addr;

use regex::{Captures, Regex, RegexSet};

use super::config::Detector;
use super::mask::Masker;
use super::processor::Label;

/// A check a candidate match must also pass, for what a regex cannot express.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    Luhn,
    Ipv6,
    /// Credentials are long and not plain words: "the bearer of news" is no token.
    Token,
}

/// One compiled pattern; when it has a group named `secret`, only that group is masked.
#[derive(Debug)]
struct Pattern {
    regex: Regex,
    check: Check,
    label: Label,
    secret_group: bool,
}

/// The detector regexes. `(?-u:\b)` is an ASCII word boundary, which keeps the lazy DFA
/// usable on any input.
fn builtin(detector: Detector) -> (&'static str, Check) {
    match detector {
        Detector::CreditCard => (r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)", Check::Luhn),
        Detector::Email => (
            r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+",
            Check::None,
        ),
        Detector::Jwt => (
            r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
            Check::None,
        ),
        Detector::BearerToken => (
            r"(?-u:\b)(?i:bearer)\s+(?P<secret>[A-Za-z0-9._~+/=-]+)",
            Check::Token,
        ),
        Detector::Ipv4 => (
            r"(?-u:\b)(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?-u:\b)",
            Check::None,
        ),
        // A candidate run of hex digits, colons and dots not glued to a word; the address
        // itself is checked by the standard parser, which rejects times like 12:30:45.
        Detector::Ipv6 => (
            r"(?:^|[^0-9A-Za-z_:.])(?P<secret>[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)(?:$|[^0-9A-Za-z_:.])",
            Check::Ipv6,
        ),
        Detector::AwsAccessKey => (
            r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}(?-u:\b)",
            Check::None,
        ),
    }
}

/// The order detectors run in: bearer before jwt, so `Bearer eyJ...` counts once.
const ORDER: [Detector; 7] = [
    Detector::BearerToken,
    Detector::Jwt,
    Detector::AwsAccessKey,
    Detector::Email,
    Detector::CreditCard,
    Detector::Ipv6,
    Detector::Ipv4,
];

/// Finds and masks secrets inside string values.
#[derive(Debug)]
pub struct Scanner {
    prefilter: RegexSet,
    patterns: Vec<Pattern>,
    allowed: Option<RegexSet>,
}

impl Scanner {
    pub fn new(
        detectors: &[Detector],
        blocked_values: &[String],
        allowed_values: &[String],
    ) -> Result<Self, regex::Error> {
        let mut patterns = Vec::new();
        for detector in ORDER.iter().filter(|d| detectors.contains(d)) {
            let (source, check) = builtin(*detector);
            patterns.push(pattern(source, check, Label::Detector(*detector))?);
        }
        for source in blocked_values {
            patterns.push(pattern(source, Check::None, Label::BlockedValue)?);
        }
        let prefilter = RegexSet::new(patterns.iter().map(|p| p.regex.as_str()))?;
        let allowed = if allowed_values.is_empty() {
            None
        } else {
            Some(RegexSet::new(allowed_values)?)
        };
        Ok(Self {
            prefilter,
            patterns,
            allowed,
        })
    }

    /// The text with every secret masked, or `None` when it holds none. `found` is called
    /// once per pattern that changed the text. One automaton pass decides the common case.
    pub fn scan(
        &self,
        text: &str,
        masker: &Masker,
        found: &mut impl FnMut(Label),
    ) -> Option<String> {
        if self.patterns.is_empty() {
            return None;
        }
        let hits = self.prefilter.matches(text);
        if !hits.matched_any() {
            return None;
        }
        let mut current: Option<String> = None;
        for index in hits.iter() {
            let pattern = &self.patterns[index];
            let source = current.as_deref().unwrap_or(text);
            if let Some(next) = self.replace(pattern, source, masker) {
                found(pattern.label);
                current = Some(next);
            }
        }
        current
    }

    fn replace(&self, pattern: &Pattern, text: &str, masker: &Masker) -> Option<String> {
        let mut changed = false;
        let replaced = pattern.regex.replace_all(text, |caps: &Captures| {
            let whole = caps.get(0).map_or("", |m| m.as_str());
            let secret = match pattern.secret_group {
                true => caps.name("secret"),
                false => caps.get(0),
            };
            let Some(secret) = secret else {
                return whole.to_string();
            };
            if !self.is_secret(pattern.check, secret.as_str(), masker) {
                return whole.to_string();
            }
            changed = true;
            let offset = caps.get(0).map_or(0, |m| m.start());
            let (start, end) = (secret.start() - offset, secret.end() - offset);
            format!(
                "{}{}{}",
                &whole[..start],
                masker.mask(secret.as_str()),
                &whole[end..]
            )
        });
        if changed {
            Some(replaced.into_owned())
        } else {
            None
        }
    }

    fn is_secret(&self, check: Check, secret: &str, masker: &Masker) -> bool {
        let passes = match check {
            Check::None => true,
            Check::Luhn => luhn_valid(secret),
            Check::Ipv6 => secret.parse::<Ipv6Addr>().is_ok(),
            Check::Token => secret.len() >= 8 && !secret.bytes().all(|b| b.is_ascii_alphabetic()),
        };
        passes
            && !masker.is_masked(secret)
            && !self.allowed.as_ref().is_some_and(|a| a.is_match(secret))
    }
}

fn pattern(source: &str, check: Check, label: Label) -> Result<Pattern, regex::Error> {
    let regex = Regex::new(source)?;
    let secret_group = regex.capture_names().flatten().any(|n| n == "secret");
    Ok(Pattern {
        regex,
        check,
        label,
        secret_group,
    })
}

/// True when the digits of `text` (spaces and dashes ignored) are 13 to 19 long and pass
/// the Luhn checksum every payment card number carries.
pub fn luhn_valid(text: &str) -> bool {
    let mut sum = 0u32;
    let mut count = 0;
    for b in text.bytes().rev() {
        if b == b' ' || b == b'-' {
            continue;
        }
        if !b.is_ascii_digit() {
            return false;
        }
        let mut digit = u32::from(b - b'0');
        if count % 2 == 1 {
            digit *= 2;
            if digit > 9 {
                digit -= 9;
            }
        }
        sum += digit;
        count += 1;
    }
    (13..=19).contains(&count) && sum.is_multiple_of(10)
}
