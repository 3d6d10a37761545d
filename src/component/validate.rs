//! Collecting configuration problems, each with a path relative to the component.

/// A problem found while validating configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path segments joined with `::`; sequence items as `name[2]`.
    pub path: String,
    pub message: String,
    pub severity: Severity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// Collects every problem of one component's config; the host prefixes the component's path.
#[derive(Debug, Default)]
pub struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an error at `path` (relative, e.g. `protocols::grpc::endpoint`).
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(path.into(), message.into(), Severity::Error);
    }

    /// Records a warning: the config is used, but probably not as meant.
    pub fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(path.into(), message.into(), Severity::Warning);
    }

    fn push(&mut self, path: String, message: String, severity: Severity) {
        self.list.push(Problem {
            path,
            message,
            severity,
        });
    }

    pub fn has_errors(&self) -> bool {
        self.list.iter().any(|p| p.severity == Severity::Error)
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.list
    }

    /// Checks that a socket address such as `127.0.0.1:4317` parses.
    pub fn check_socket_addr(&mut self, path: &str, value: &str) {
        if value.parse::<std::net::SocketAddr>().is_err() && !looks_like_host_port(value) {
            self.error(
                path,
                format!("must be host:port (for example 127.0.0.1:4317), got {value:?}"),
            );
        }
    }
}

/// `localhost:4317` style addresses that need DNS are accepted by shape.
fn looks_like_host_port(value: &str) -> bool {
    match value.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}
