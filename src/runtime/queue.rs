//! The bounded sending queue in front of an exporter, sized in batches and bytes.

use std::collections::VecDeque;

use parking_lot::Mutex;
use tokio::sync::Notify;

use std::sync::Arc;

use crate::component::{Backlog, TraceBatch};
use crate::telemetry::metrics::ExporterMetrics;

struct State {
    items: VecDeque<TraceBatch>,
    bytes: usize,
    closed: bool,
}

/// A queue with one consumer (the exporter's runner) and any number of producers (pipelines).
///
/// Pipelines check `full` before taking a new request and refuse it when the queue is
/// full (or the exporter's own backlog is), then push whatever their processors emit; so
/// the queue can exceed its bounds by at most what one request produces, and senders feel
/// backpressure instead of spanline buffering without bound.
pub struct ExporterQueue {
    state: Mutex<State>,
    notify: Notify,
    capacity: usize,
    capacity_bytes: usize,
    metrics: ExporterMetrics,
    backlog: Option<Arc<dyn Backlog>>,
}

/// Why a queue takes no new request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The queue itself is at its capacity.
    Queue,
    /// What is queued plus what the exporter holds reaches the exporter's limit.
    Backlog { held: u64, limit: u64 },
}

impl ExporterQueue {
    pub fn new(capacity: usize, capacity_bytes: usize, metrics: ExporterMetrics) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                closed: false,
            }),
            notify: Notify::new(),
            capacity: capacity.max(1),
            capacity_bytes: capacity_bytes.max(1),
            metrics,
            backlog: None,
        }
    }

    /// Also refuses new requests while the exporter's backlog (with what is queued for it)
    /// is at its limit.
    pub fn with_backlog(mut self, backlog: Option<Arc<dyn Backlog>>) -> Self {
        self.backlog = backlog;
        self
    }

    pub fn metrics(&self) -> &ExporterMetrics {
        &self.metrics
    }

    /// Why a new request should be refused, if it should. An exporter holding nothing
    /// always gets what is queued, so one oversized request cannot wedge it.
    pub fn full(&self) -> Option<Full> {
        let queued = {
            let state = self.state.lock();
            if state.items.len() >= self.capacity || state.bytes >= self.capacity_bytes {
                return Some(Full::Queue);
            }
            state.bytes as u64
        };
        let backlog = self.backlog.as_ref()?;
        let (held, limit) = (backlog.held_bytes(), backlog.limit_bytes());
        (held > 0 && held + queued >= limit).then_some(Full::Backlog { held, limit })
    }

    /// Adds a batch (see the type's note on bounds). After `close`, the batch is handed back.
    pub fn push(&self, batch: TraceBatch) -> Result<(), TraceBatch> {
        {
            let mut state = self.state.lock();
            if state.closed {
                return Err(batch);
            }
            state.bytes += batch.size_hint();
            state.items.push_back(batch);
            self.publish(&state);
        }
        self.notify.notify_one();
        Ok(())
    }

    /// The next batch; `None` once the queue is closed and empty.
    pub async fn pop(&self) -> Option<TraceBatch> {
        loop {
            {
                let mut state = self.state.lock();
                if let Some(batch) = state.items.pop_front() {
                    state.bytes -= batch.size_hint();
                    self.publish(&state);
                    return Some(batch);
                }
                if state.closed {
                    return None;
                }
            }
            self.notify.notified().await;
        }
    }

    /// No more pushes; the consumer drains what is left.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.notify.notify_one();
    }

    /// Removes everything still queued (when shutdown gives up), for counting.
    pub fn take_all(&self) -> Vec<TraceBatch> {
        let mut state = self.state.lock();
        state.bytes = 0;
        let items: Vec<TraceBatch> = state.items.drain(..).collect();
        self.publish(&state);
        items
    }

    pub fn len(&self) -> usize {
        self.state.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn publish(&self, state: &State) {
        self.metrics.queue_size.set(state.items.len() as f64);
        self.metrics.queue_bytes.set(state.bytes as f64);
    }
}
