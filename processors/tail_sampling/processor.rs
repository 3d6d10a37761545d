//! The pipeline side of the tail sampler: splits batches by trace into shards and collects
//! what the shards decided.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cache::DecisionCache;
use super::config::TailSamplingConfig;
use super::metrics::ShardMetrics;
use super::outbox::Shared;
use super::policy::PolicySet;
use super::shard::{Shard, ShardMsg, ShardSettings};
use super::trace::{Piece, trace_hash, trace_id_of};
use crate::component::{Dropped, Emitter, FlushReason, ProcessError, Processor, TraceBatch};

/// Batches each shard's queue holds before `process` waits (backpressure to the pipeline).
const SHARD_QUEUE: usize = 64;

/// One pipeline's tail sampler.
pub struct TailSampler {
    senders: Vec<mpsc::Sender<ShardMsg>>,
    /// Shards built but not yet spawned (spawned at `start`, or on first use).
    idle: Vec<(Shard, mpsc::Receiver<ShardMsg>)>,
    tasks: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    drop_on_shutdown: bool,
    /// A moment in the past: `next_flush` returns it when output waits, so the host (which
    /// compares against its own earlier `now`) always finds the flush due.
    built_at: Instant,
}

impl TailSampler {
    pub fn new(
        config: &TailSamplingConfig,
        processor: &str,
        pipeline: &str,
    ) -> Result<Self, String> {
        let shards = config.num_shards.max(1);
        let shared = Arc::new(Shared::new(shards));
        let policies = PolicySet::build(&config.policies, shards)?;
        let settings = shard_settings(config, shards);
        let mut senders = Vec::with_capacity(shards);
        let mut idle = Vec::with_capacity(shards);
        for index in 0..shards {
            let (tx, rx) = mpsc::channel(SHARD_QUEUE);
            let cache = DecisionCache::new(
                config.decision_cache.sampled_entries.div_ceil(shards),
                config.decision_cache.not_sampled_entries.div_ceil(shards),
            );
            let metrics = ShardMetrics::new(processor, pipeline, index, policies.names());
            let shard = Shard::new(
                index,
                settings.clone(),
                policies.clone(),
                cache,
                shared.clone(),
                metrics,
            );
            senders.push(tx);
            idle.push((shard, rx));
        }
        Ok(Self {
            senders,
            idle,
            tasks: Vec::new(),
            shared,
            drop_on_shutdown: config.drop_pending_traces_on_shutdown,
            built_at: Instant::now(),
        })
    }

    fn spawn_shards(&mut self) {
        for (shard, rx) in self.idle.drain(..) {
            self.tasks.push(tokio::spawn(shard.run(rx)));
        }
    }

    /// The most bytes any shard ever accounted, summed over shards (an upper bound of the
    /// sampler's peak memory for its spans).
    pub fn peak_accounted_bytes(&self) -> usize {
        self.shared
            .outboxes
            .iter()
            .map(|o| o.peak.load(Ordering::Relaxed))
            .sum()
    }

    fn shard_of(&self, trace_id: u128) -> usize {
        (trace_hash(trace_id, b"shard") % self.senders.len() as u64) as usize
    }

    /// Splits a batch into per-trace pieces, each keeping its resource and scope.
    fn split(&self, batch: TraceBatch) -> Vec<Vec<Piece>> {
        let mut per_shard: Vec<Vec<Piece>> = (0..self.senders.len()).map(|_| Vec::new()).collect();
        for rs in batch.into_resource_spans() {
            for ss in rs.scope_spans {
                let mut by_trace: HashMap<u128, Vec<Span>> = HashMap::new();
                for span in ss.spans {
                    by_trace.entry(trace_id_of(&span)).or_default().push(span);
                }
                for (trace_id, spans) in by_trace {
                    let group = ResourceSpans {
                        resource: rs.resource.clone(),
                        scope_spans: vec![ScopeSpans {
                            scope: ss.scope.clone(),
                            spans,
                            schema_url: ss.schema_url.clone(),
                        }],
                        schema_url: rs.schema_url.clone(),
                    };
                    per_shard[self.shard_of(trace_id)].push(Piece::new(trace_id, group));
                }
            }
        }
        per_shard
    }

    /// Moves everything the shards decided into `out`, and their drop counts into `dropped`.
    fn collect(&self, out: &mut Emitter, dropped: &mut Dropped) {
        self.shared.pending.store(false, Ordering::Release);
        let mut groups = Vec::new();
        let mut bytes = 0;
        for outbox in &self.shared.outboxes {
            let (outputs, taken) = outbox.take();
            bytes += taken;
            for output in outputs {
                groups.extend(output.into_groups());
            }
        }
        out.emit(TraceBatch::new(groups, bytes));
        self.shared.drops.report(dropped);
    }

    /// Asks every shard to decide (or drop) what it holds, and waits until they did.
    async fn finish_shards(&mut self) {
        self.spawn_shards();
        for sender in &self.senders {
            let (done, finished) = oneshot::channel();
            let msg = ShardMsg::Finish {
                drop: self.drop_on_shutdown,
                done,
            };
            if sender.send(msg).await.is_ok() {
                let _ = finished.await;
            }
        }
    }
}

fn shard_settings(config: &TailSamplingConfig, shards: usize) -> ShardSettings {
    let limit = (config.memory_limit.as_usize() / shards).max(1);
    let high_water = ((limit as f64) * config.high_water) as usize;
    let tenant_limits = config
        .tenants
        .iter()
        .map(|(tenant, c)| (tenant.clone(), (c.memory_limit.as_usize() / shards).max(1)))
        .collect();
    ShardSettings {
        decision_wait: config.decision_wait.get(),
        decision_wait_after_root: config.decision_wait_after_root.get(),
        max_trace_age: config.max_trace_age.get(),
        limit,
        high_water,
        max_trace_bytes: config.max_trace_bytes.as_usize().min(limit),
        tenant_limits,
    }
}

#[async_trait]
impl Processor for TailSampler {
    async fn start(&mut self) -> Result<(), crate::component::ComponentError> {
        self.spawn_shards();
        Ok(())
    }

    async fn process(
        &mut self,
        mut batch: TraceBatch,
        // Decided spans come out through `flush`, when the shards wake the pipeline.
        _out: &mut Emitter,
        dropped: &mut Dropped,
    ) -> Result<(), ProcessError> {
        self.spawn_shards();
        // Held for seconds: senders must not wait for the decision.
        batch.release_acks();
        let per_shard = self.split(batch);
        for (index, pieces) in per_shard.into_iter().enumerate() {
            if pieces.is_empty() {
                continue;
            }
            if let Err(mpsc::error::SendError(ShardMsg::Pieces(lost))) =
                self.senders[index].send(ShardMsg::Pieces(pieces)).await
            {
                let spans: usize = lost.iter().map(|p| p.spans).sum();
                dropped.add("shard_stopped", spans as u64);
            }
        }
        Ok(())
    }

    fn next_flush(&self) -> Option<Instant> {
        // The host flushes a processor only when this is due, wakeups included.
        self.shared
            .pending
            .load(Ordering::Acquire)
            .then_some(self.built_at)
    }

    fn wakeup(&self) -> Option<Arc<Notify>> {
        Some(self.shared.wakeup.clone())
    }

    async fn flush(&mut self, reason: FlushReason, out: &mut Emitter, dropped: &mut Dropped) {
        if reason == FlushReason::Shutdown {
            self.finish_shards().await;
        }
        self.collect(out, dropped);
    }

    async fn shutdown(&mut self) {
        self.senders.clear();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}
