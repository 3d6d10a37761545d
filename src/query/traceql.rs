//! The simple TraceQL form Grafana's Tempo search sends: one spanset filter `{ cond && cond }`.

use std::time::Duration;

use super::params::parse_go_duration;

/// A parsed spanset filter: a span matches when every condition holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceQl {
    pub conditions: Vec<Condition>,
}

/// One condition of a spanset filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `resource.service.name` (or `.service.name`) compared with `=` or `!=`.
    Service {
        value: String,
        negated: bool,
    },
    /// Tempo's `rootServiceName` (`trace:rootService`).
    RootService(String),
    /// Tempo's `rootName` (`trace:rootName`).
    RootName(String),
    /// The span name.
    Name {
        value: String,
        negated: bool,
    },
    Status(Status),
    /// The span duration.
    Duration {
        op: CmpOp,
        value: Duration,
    },
    /// Tempo's `traceDuration` (`trace:duration`).
    TraceDuration {
        op: CmpOp,
        value: Duration,
    },
    /// A span kind, lowercase: `server`, `client`, `producer`, `consumer` or `internal`.
    Kind(String),
    /// An attribute equal (or, when negated, not equal) to a value in the store's text form.
    Attribute {
        scope: Scope,
        key: String,
        value: String,
        negated: bool,
    },
}

/// A span status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Error,
    Ok,
    Unset,
}

/// A comparison for durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

/// Where an attribute is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Span,
    Resource,
    /// `.key`: the span's attributes or its resource's.
    Any,
}

/// A query that could not be parsed; the column counts characters from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {message}")]
pub struct TraceQlError {
    pub column: usize,
    pub message: String,
}

const SPAN_KINDS: [&str; 5] = ["server", "client", "producer", "consumer", "internal"];
const STATUSES: [&str; 3] = ["error", "ok", "unset"];
const FIELDS: &str = "name, status, duration, kind, rootServiceName, rootName, traceDuration, \
                      span.<attr>, resource.<attr> or .<attr>";
/// Two-character symbols first, so `>=` is not read as `>` then `=`.
const SYMBOLS: [&str; 12] = [
    "&&", "||", "!=", ">=", "<=", "=~", "!~", "{", "}", "=", ">", "<",
];
const EQUALITY: [&str; 2] = ["=", "!="];
const ORDERING: [&str; 5] = ["=", ">", ">=", "<", "<="];

/// Parses `{ cond && ... }`; `{}` and an empty query match everything.
pub fn parse(text: &str) -> Result<TraceQl, TraceQlError> {
    let mut parser = Parser {
        tokens: tokenize(text)?,
        pos: 0,
    };
    parser.query()
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// Punctuation and operators, one of `SYMBOLS`.
    Sym(&'static str),
    /// A quoted string, unescaped.
    Str(String),
    /// A number, possibly with a duration unit: `200`, `-1.5`, `1m30s`.
    Num(String),
    /// An identifier or attribute path: `name`, `span.http.route`, `.foo`, `error`.
    Word(String),
    Other(char),
    End,
}

struct Token {
    tok: Tok,
    column: usize,
}

fn fail<T>(column: usize, message: impl Into<String>) -> Result<T, TraceQlError> {
    Err(TraceQlError {
        column,
        message: message.into(),
    })
}

fn tokenize(text: &str) -> Result<Vec<Token>, TraceQlError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let (tok, len) = if c == '"' {
            quoted(&chars, i)?
        } else if let Some(sym) = symbol(&chars, i) {
            (Tok::Sym(sym), sym.len())
        } else if c.is_ascii_digit() || (c == '-' && next_is_digit(&chars, i)) {
            let len = run(&chars, i + 1, |c| c.is_alphanumeric() || c == '.') + 1;
            (Tok::Num(chars[i..i + len].iter().collect()), len)
        } else if c.is_alphabetic() || c == '_' || c == '.' {
            let len = run(&chars, i, is_word_char);
            (Tok::Word(chars[i..i + len].iter().collect()), len)
        } else {
            (Tok::Other(c), 1)
        };
        tokens.push(Token { tok, column });
        i += len;
    }
    tokens.push(Token {
        tok: Tok::End,
        column: chars.len() + 1,
    });
    Ok(tokens)
}

fn symbol(chars: &[char], i: usize) -> Option<&'static str> {
    let starts_with = |sym: &str| {
        sym.chars()
            .enumerate()
            .all(|(k, c)| chars.get(i + k) == Some(&c))
    };
    SYMBOLS.into_iter().find(|sym| starts_with(sym))
}

fn next_is_digit(chars: &[char], i: usize) -> bool {
    chars.get(i + 1).is_some_and(|c| c.is_ascii_digit())
}

/// Attribute names in TraceQL may hold dots, dashes, slashes and `scope:` prefixes.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':')
}

fn run(chars: &[char], from: usize, accept: impl Fn(char) -> bool) -> usize {
    chars[from..].iter().take_while(|c| accept(**c)).count()
}

/// A double-quoted string starting at `start`, with `\"`, `\\`, `\n`, `\t` and `\r` escapes.
fn quoted(chars: &[char], start: usize) -> Result<(Tok, usize), TraceQlError> {
    let mut value = String::new();
    let mut i = start + 1;
    while let Some(&c) = chars.get(i) {
        match c {
            '"' => return Ok((Tok::Str(value), i + 1 - start)),
            '\\' => {
                let escaped = match chars.get(i + 1) {
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some('r') => '\r',
                    Some(&c @ ('"' | '\\')) => c,
                    Some(c) => return fail(i + 1, format!("unknown escape \"\\{c}\" in a string")),
                    None => break,
                };
                value.push(escaped);
                i += 2;
            }
            c => {
                value.push(c);
                i += 1;
            }
        }
    }
    fail(start + 1, "unterminated string: expected a closing '\"'")
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Sym(s) => format!("{s:?}"),
        Tok::Str(s) => format!("the string {s:?}"),
        Tok::Num(n) | Tok::Word(n) => format!("{n:?}"),
        Tok::Other(c) => format!("{:?}", c.to_string()),
        Tok::End => "the end of the query".to_string(),
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // `tokenize` always ends the list with `End`, and `advance` never moves past it.
        &self.tokens[self.pos]
    }

    fn advance(&mut self) {
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
    }

    /// Takes the next token if it is one of `allowed` symbols.
    fn take_sym(&mut self, allowed: &[&str]) -> Option<(&'static str, usize)> {
        let token = self.peek();
        match token.tok {
            Tok::Sym(s) if allowed.contains(&s) => {
                let column = token.column;
                self.advance();
                Some((s, column))
            }
            _ => None,
        }
    }

    fn expected<T>(&self, what: &str) -> Result<T, TraceQlError> {
        let token = self.peek();
        fail(
            token.column,
            format!("expected {what}, found {}", describe(&token.tok)),
        )
    }

    fn query(&mut self) -> Result<TraceQl, TraceQlError> {
        if self.peek().tok == Tok::End {
            return Ok(TraceQl { conditions: vec![] });
        }
        if self.take_sym(&["{"]).is_none() {
            return self.expected("a spanset filter starting with \"{\"");
        }
        let mut conditions = Vec::new();
        if self.take_sym(&["}"]).is_none() {
            conditions.push(self.condition()?);
            while self.take_sym(&["}"]).is_none() {
                self.between_conditions()?;
                conditions.push(self.condition()?);
            }
        }
        self.after_spanset()?;
        Ok(TraceQl { conditions })
    }

    fn between_conditions(&mut self) -> Result<(), TraceQlError> {
        if self.take_sym(&["&&"]).is_some() {
            return Ok(());
        }
        match self.peek().tok {
            Tok::Sym("||") => fail(
                self.peek().column,
                "\"||\" is not supported: conditions can only be joined with \"&&\"",
            ),
            _ => self.expected("\"&&\" or \"}\""),
        }
    }

    fn after_spanset(&self) -> Result<(), TraceQlError> {
        match self.peek().tok {
            Tok::End => Ok(()),
            Tok::Sym("&&" | "||") => fail(
                self.peek().column,
                "combining spansets is not supported: put all conditions in one { ... } joined by \"&&\"",
            ),
            _ => self.expected("the end of the query after \"}\""),
        }
    }

    fn condition(&mut self) -> Result<Condition, TraceQlError> {
        let token = self.peek();
        let field = match &token.tok {
            Tok::Word(w) => Located {
                text: w.clone(),
                column: token.column,
            },
            _ => return self.expected(&format!("a field ({FIELDS})")),
        };
        self.advance();
        let op = self.operator()?;
        let value = self.value()?;
        build(&field, op, value)
    }

    fn operator(&mut self) -> Result<Located, TraceQlError> {
        if let Some((op, column)) = self.take_sym(&["=", "!=", ">", ">=", "<", "<="]) {
            return Ok(Located {
                text: op.to_string(),
                column,
            });
        }
        match self.peek().tok {
            Tok::Sym("=~" | "!~") => fail(
                self.peek().column,
                "regular expression matching (=~, !~) is not supported",
            ),
            _ => self.expected("an operator (=, !=, >, >=, <, <=)"),
        }
    }

    fn value(&mut self) -> Result<Token, TraceQlError> {
        let token = self.peek();
        match &token.tok {
            Tok::Str(_) | Tok::Num(_) | Tok::Word(_) => {
                let value = Token {
                    tok: token.tok.clone(),
                    column: token.column,
                };
                self.advance();
                Ok(value)
            }
            _ => self.expected("a value (a \"string\", number, duration, true or false)"),
        }
    }
}

/// A field name or operator and where it started.
struct Located {
    text: String,
    column: usize,
}

/// Turns `field op value` into a condition, checking the operator and value suit the field.
fn build(field: &Located, op: Located, value: Token) -> Result<Condition, TraceQlError> {
    let name = field.text.as_str();
    let condition = match name {
        "resource.service.name" | ".service.name" => Condition::Service {
            negated: check_op(&op, name, &EQUALITY)? == "!=",
            value: string(value, name)?,
        },
        "name" | "span:name" => Condition::Name {
            negated: check_op(&op, name, &EQUALITY)? == "!=",
            value: string(value, name)?,
        },
        "rootServiceName" | "trace:rootService" => {
            check_op(&op, name, &["="])?;
            Condition::RootService(string(value, name)?)
        }
        "rootName" | "trace:rootName" => {
            check_op(&op, name, &["="])?;
            Condition::RootName(string(value, name)?)
        }
        "status" | "span:status" => {
            check_op(&op, name, &["="])?;
            Condition::Status(match one_of(value, &STATUSES, "a status")?.as_str() {
                "error" => Status::Error,
                "ok" => Status::Ok,
                _ => Status::Unset,
            })
        }
        "kind" | "span:kind" => {
            check_op(&op, name, &["="])?;
            Condition::Kind(one_of(value, &SPAN_KINDS, "a span kind")?)
        }
        "duration" | "span:duration" => Condition::Duration {
            op: cmp(check_op(&op, name, &ORDERING)?),
            value: duration(value)?,
        },
        "traceDuration" | "trace:duration" => Condition::TraceDuration {
            op: cmp(check_op(&op, name, &ORDERING)?),
            value: duration(value)?,
        },
        _ => attribute(field, &op, value)?,
    };
    Ok(condition)
}

fn attribute(field: &Located, op: &Located, value: Token) -> Result<Condition, TraceQlError> {
    let name = field.text.as_str();
    let (scope, key) = if let Some(key) = name.strip_prefix("span.") {
        (Scope::Span, key)
    } else if let Some(key) = name.strip_prefix("resource.") {
        (Scope::Resource, key)
    } else if let Some(key) = name.strip_prefix('.') {
        (Scope::Any, key)
    } else {
        let message = format!("unknown field {name:?}: expected {FIELDS}");
        return fail(field.column, message);
    };
    if key.is_empty() {
        let message = format!("{name:?} is missing an attribute name");
        return fail(field.column, message);
    }
    Ok(Condition::Attribute {
        scope,
        key: key.to_string(),
        negated: check_op(op, name, &EQUALITY)? == "!=",
        value: attribute_text(value)?,
    })
}

/// The operator, if `field` can be compared with it.
fn check_op<'a>(op: &'a Located, field: &str, allowed: &[&str]) -> Result<&'a str, TraceQlError> {
    if allowed.contains(&op.text.as_str()) {
        return Ok(&op.text);
    }
    let list = match allowed {
        [only] => only.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
        [] => String::new(),
    };
    let message = format!("{field} can only be compared with {list}, not {}", op.text);
    fail(op.column, message)
}

fn cmp(op: &str) -> CmpOp {
    match op {
        ">" => CmpOp::Gt,
        ">=" => CmpOp::Ge,
        "<" => CmpOp::Lt,
        "<=" => CmpOp::Le,
        _ => CmpOp::Eq,
    }
}

fn string(value: Token, field: &str) -> Result<String, TraceQlError> {
    match value.tok {
        Tok::Str(s) => Ok(s),
        other => {
            let message = format!("{field} needs a quoted string, found {}", describe(&other));
            fail(value.column, message)
        }
    }
}

/// A bare word from a fixed list, such as a status or span kind.
fn one_of(value: Token, words: &[&str], what: &str) -> Result<String, TraceQlError> {
    match value.tok {
        Tok::Word(w) if words.contains(&w.as_str()) => Ok(w),
        other => {
            let list = words.join(", ");
            let message = format!("expected {what} ({list}), found {}", describe(&other));
            fail(value.column, message)
        }
    }
}

fn duration(value: Token) -> Result<Duration, TraceQlError> {
    match &value.tok {
        Tok::Num(n) => parse_go_duration(n).map_err(|message| TraceQlError {
            column: value.column,
            message,
        }),
        other => {
            let message = format!(
                "expected a duration such as 100ms or 1.5s, found {}",
                describe(other)
            );
            fail(value.column, message)
        }
    }
}

/// The store's text form of an attribute value: integers in decimal, floats as Rust
/// prints `f64`, booleans as `true`/`false`, strings as they are.
fn attribute_text(value: Token) -> Result<String, TraceQlError> {
    match value.tok {
        Tok::Str(s) => Ok(s),
        Tok::Word(w) if w == "true" || w == "false" => Ok(w),
        Tok::Num(n) => {
            if let Ok(i) = n.parse::<i64>() {
                Ok(i.to_string())
            } else if let Ok(f) = n.parse::<f64>() {
                Ok(f.to_string())
            } else {
                let message = format!(
                    "expected a number, found {n:?}: attributes are compared with numbers, booleans or \"strings\""
                );
                fail(value.column, message)
            }
        }
        other => {
            let message = format!(
                "expected a value (a \"string\", number, true or false), found {}: quote strings",
                describe(&other)
            );
            fail(value.column, message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conditions(text: &str) -> Vec<Condition> {
        parse(text)
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
            .conditions
    }

    fn error(text: &str) -> String {
        parse(text)
            .expect_err("the query should be rejected")
            .to_string()
    }

    fn attr(scope: Scope, key: &str, value: &str, negated: bool) -> Condition {
        Condition::Attribute {
            scope,
            key: key.to_string(),
            value: value.to_string(),
            negated,
        }
    }

    #[test]
    fn empty_filters_match_everything() {
        assert!(conditions("{}").is_empty());
        assert!(conditions("  { }  ").is_empty());
        assert!(conditions("").is_empty());
    }

    #[test]
    fn grafana_search_query_parses() {
        let parsed = conditions(
            r#"{resource.service.name="checkout" && name!="GET /health" && status=error && duration>=1.5s && kind=server}"#,
        );
        assert_eq!(
            parsed,
            vec![
                Condition::Service {
                    value: "checkout".into(),
                    negated: false
                },
                Condition::Name {
                    value: "GET /health".into(),
                    negated: true
                },
                Condition::Status(Status::Error),
                Condition::Duration {
                    op: CmpOp::Ge,
                    value: Duration::from_millis(1500)
                },
                Condition::Kind("server".into()),
            ]
        );
    }

    #[test]
    fn service_shorthand_and_negation() {
        assert_eq!(
            conditions(r#"{ .service.name != "cart" }"#),
            vec![Condition::Service {
                value: "cart".into(),
                negated: true
            }]
        );
    }

    #[test]
    fn every_duration_operator_parses() {
        let ops = [
            (">", CmpOp::Gt),
            (">=", CmpOp::Ge),
            ("<", CmpOp::Lt),
            ("<=", CmpOp::Le),
            ("=", CmpOp::Eq),
        ];
        for (text, op) in ops {
            assert_eq!(
                conditions(&format!("{{ duration {text} 250us }}")),
                vec![Condition::Duration {
                    op,
                    value: Duration::from_micros(250)
                }],
                "{text}"
            );
        }
    }

    #[test]
    fn tempo_intrinsics_parse_in_both_spellings() {
        let expected = vec![
            Condition::RootService("shop".into()),
            Condition::RootName("GET /".into()),
            Condition::TraceDuration {
                op: CmpOp::Gt,
                value: Duration::from_secs(90),
            },
        ];
        assert_eq!(
            conditions(
                r#"{ rootServiceName = "shop" && rootName = "GET /" && traceDuration > 1m30s }"#
            ),
            expected
        );
        assert_eq!(
            conditions(
                r#"{ trace:rootService = "shop" && trace:rootName = "GET /" && trace:duration > 1m30s }"#
            ),
            expected
        );
        assert_eq!(
            conditions("{ span:status = ok && span:kind = client && status = unset }"),
            vec![
                Condition::Status(Status::Ok),
                Condition::Kind("client".into()),
                Condition::Status(Status::Unset)
            ]
        );
    }

    #[test]
    fn attribute_values_take_the_store_text_form() {
        let parsed = conditions(
            r#"{ span.http.status_code = 200 && resource.k8s.pod-name != "a\"b\\c" && .ratio = 1.50 && span.flag = true && .neg = -7 && .big = 2.0 }"#,
        );
        assert_eq!(
            parsed,
            vec![
                attr(Scope::Span, "http.status_code", "200", false),
                attr(Scope::Resource, "k8s.pod-name", "a\"b\\c", true),
                attr(Scope::Any, "ratio", "1.5", false),
                attr(Scope::Span, "flag", "true", false),
                attr(Scope::Any, "neg", "-7", false),
                attr(Scope::Any, "big", "2", false),
            ]
        );
    }

    #[test]
    fn errors_say_what_was_expected_and_where() {
        assert_eq!(
            error(r#"{ span.foo ~ "x" }"#),
            "at column 12: expected an operator (=, !=, >, >=, <, <=), found \"~\""
        );
        assert_eq!(
            error(r#"{ name = "a" "#),
            "at column 14: expected \"&&\" or \"}\", found the end of the query"
        );
        assert_eq!(
            error(r#"name = "a""#),
            "at column 1: expected a spanset filter starting with \"{\", found \"name\""
        );
        assert_eq!(
            error(r#"{ = "a" }"#),
            format!("at column 3: expected a field ({FIELDS}), found \"=\"")
        );
        assert_eq!(
            error("{ name = }"),
            "at column 10: expected a value (a \"string\", number, duration, true or false), found \"}\""
        );
    }

    #[test]
    fn unsupported_forms_are_rejected_clearly() {
        assert_eq!(
            error(r#"{ name = "a" } && { name = "b" }"#),
            "at column 16: combining spansets is not supported: put all conditions in one { ... } joined by \"&&\""
        );
        assert_eq!(
            error(r#"{ name = "a" || name = "b" }"#),
            "at column 14: \"||\" is not supported: conditions can only be joined with \"&&\""
        );
        assert_eq!(
            error(r#"{ name =~ "a.*" }"#),
            "at column 8: regular expression matching (=~, !~) is not supported"
        );
        assert_eq!(
            error(r#"{ span.code > 500 }"#),
            "at column 13: span.code can only be compared with = or !=, not >"
        );
        assert_eq!(
            error("{ duration != 1s }"),
            "at column 12: duration can only be compared with =, >, >=, < or <=, not !="
        );
        assert_eq!(
            error("{ status != error }"),
            "at column 10: status can only be compared with =, not !="
        );
    }

    #[test]
    fn bad_values_are_named() {
        assert_eq!(
            error("{ status = broken }"),
            "at column 12: expected a status (error, ok, unset), found \"broken\""
        );
        assert_eq!(
            error("{ kind = 2 }"),
            "at column 10: expected a span kind (server, client, producer, consumer, internal), found \"2\""
        );
        assert_eq!(
            error("{ duration > 5 }"),
            "at column 14: \"5\" is missing a unit (ns, us, ms, s, m, h)"
        );
        assert_eq!(
            error(r#"{ duration > "5s" }"#),
            "at column 14: expected a duration such as 100ms or 1.5s, found the string \"5s\""
        );
        assert_eq!(
            error("{ name = checkout }"),
            "at column 10: name needs a quoted string, found \"checkout\""
        );
        assert_eq!(
            error("{ span.x = checkout }"),
            "at column 12: expected a value (a \"string\", number, true or false), found \"checkout\": quote strings"
        );
        assert_eq!(
            error("{ .x = 1s }"),
            "at column 8: expected a number, found \"1s\": attributes are compared with numbers, booleans or \"strings\""
        );
        assert_eq!(
            error("{ color = \"red\" }"),
            format!("at column 3: unknown field \"color\": expected {FIELDS}")
        );
        assert_eq!(
            error("{ span. = 1 }"),
            "at column 3: \"span.\" is missing an attribute name"
        );
    }

    #[test]
    fn strings_and_columns_count_characters() {
        assert_eq!(
            conditions("{ name = \"caf\u{e9}\\n\" }"),
            vec![Condition::Name {
                value: "caf\u{e9}\n".into(),
                negated: false
            }]
        );
        assert_eq!(
            error("{ name = \"\u{e9}\u{e9}\" ! }"),
            "at column 15: expected \"&&\" or \"}\", found \"!\""
        );
        assert_eq!(
            error("{ name = \"open }"),
            "at column 10: unterminated string: expected a closing '\"'"
        );
        assert_eq!(
            error(r#"{ name = "a\qb" }"#),
            "at column 12: unknown escape \"\\q\" in a string"
        );
    }
}
