//! Errors and refusals that cross the component boundary.

use std::time::Duration;

/// Why data was refused back to its sender, who may retry later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// A pipeline or an exporter queue is full (backpressure).
    PipelineFull,
    /// The memory limiter is above its soft limit.
    MemoryLimit,
    /// A tenant is over its quota.
    Quota,
    /// spanline is shutting down.
    ShuttingDown,
}

impl RefusalReason {
    /// The `reason` label value used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::PipelineFull => "pipeline_full",
            RefusalReason::MemoryLimit => "memory_limit",
            RefusalReason::Quota => "quota",
            RefusalReason::ShuttingDown => "shutting_down",
        }
    }
}

/// A refusal: the sender should retry after `retry_after`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub reason: RefusalReason,
    pub message: String,
    pub retry_after: Duration,
}

impl Refusal {
    pub fn new(reason: RefusalReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            retry_after: Duration::from_secs(1),
        }
    }

    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }
}

/// A processor's failure to take a batch.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The batch is refused back to the receiver (and so to the sender).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The processor failed; the batch's spans are dropped and counted.
    #[error("processing failed: {0}")]
    Failed(String),
}

/// An exporter's failure to send a batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExportError {
    /// Worth retrying (network error, overloaded peer); `retry_after` is the peer's hint.
    #[error("retryable: {message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Will never succeed (the peer rejected the data); the batch is dropped and counted.
    #[error("permanent: {message}")]
    Permanent { message: String },
    /// The peer took the batch but rejected `rejected` of its spans (OTLP partial success);
    /// those are counted as failed, the rest as sent, and nothing is retried.
    #[error("peer rejected {rejected} spans: {message}")]
    PartiallyRejected { rejected: u64, message: String },
}

impl ExportError {
    pub fn retryable(message: impl Into<String>) -> Self {
        ExportError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        ExportError::Permanent {
            message: message.into(),
        }
    }
}

/// A component failed to build, start or stop.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error("{id}: cannot bind {address}: {source}")]
    Bind {
        id: String,
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{id}: {message}")]
    Other { id: String, message: String },
}

impl ComponentError {
    pub fn other(id: impl Into<String>, message: impl Into<String>) -> Self {
        ComponentError::Other {
            id: id.into(),
            message: message.into(),
        }
    }
}
