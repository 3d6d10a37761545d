//! The sanitizer's configuration: which detectors run and how found secrets are masked.

use regex::Regex;
use serde::Deserialize;

use crate::component::{ComponentConfig, Problems};

/// The replacement that selects hashing instead of a fixed mask.
pub const HASH_MASK: &str = "hash";

/// What the sanitizer looks for and how it hides what it finds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SanitizerConfig {
    /// Built-in detectors to run on every string value, span name and event name.
    pub detectors: Vec<Detector>,
    /// Regexes: every match inside a value is masked.
    pub blocked_values: Vec<String>,
    /// Regexes on attribute keys (at any depth): the whole value of a matching key is masked.
    pub blocked_key_patterns: Vec<String>,
    /// Regexes: a detected or blocked match that also matches one of these is left alone.
    pub allowed_values: Vec<String>,
    /// The text that replaces a secret, or `hash` for the salted SHA-256 of the secret.
    pub mask: String,
    /// Text hashed before each secret when `mask: hash`.
    pub hash_salt: String,
    /// Replace SQL literals in `db.statement` / `db.query.text` with `?`, keeping the shape.
    pub db_statement: bool,
    /// Mask query-string values (and URL user info) of `url.full`, `url.query`, `http.url`,
    /// `http.target` and of span names that contain a URL.
    pub url_query: bool,
    /// Add `sanitizer.masked.count` and `sanitizer.masked.keys` to spans that had values masked.
    pub summary: bool,
}

impl Default for SanitizerConfig {
    fn default() -> Self {
        Self {
            detectors: Vec::new(),
            blocked_values: Vec::new(),
            blocked_key_patterns: Vec::new(),
            allowed_values: Vec::new(),
            mask: "****".to_string(),
            hash_salt: String::new(),
            db_statement: false,
            url_query: false,
            summary: false,
        }
    }
}

/// The built-in secret detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// 13 to 19 digits (spaces or dashes between them allowed) that pass the Luhn check.
    CreditCard,
    Email,
    /// JSON Web Tokens (`eyJ...`.`...`.`...`).
    Jwt,
    /// The token after `Bearer ` (the word itself is kept).
    BearerToken,
    Ipv4,
    Ipv6,
    /// AWS access key ids (`AKIA...`, `ASIA...`).
    AwsAccessKey,
}

impl Detector {
    /// The `detector` label of the masked-values metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::CreditCard => "credit_card",
            Detector::Email => "email",
            Detector::Jwt => "jwt",
            Detector::BearerToken => "bearer_token",
            Detector::Ipv4 => "ipv4",
            Detector::Ipv6 => "ipv6",
            Detector::AwsAccessKey => "aws_access_key",
        }
    }
}

impl SanitizerConfig {
    /// True when secrets are replaced by their salted hash rather than a fixed mask.
    pub fn hashes(&self) -> bool {
        self.mask == HASH_MASK
    }
}

impl ComponentConfig for SanitizerConfig {
    fn validate(&self, problems: &mut Problems) {
        check_regexes("blocked_values", &self.blocked_values, problems);
        check_regexes("blocked_key_patterns", &self.blocked_key_patterns, problems);
        check_regexes("allowed_values", &self.allowed_values, problems);
        if self.mask.is_empty() {
            problems.error("mask", "must not be empty: use \"****\" or hash");
        }
        if self.hashes() && self.hash_salt.is_empty() {
            problems.warning(
                "hash_salt",
                "is empty while mask is hash; unsalted hashes of guessable values can be reversed",
            );
        }
        for (i, d) in self.detectors.iter().enumerate() {
            if self.detectors[..i].contains(d) {
                problems.warning(
                    format!("detectors[{i}]"),
                    format!("{} is listed twice", d.as_str()),
                );
            }
        }
        let does_nothing = self.detectors.is_empty()
            && self.blocked_values.is_empty()
            && self.blocked_key_patterns.is_empty()
            && !self.db_statement
            && !self.url_query;
        if does_nothing {
            problems.warning(
                "detectors",
                "nothing is enabled (no detectors, blocked_values, blocked_key_patterns, db_statement or url_query): the sanitizer changes nothing",
            );
        }
    }
}

fn check_regexes(name: &str, patterns: &[String], problems: &mut Problems) {
    for (i, p) in patterns.iter().enumerate() {
        if let Err(err) = Regex::new(p) {
            problems.error(
                format!("{name}[{i}]"),
                format!("is not a valid regex: {}", regex_error(&err)),
            );
        }
    }
}

/// The regex crate's multi-line error (pattern, caret, reason) reduced to its reason.
fn regex_error(err: &regex::Error) -> String {
    let text = err.to_string();
    let last = text.lines().last().unwrap_or_default();
    last.trim().trim_start_matches("error: ").to_string()
}
