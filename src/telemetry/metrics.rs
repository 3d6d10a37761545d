//! Every self-metric name spanline exports, with its description and the host's recorders.

use metrics::{
    Counter, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
};

use crate::component::Transport;

pub const RECEIVER_ACCEPTED_SPANS: &str = "spanline_receiver_accepted_spans_total";
pub const RECEIVER_REFUSED_SPANS: &str = "spanline_receiver_refused_spans_total";
pub const RECEIVER_REFUSED_REQUESTS: &str = "spanline_receiver_refused_requests_total";
pub const RECEIVER_TENANT_OVERRIDES: &str = "spanline_receiver_tenant_overrides_total";
pub const TENANT_REFUSED_SPANS: &str = "spanline_tenant_refused_spans_total";
pub const TENANT_QUOTA_TRUNCATIONS: &str = "spanline_tenant_quota_truncations_total";
pub const TENANT_ACCEPTED_SPANS: &str = "spanline_tenant_accepted_spans_total";
pub const TENANT_ACCEPTED_BYTES: &str = "spanline_tenant_accepted_bytes_total";
/// Rendered by `telemetry::cardinality` at each scrape (top pairs only), not by the recorder.
pub const ATTRIBUTE_CARDINALITY: &str = "spanline_attribute_cardinality";
pub const PROCESSOR_INCOMING_SPANS: &str = "spanline_processor_incoming_spans_total";
pub const PROCESSOR_OUTGOING_SPANS: &str = "spanline_processor_outgoing_spans_total";
pub const PROCESSOR_DROPPED_SPANS: &str = "spanline_processor_dropped_spans_total";
pub const BATCH_SENDS: &str = "spanline_processor_batch_sends_total";
pub const BATCH_SEND_SIZE: &str = "spanline_processor_batch_send_size_spans";
pub const MEMORY_LIMITER_RSS: &str = "spanline_memory_limiter_rss_bytes";
pub const MEMORY_LIMITER_REFUSING: &str = "spanline_memory_limiter_refusing";
pub const EXPORTER_SENT_SPANS: &str = "spanline_exporter_sent_spans_total";
pub const EXPORTER_SEND_FAILED_SPANS: &str = "spanline_exporter_send_failed_spans_total";
pub const EXPORTER_RETRIES: &str = "spanline_exporter_retries_total";
pub const EXPORTER_QUEUE_SIZE: &str = "spanline_exporter_queue_size";
pub const EXPORTER_QUEUE_BYTES: &str = "spanline_exporter_queue_bytes";
pub const EXPORTER_QUEUE_CAPACITY: &str = "spanline_exporter_queue_capacity";
pub const EXPORTER_QUEUE_CAPACITY_BYTES: &str = "spanline_exporter_queue_capacity_bytes";
pub const EXPORTER_SEND_LATENCY: &str = "spanline_exporter_send_latency_seconds";
pub const DEBUG_EXPORTER_SUPPRESSED_LOGS: &str = "spanline_debug_exporter_suppressed_logs_total";
pub const STORE_WAL_BYTES: &str = "spanline_store_wal_bytes";
pub const STORE_WAL_SEGMENTS: &str = "spanline_store_wal_segments";
pub const STORE_WAL_REPLAYED_SPANS: &str = "spanline_store_wal_replayed_spans_total";
pub const STORE_WAL_TRUNCATED_BYTES: &str = "spanline_store_wal_truncated_bytes_total";
pub const ATTRIBUTES_REMOVED: &str = "spanline_attributes_removed_total";
pub const ATTRIBUTES_HASHED: &str = "spanline_attributes_hashed_total";
pub const SANITIZER_MASKED_VALUES: &str = "spanline_sanitizer_masked_values_total";
pub const TAIL_SAMPLING_TRACES_IN_MEMORY: &str = "spanline_tail_sampling_traces_in_memory";
pub const TAIL_SAMPLING_BYTES_IN_MEMORY: &str = "spanline_tail_sampling_bytes_in_memory";
pub const TAIL_SAMPLING_DECISIONS: &str = "spanline_tail_sampling_decisions_total";
pub const TAIL_SAMPLING_DECISION_LATENCY: &str = "spanline_tail_sampling_decision_latency_seconds";
pub const TAIL_SAMPLING_LATE_SPANS: &str = "spanline_tail_sampling_late_spans_total";
pub const TAIL_SAMPLING_EARLY_DECISIONS: &str = "spanline_tail_sampling_early_decisions_total";
pub const TAIL_SAMPLING_DECISION_CACHE_LOOKUPS: &str =
    "spanline_tail_sampling_decision_cache_lookups_total";
pub const TAIL_SAMPLING_POLICY_EVALUATION: &str =
    "spanline_tail_sampling_policy_evaluation_seconds";
pub const STORE_BLOCKS_WRITTEN: &str = "spanline_store_blocks_written_total";
pub const STORE_SPANS_WRITTEN: &str = "spanline_store_spans_written_total";
pub const STORE_BYTES_WRITTEN: &str = "spanline_store_bytes_written_total";
pub const STORE_RAW_BYTES_WRITTEN: &str = "spanline_store_raw_bytes_written_total";
pub const STORE_UPLOAD_LATENCY: &str = "spanline_store_upload_latency_seconds";
pub const STORE_UPLOAD_FAILURES: &str = "spanline_store_upload_failures_total";
pub const STORE_BUFFERED_BYTES: &str = "spanline_store_buffered_bytes";
pub const STORE_STAGED_BYTES: &str = "spanline_store_staged_bytes";
pub const STORE_INDEX_LAG: &str = "spanline_store_index_lag_seconds";
pub const STORE_RETENTION_DELETED_BLOCKS: &str = "spanline_store_retention_deleted_blocks_total";
pub const STORE_COMPACTION_RUNS: &str = "spanline_store_compaction_runs_total";
pub const STORE_COMPACTED_BYTES: &str = "spanline_store_compacted_bytes_total";
pub const QUERY_DURATION: &str = "spanline_query_duration_seconds";
pub const QUERY_REQUESTS: &str = "spanline_query_requests_total";
pub const QUERY_BLOCKS_INSPECTED: &str = "spanline_query_blocks_inspected_total";
pub const QUERY_BYTES_READ: &str = "spanline_query_bytes_read_total";
pub const QUERY_BLOOM_FALSE_POSITIVES: &str = "spanline_query_bloom_false_positives_total";
pub const QUERY_CACHE_HITS: &str = "spanline_query_cache_hits_total";
pub const BUILD_INFO: &str = "spanline_build_info";
/// metrics-process publishes `process_*` metrics under this prefix.
pub const PROCESS_PREFIX: &str = "spanline_";

/// Registers the help text of every metric; called once when the recorder is installed.
pub fn describe_all() {
    describe_counter!(
        RECEIVER_ACCEPTED_SPANS,
        Unit::Count,
        "Spans accepted by a receiver and handed to its pipelines."
    );
    describe_counter!(
        RECEIVER_REFUSED_SPANS,
        Unit::Count,
        "Spans refused back to the sender (backpressure, limits, rejected spans), by reason."
    );
    describe_counter!(
        RECEIVER_REFUSED_REQUESTS,
        Unit::Count,
        "Requests refused before their spans could be decoded (malformed, too large, wrong content type), by reason."
    );
    describe_counter!(
        RECEIVER_TENANT_OVERRIDES,
        Unit::Count,
        "Resources whose client-supplied tenant.id differed from the tenant named by the API key or tenant header, and was replaced."
    );
    describe_counter!(
        TENANT_REFUSED_SPANS,
        Unit::Count,
        "Spans the tenant_quota processor refused or dropped, by tenant (first 100, then other) and reason (rate_limited, trace_too_large)."
    );
    describe_counter!(
        TENANT_QUOTA_TRUNCATIONS,
        Unit::Count,
        "Attributes removed, attribute values truncated and events removed by the tenant_quota processor, by tenant and kind."
    );
    describe_counter!(
        TENANT_ACCEPTED_SPANS,
        Unit::Count,
        "Spans the tenant_quota processor passed on, by tenant (configured tenants, the first 100 seen, then other)."
    );
    describe_counter!(
        TENANT_ACCEPTED_BYTES,
        Unit::Bytes,
        "Encoded OTLP bytes of the spans the tenant_quota processor passed on, by tenant (configured tenants, the first 100 seen, then other)."
    );
    describe_counter!(
        PROCESSOR_INCOMING_SPANS,
        Unit::Count,
        "Spans that entered a processor."
    );
    describe_counter!(
        PROCESSOR_OUTGOING_SPANS,
        Unit::Count,
        "Spans a processor passed on."
    );
    describe_counter!(
        PROCESSOR_DROPPED_SPANS,
        Unit::Count,
        "Spans a processor discarded, by reason."
    );
    describe_counter!(
        BATCH_SENDS,
        Unit::Count,
        "Batches sent by the batch processor, by trigger (size, timeout, idle: senders waited on a durable exporter and no more input was queued, shutdown)."
    );
    describe_histogram!(
        BATCH_SEND_SIZE,
        Unit::Count,
        "Spans per batch sent by the batch processor."
    );
    describe_gauge!(
        MEMORY_LIMITER_RSS,
        Unit::Bytes,
        "Process resident memory as last measured by the memory limiter."
    );
    describe_gauge!(
        MEMORY_LIMITER_REFUSING,
        Unit::Count,
        "1 while the memory limiter refuses new data."
    );
    describe_counter!(
        EXPORTER_SENT_SPANS,
        Unit::Count,
        "Spans an exporter delivered."
    );
    describe_counter!(
        EXPORTER_SEND_FAILED_SPANS,
        Unit::Count,
        "Spans an exporter gave up on, by reason (permanent, retries_exhausted, shutdown)."
    );
    describe_counter!(
        EXPORTER_RETRIES,
        Unit::Count,
        "Export attempts retried after a retryable error."
    );
    describe_gauge!(
        EXPORTER_QUEUE_SIZE,
        Unit::Count,
        "Batches waiting in an exporter's sending queue."
    );
    describe_gauge!(
        EXPORTER_QUEUE_BYTES,
        Unit::Bytes,
        "Bytes waiting in an exporter's sending queue."
    );
    describe_gauge!(
        EXPORTER_QUEUE_CAPACITY,
        Unit::Count,
        "Capacity of an exporter's sending queue, in batches."
    );
    describe_gauge!(
        EXPORTER_QUEUE_CAPACITY_BYTES,
        Unit::Bytes,
        "Capacity of an exporter's sending queue, in bytes."
    );
    describe_histogram!(
        EXPORTER_SEND_LATENCY,
        Unit::Seconds,
        "Time one export attempt took."
    );
    describe_counter!(
        DEBUG_EXPORTER_SUPPRESSED_LOGS,
        Unit::Count,
        "Debug exporter log lines suppressed by its rate limit."
    );
    describe_counter!(
        ATTRIBUTES_REMOVED,
        Unit::Count,
        "Attributes the attributes processor removed (allowlist or delete action)."
    );
    describe_counter!(
        ATTRIBUTES_HASHED,
        Unit::Count,
        "Attribute values the attributes processor replaced by a salted SHA-256 hash."
    );
    describe_counter!(
        SANITIZER_MASKED_VALUES,
        Unit::Count,
        "Values the sanitizer masked or hashed, by detector."
    );
    describe_gauge!(
        STORE_WAL_BYTES,
        Unit::Bytes,
        "Bytes held in the trace store's write-ahead log (every segment file)."
    );
    describe_gauge!(
        STORE_WAL_SEGMENTS,
        Unit::Count,
        "Segment files in the trace store's write-ahead log."
    );
    describe_counter!(
        STORE_WAL_REPLAYED_SPANS,
        Unit::Count,
        "Spans read back from the write-ahead log on start for re-ingestion."
    );
    describe_counter!(
        STORE_WAL_TRUNCATED_BYTES,
        Unit::Bytes,
        "Write-ahead log bytes found damaged on open, by reason (torn_tail: cut off; corrupt: skipped)."
    );
    describe_gauge!(
        TAIL_SAMPLING_TRACES_IN_MEMORY,
        Unit::Count,
        "Traces buffered by a tail sampler shard, waiting for their decision."
    );
    describe_gauge!(
        TAIL_SAMPLING_BYTES_IN_MEMORY,
        Unit::Bytes,
        "Encoded bytes of the spans buffered by a tail sampler shard."
    );
    describe_counter!(
        TAIL_SAMPLING_DECISIONS,
        Unit::Count,
        "Traces decided by a tail sampler, by deciding policy and decision (sampled, not_sampled, dropped)."
    );
    describe_histogram!(
        TAIL_SAMPLING_DECISION_LATENCY,
        Unit::Seconds,
        "Time from a trace's first span to its tail sampling decision."
    );
    describe_counter!(
        TAIL_SAMPLING_LATE_SPANS,
        Unit::Count,
        "Spans that arrived after their trace was decided and followed the cached decision, by decision."
    );
    describe_counter!(
        TAIL_SAMPLING_EARLY_DECISIONS,
        Unit::Count,
        "Traces decided before their deadline, by reason (memory_pressure, max_trace_bytes, tenant_share, shutdown)."
    );
    describe_counter!(
        TAIL_SAMPLING_DECISION_CACHE_LOOKUPS,
        Unit::Count,
        "Decision cache lookups for spans whose trace is not buffered, by cache (sampled, not_sampled) and result (hit, miss); a hit is a late span that follows a past decision."
    );
    describe_histogram!(
        TAIL_SAMPLING_POLICY_EVALUATION,
        Unit::Seconds,
        "Time to evaluate the policy set for one trace decision."
    );
    describe_counter!(
        STORE_BLOCKS_WRITTEN,
        Unit::Count,
        "Trace store blocks committed (index object written)."
    );
    describe_counter!(
        STORE_SPANS_WRITTEN,
        Unit::Count,
        "Spans in committed trace store blocks."
    );
    describe_counter!(
        STORE_BYTES_WRITTEN,
        Unit::Bytes,
        "Compressed Parquet bytes uploaded, by table (spans, traces)."
    );
    describe_counter!(
        STORE_RAW_BYTES_WRITTEN,
        Unit::Bytes,
        "OTLP protobuf bytes of the spans in committed blocks (before encoding)."
    );
    describe_histogram!(
        STORE_UPLOAD_LATENCY,
        Unit::Seconds,
        "Time to encode and upload one block, index included."
    );
    describe_counter!(
        STORE_UPLOAD_FAILURES,
        Unit::Count,
        "Block uploads that failed; the encoded block waits in memory and is retried."
    );
    describe_gauge!(
        STORE_BUFFERED_BYTES,
        Unit::Bytes,
        "OTLP bytes accepted by the trace store and not yet in a committed block."
    );
    describe_gauge!(
        STORE_STAGED_BYTES,
        Unit::Bytes,
        "Bytes of encoded blocks (their Parquet files) waiting in memory for object storage to take them."
    );
    describe_histogram!(
        QUERY_DURATION,
        Unit::Seconds,
        "Time to answer a query, per endpoint."
    );
    describe_counter!(
        QUERY_REQUESTS,
        Unit::Count,
        "Queries answered, per endpoint and HTTP status code."
    );
    describe_counter!(
        QUERY_BLOCKS_INSPECTED,
        Unit::Count,
        "Blocks whose files a query opened (after pruning by index, time and bloom filter)."
    );
    describe_counter!(
        QUERY_BYTES_READ,
        Unit::Bytes,
        "Bytes queries fetched from object storage."
    );
    describe_counter!(
        QUERY_BLOOM_FALSE_POSITIVES,
        Unit::Count,
        "Blocks a bloom filter said may hold a trace that they did not hold."
    );
    describe_counter!(
        QUERY_CACHE_HITS,
        Unit::Count,
        "Block indexes and Parquet footers served from the query cache instead of storage."
    );
    describe_gauge!(
        STORE_INDEX_LAG,
        Unit::Seconds,
        "Age of the oldest accepted span not yet in a committed block."
    );
    describe_counter!(
        STORE_RETENTION_DELETED_BLOCKS,
        Unit::Count,
        "Trace store blocks deleted by retention."
    );
    describe_counter!(
        STORE_COMPACTION_RUNS,
        Unit::Count,
        "Trace store compaction runs, by result (ok, failed)."
    );
    describe_counter!(
        STORE_COMPACTED_BYTES,
        Unit::Bytes,
        "OTLP bytes of spans rewritten into merged blocks by compaction."
    );
    describe_gauge!(
        BUILD_INFO,
        Unit::Count,
        "Always 1; the version label says which spanline runs."
    );
}

/// A receiver's standard counters, resolved once so the hot path only increments.
pub struct ReceiverMetrics {
    receiver: String,
    accepted_grpc: Counter,
    accepted_http: Counter,
}

impl ReceiverMetrics {
    pub fn new(receiver: &str) -> Self {
        let accepted = |t: Transport| counter!(RECEIVER_ACCEPTED_SPANS, "receiver" => receiver.to_string(), "transport" => t.as_str());
        Self {
            receiver: receiver.to_string(),
            accepted_grpc: accepted(Transport::Grpc),
            accepted_http: accepted(Transport::Http),
        }
    }

    pub fn accepted(&self, transport: Transport, spans: u64) {
        match transport {
            Transport::Grpc => self.accepted_grpc.increment(spans),
            Transport::Http => self.accepted_http.increment(spans),
        }
    }

    pub fn refused(&self, transport: Transport, spans: u64, reason: &'static str) {
        counter!(RECEIVER_REFUSED_SPANS, "receiver" => self.receiver.clone(), "transport" => transport.as_str(), "reason" => reason)
            .increment(spans);
    }

    pub fn refused_request(&self, transport: Transport, reason: &'static str) {
        counter!(RECEIVER_REFUSED_REQUESTS, "receiver" => self.receiver.clone(), "transport" => transport.as_str(), "reason" => reason)
            .increment(1);
    }
}

/// A processor's standard counters within one pipeline.
pub struct ProcessorMetrics {
    processor: String,
    pipeline: String,
    pub incoming: Counter,
    pub outgoing: Counter,
}

impl ProcessorMetrics {
    pub fn new(processor: &str, pipeline: &str) -> Self {
        let labels = [
            ("processor", processor.to_string()),
            ("pipeline", pipeline.to_string()),
        ];
        Self {
            processor: processor.to_string(),
            pipeline: pipeline.to_string(),
            incoming: counter!(PROCESSOR_INCOMING_SPANS, &labels),
            outgoing: counter!(PROCESSOR_OUTGOING_SPANS, &labels),
        }
    }

    pub fn dropped(&self, reason: &'static str, spans: u64) {
        counter!(PROCESSOR_DROPPED_SPANS, "processor" => self.processor.clone(), "pipeline" => self.pipeline.clone(), "reason" => reason)
            .increment(spans);
    }
}

/// An exporter's standard metrics.
pub struct ExporterMetrics {
    exporter: String,
    pub sent: Counter,
    pub retries: Counter,
    pub queue_size: metrics::Gauge,
    pub queue_bytes: metrics::Gauge,
    pub latency: metrics::Histogram,
}

impl ExporterMetrics {
    pub fn new(exporter: &str, capacity: usize, capacity_bytes: usize) -> Self {
        let label = [("exporter", exporter.to_string())];
        gauge!(EXPORTER_QUEUE_CAPACITY, &label).set(capacity as f64);
        gauge!(EXPORTER_QUEUE_CAPACITY_BYTES, &label).set(capacity_bytes as f64);
        Self {
            exporter: exporter.to_string(),
            sent: counter!(EXPORTER_SENT_SPANS, &label),
            retries: counter!(EXPORTER_RETRIES, &label),
            queue_size: gauge!(EXPORTER_QUEUE_SIZE, &label),
            queue_bytes: gauge!(EXPORTER_QUEUE_BYTES, &label),
            latency: metrics::histogram!(EXPORTER_SEND_LATENCY, &label),
        }
    }

    pub fn failed(&self, reason: &'static str, spans: u64) {
        counter!(EXPORTER_SEND_FAILED_SPANS, "exporter" => self.exporter.clone(), "reason" => reason).increment(spans);
    }
}
