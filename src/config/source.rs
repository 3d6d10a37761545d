//! The config text: `${env:VAR}` substitution and a map from config paths to YAML lines.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Replaces `${env:VAR}` and `${env:VAR:-default}`; `$${` stays a literal `${`.
/// Returns every reference to an unset variable without a default, with its line.
pub fn substitute_env(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<(usize, String)>> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if let Err(message) = substitute_line(line, lookup, &mut out) {
            problems.push((index + 1, message));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn substitute_line(
    line: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), String> {
    let mut rest = line;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            return Err(format!("unterminated ${{...}} in {:?}", line.trim_end()));
        };
        let reference = &rest[start + 2..start + end];
        out.push_str(&resolve(reference, lookup)?);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(())
}

fn resolve(reference: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let Some(body) = reference.strip_prefix("env:") else {
        return Err(format!(
            "unsupported reference ${{{reference}}}: only ${{env:VAR}} and ${{env:VAR:-default}}"
        ));
    };
    let (name, default) = match body.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (body, None),
    };
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "invalid environment variable name {name:?} in ${{{reference}}}"
        ));
    }
    match (lookup(name), default) {
        (Some(value), None) => Ok(value),
        (Some(value), Some(_)) if !value.is_empty() => Ok(value),
        (_, Some(default)) => Ok(default.to_string()),
        (None, None) => Err(format!(
            "environment variable {name} is not set (give a default with ${{env:{name}:-value}})"
        )),
    }
}

/// Where each config path (`processors::batch::timeout`, `service::pipelines::traces::exporters[1]`) starts.
#[derive(Debug, Default, Clone)]
pub struct LineMap {
    lines: HashMap<String, usize>,
}

impl LineMap {
    /// Builds the map from YAML text; text that does not parse gives an empty map
    /// (the YAML error itself is reported by the deserializer, with its line).
    pub fn build(text: &str) -> Self {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut walker, false).is_err() {
            return Self::default();
        }
        Self {
            lines: walker.lines,
        }
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            let cut = match (path.rfind("::"), path.rfind('[')) {
                (Some(a), Some(b)) => a.max(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => return None,
            };
            path = &path[..cut];
        }
    }
}

enum Frame {
    Mapping { path: String, key: Option<String> },
    Sequence { path: String, index: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Walker {
    /// The path of the value that the next event starts, recording its line; `None` when the
    /// event is a mapping key.
    fn next_value_path(&mut self, mark: Marker) -> Option<String> {
        let path = match self.stack.last_mut() {
            None => String::new(),
            Some(Frame::Mapping { key: None, .. }) => return None,
            Some(Frame::Mapping { path, key }) => {
                let key = key.take().expect("a mapping value should follow its key");
                join(path, &key)
            }
            Some(Frame::Sequence { path, index }) => {
                let item = format!("{path}[{index}]");
                *index += 1;
                item
            }
        };
        self.lines.entry(path.clone()).or_insert(mark.line());
        Some(path)
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}::{key}")
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(value, ..) => match self.next_value_path(mark) {
                Some(_) => {}
                None => {
                    if let Some(Frame::Mapping { path, key }) = self.stack.last_mut() {
                        self.lines.insert(join(path, &value), mark.line());
                        *key = Some(value);
                    }
                }
            },
            Event::Alias(_) => {
                self.next_value_path(mark);
            }
            Event::MappingStart(..) => {
                let path = self.next_value_path(mark).unwrap_or_default();
                self.stack.push(Frame::Mapping { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.next_value_path(mark).unwrap_or_default();
                self.stack.push(Frame::Sequence { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("4317".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_variables_and_defaults() {
        let text = "a: ${env:PORT}\nb: ${env:MISSING:-x}\nc: ${env:EMPTY:-d}\nd: $${env:PORT}\n";
        let out = substitute_env(text, &env).unwrap();
        assert_eq!(out, "a: 4317\nb: x\nc: d\nd: ${env:PORT}\n");
    }

    #[test]
    fn reports_every_unset_variable_with_its_line() {
        let err = substitute_env("a: ${env:ONE}\nb: ok\nc: ${env:TWO}\n", &env).unwrap_err();
        assert_eq!(err.len(), 2);
        assert_eq!(err[0].0, 1);
        assert_eq!(err[1].0, 3);
        assert!(err[1].1.contains("TWO is not set"), "{}", err[1].1);
    }

    #[test]
    fn maps_paths_to_lines() {
        let text = "receivers:\n  otlp:\n    protocols:\n      grpc:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters:\n        - debug\n        - nop\n";
        let map = LineMap::build(text);
        assert_eq!(map.line_of("receivers::otlp"), Some(2));
        assert_eq!(map.line_of("receivers::otlp::protocols::grpc"), Some(4));
        assert_eq!(
            map.line_of("service::pipelines::traces::receivers[0]"),
            Some(8)
        );
        assert_eq!(
            map.line_of("service::pipelines::traces::exporters[1]"),
            Some(11)
        );
        assert_eq!(
            map.line_of("receivers::otlp::protocols::grpc::endpoint"),
            Some(4)
        );
    }
}
