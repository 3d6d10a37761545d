//! Tests for the trace_store exporter: config, round trips, rolling, the log seam, outside readers.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{TraceStoreConfig, TraceStoreExporterFactory, build_exporter};
use crate::component::{
    BuildContext, ExportError, Exporter, ExporterFactory, ResourceSpans, TraceBatch,
};
use crate::store::testdata::{self, flatten};
use crate::store::{StoreError, WriteAheadLog};

/// 2026-11-27T16:00:00Z
const HOUR_START: u64 = 1_795_795_200_000_000_000;

fn parse(yaml: &str) -> TraceStoreConfig {
    serde_yaml::from_str(yaml).unwrap()
}

fn problems(config: &TraceStoreConfig) -> Vec<String> {
    crate::testing::problems_of(config)
}

#[test]
fn example_and_defaults_are_valid_and_store_under_spanline_data() {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(TraceStoreExporterFactory::EXAMPLE_YAML).unwrap();
    let example: TraceStoreConfig = serde_yaml::from_value(doc["trace_store"].clone()).unwrap();
    assert!(problems(&example).is_empty(), "{:?}", problems(&example));
    assert_eq!(
        example.tenants["acme"].retention.unwrap().get(),
        Duration::from_secs(30 * 86_400)
    );
    let defaults = TraceStoreConfig::default();
    assert!(problems(&defaults).is_empty());
    assert_eq!(defaults.url, "file://./spanline-data");
    assert_eq!(defaults.wal_dir, "./spanline-data/wal");
    assert_eq!(defaults.max_block_bytes.bytes(), 128 << 20);
}

#[test]
fn reports_every_problem_with_its_path() {
    let config = parse(
        "url: ftp://x\nmax_block_bytes: 0\nmax_block_age: 0\nrow_group_spans: 0\nbloom_false_positive_rate: 1.5\nindexed_attributes: ['']\ntenants: { 'a/b': { retention: 1d } }\n",
    );
    let found = problems(&config);
    for expected in [
        "url: must start with",
        "max_block_bytes: must be at least 1MiB",
        "max_block_age: must be greater than 0",
        "row_group_spans: must be greater than 0",
        "bloom_false_positive_rate: must be between 0 and 1",
        "indexed_attributes[0]: must not be empty",
        "tenants::a/b",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "{expected} missing in {found:?}"
        );
    }
    let file = parse("url: file:///tmp/x\noptions: { bogus: 1 }\n");
    assert!(
        problems(&file)[0].starts_with("options::bogus"),
        "{:?}",
        problems(&file)
    );
    let s3 = parse(
        "url: s3://bucket/traces\noptions: { endpoint: 'http://127.0.0.1:9000', region: us-east-1, allow_http: 'true' }\n",
    );
    assert!(problems(&s3).is_empty(), "{:?}", problems(&s3));
    assert!(serde_yaml::from_str::<TraceStoreConfig>("bucket: x").is_err());
}

fn batch(seed: u64, traces: usize, tenant: Option<&str>) -> TraceBatch {
    TraceBatch::measured(testdata::batch(seed, traces, 5, tenant, HOUR_START))
}

fn memory_config() -> TraceStoreConfig {
    TraceStoreConfig {
        url: "memory://".into(),
        ..Default::default()
    }
}

async fn read_all(exporter: &super::TraceStoreExporter) -> Vec<ResourceSpans> {
    let reader = exporter.reader();
    let mut out = Vec::new();
    for tenant in reader.tenants().await.unwrap() {
        for meta in reader.blocks(&tenant).await.unwrap() {
            out.extend(reader.block_spans(&meta).await.unwrap());
        }
    }
    out
}

#[tokio::test]
async fn exports_route_by_tenant_and_flush_commits_everything() {
    let dir = tempfile::tempdir().unwrap();
    let config = TraceStoreConfig {
        url: format!("file://{}", dir.path().display()),
        wal_dir: dir.path().join("wal").display().to_string(),
        ..Default::default()
    };
    let ctx = BuildContext {
        id: "trace_store".into(),
        pipeline: None,
    };
    let mut boxed = TraceStoreExporterFactory
        .build(config.clone(), &ctx)
        .unwrap();
    assert!(
        boxed.durable(),
        "the factory opens the write-ahead log under wal_dir"
    );
    boxed.start().await.unwrap();
    let sent = [batch(1, 20, Some("acme")), batch(2, 10, None)];
    for b in &sent {
        boxed.export(b).await.unwrap();
    }
    boxed.shutdown().await;
    let exporter = build_exporter(&config, "reader", None).unwrap();
    let read = read_all(&exporter).await;
    let all: Vec<ResourceSpans> = sent
        .iter()
        .flat_map(|b| b.resource_spans().to_vec())
        .collect();
    assert_eq!(flatten(&read), flatten(&all));
    assert_eq!(
        exporter.reader().tenants().await.unwrap(),
        vec!["acme", "default"]
    );
}

#[tokio::test(start_paused = true)]
async fn an_old_block_is_committed_without_new_data_or_a_flush() {
    let mut exporter = build_exporter(&memory_config(), "trace_store", None).unwrap();
    exporter.start().await.unwrap();
    exporter.export(&batch(1, 3, Some("acme"))).await.unwrap();
    tokio::time::sleep(Duration::from_secs(299)).await;
    assert!(exporter.reader().blocks("acme").await.unwrap().is_empty());
    let mut committed = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        committed = exporter.reader().blocks("acme").await.unwrap().len();
        if committed > 0 {
            break;
        }
    }
    assert_eq!(committed, 1, "max_block_age (5m) rolls the block");
    exporter.shutdown().await;
}

#[tokio::test]
async fn refuses_as_retryable_when_uncommitted_spans_reach_the_limit() {
    let mut config = memory_config();
    config.wal_max_bytes = crate::component::ByteSize::kib(20);
    config.max_block_bytes = crate::component::ByteSize::mib(1);
    let mut exporter = build_exporter(&config, "trace_store", None).unwrap();
    let backlog = exporter.backlog().expect("the store reports its backlog");
    assert_eq!(backlog.limit_bytes(), 20 << 10);
    assert_eq!(backlog.held_bytes(), 0);
    let first = batch(1, 10, None);
    exporter.export(&first).await.unwrap();
    assert_eq!(backlog.held_bytes(), first.size_hint() as u64);
    let err = exporter.export(&batch(2, 20, None)).await.unwrap_err();
    assert!(matches!(err, ExportError::Retryable { .. }), "{err}");
    exporter.flush().await.unwrap();
    assert_eq!(
        backlog.held_bytes(),
        0,
        "committed blocks are no longer held"
    );
    exporter.export(&batch(2, 20, None)).await.unwrap();
    let bad = exporter
        .export(&batch(3, 1, Some("../x")))
        .await
        .unwrap_err();
    assert!(matches!(bad, ExportError::Permanent { .. }), "{bad}");
}

/// A log that keeps entries in memory and records what the exporter told it.
#[derive(Default)]
struct FakeWal {
    entries: Mutex<Vec<(u64, Vec<ResourceSpans>)>>,
    committed: Mutex<Vec<u64>>,
}

#[async_trait::async_trait]
impl WriteAheadLog for FakeWal {
    async fn append(&self, batch: &TraceBatch) -> Result<u64, StoreError> {
        let mut entries = self.entries.lock();
        let seq = entries.last().map_or(1, |(s, _)| s + 1);
        entries.push((seq, batch.resource_spans().to_vec()));
        Ok(seq)
    }

    async fn committed_through(&self, seq: u64) -> Result<(), StoreError> {
        self.entries.lock().retain(|(s, _)| *s > seq);
        self.committed.lock().push(seq);
        Ok(())
    }

    async fn replay(&self) -> Result<Vec<(u64, Vec<ResourceSpans>)>, StoreError> {
        Ok(self.entries.lock().clone())
    }
}

#[tokio::test]
async fn the_log_holds_each_batch_until_its_block_is_committed_and_is_replayed() {
    let wal = Arc::new(FakeWal::default());
    let config = memory_config();
    let mut exporter = build_exporter(&config, "trace_store", Some(wal.clone())).unwrap();
    assert!(exporter.durable());
    exporter.export(&batch(1, 4, Some("a"))).await.unwrap();
    exporter.export(&batch(2, 4, Some("b"))).await.unwrap();
    assert_eq!(
        wal.entries.lock().len(),
        2,
        "appended before export answered"
    );
    assert!(
        wal.committed.lock().iter().all(|s| *s == 0),
        "nothing committed yet"
    );
    exporter.flush().await.unwrap();
    assert_eq!(wal.committed.lock().last(), Some(&2));
    assert!(wal.entries.lock().is_empty());

    // A restart finds an entry that never reached a block and commits it.
    let pending = batch(3, 4, Some("c"));
    wal.append(&pending).await.unwrap();
    let mut restarted = build_exporter(&config, "trace_store", Some(wal.clone())).unwrap();
    restarted.start().await.unwrap();
    restarted.shutdown().await;
    let read = read_all(&restarted).await;
    assert_eq!(flatten(&read), flatten(pending.resource_spans()));
    assert!(wal.entries.lock().is_empty());
}

#[tokio::test]
async fn a_storage_outage_keeps_blocks_encoded_and_queryable_until_storage_returns() {
    let dir = tempfile::tempdir().unwrap();
    let config = TraceStoreConfig {
        url: format!("file://{}", dir.path().display()),
        ..Default::default()
    };
    let mut exporter = build_exporter(&config, "trace_store", None).unwrap();
    // A plain file where the spans folder belongs makes every block upload fail.
    let blocker = dir.path().join("spans");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let sent = batch(1, 10, Some("acme"));
    exporter.export(&sent).await.unwrap();
    assert!(matches!(
        exporter.flush().await,
        Err(ExportError::Retryable { .. })
    ));
    assert_eq!(
        exporter.held("acme").await,
        (1, 0),
        "the block waits encoded, its request bytes let go"
    );
    assert!(exporter.flush().await.is_err(), "still down");
    assert!(exporter.reader().blocks("acme").await.unwrap().is_empty());
    // Still queryable while it waits: by trace id, in search and by attribute.
    let live = exporter.query_source().unwrap().live.unwrap();
    let trace_id = sent.resource_spans()[0].scope_spans[0].spans[0]
        .trace_id
        .clone();
    let found = live.trace("acme", &trace_id).await;
    let expected = sent
        .resource_spans()
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .filter(|s| s.trace_id == trace_id)
        .count();
    assert_eq!(flatten(&found).len(), expected);
    let everything = crate::store::TimeWindow {
        start_unix_nano: 0,
        end_unix_nano: u64::MAX / 2,
    };
    let summaries = live.summaries("acme", everything).await;
    assert!(summaries.iter().any(|t| t.trace_id.as_slice() == trace_id));
    assert!(live.summaries("other", everything).await.is_empty());

    std::fs::remove_file(&blocker).unwrap();
    exporter.flush().await.unwrap();
    assert_eq!(exporter.held("acme").await, (0, 0));
    assert_eq!(
        flatten(&read_all(&exporter).await),
        flatten(sent.resource_spans()),
        "every span once"
    );
}

#[tokio::test(start_paused = true)]
async fn background_compaction_merges_the_blocks_of_a_closed_hour() {
    let mut exporter = build_exporter(&memory_config(), "trace_store", None).unwrap();
    exporter.start().await.unwrap();
    let yesterday = HOUR_START - 86_400_000_000_000;
    let mut sent = Vec::new();
    for seed in 0..3 {
        let batch = TraceBatch::measured(testdata::batch(seed, 4, 3, Some("acme"), yesterday));
        exporter.export(&batch).await.unwrap();
        exporter.flush().await.unwrap();
        sent.extend(batch.into_resource_spans());
    }
    assert_eq!(exporter.reader().blocks("acme").await.unwrap().len(), 3);
    let mut blocks = 3;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(15)).await;
        blocks = exporter.reader().blocks("acme").await.unwrap().len();
        if blocks == 1 {
            break;
        }
    }
    assert_eq!(blocks, 1, "compaction (every 10m) merged the hour's blocks");
    assert_eq!(flatten(&read_all(&exporter).await), flatten(&sent));
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_full_block_is_committed_by_the_background_task_without_a_flush() {
    let mut config = memory_config();
    config.max_block_bytes = crate::component::ByteSize::mib(1);
    let mut exporter = build_exporter(&config, "trace_store", None).unwrap();
    exporter.start().await.unwrap();
    let big = TraceBatch::measured(testdata::batch(1, 1000, 5, Some("acme"), HOUR_START));
    assert!(big.size_hint() > 1 << 20);
    exporter.export(&big).await.unwrap();
    let mut blocks = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        blocks = exporter.reader().blocks("acme").await.unwrap().len();
        if blocks > 0 {
            break;
        }
    }
    assert_eq!(
        blocks, 1,
        "rolled by max_block_bytes well before max_block_age"
    );
    exporter.shutdown().await;
}

/// The file log, except that it never releases entries: the process "dies" after a block's
/// index is written and before the log hears of it.
struct NeverReleased(super::wal_log::FileWal);

#[async_trait::async_trait]
impl WriteAheadLog for NeverReleased {
    async fn append(&self, batch: &TraceBatch) -> Result<u64, StoreError> {
        self.0.append(batch).await
    }

    async fn committed_through(&self, _: u64) -> Result<(), StoreError> {
        Ok(())
    }

    async fn replay(&self) -> Result<Vec<(u64, Vec<ResourceSpans>)>, StoreError> {
        self.0.replay().await
    }

    async fn note_block(&self, note: &crate::store::BlockNote) -> Result<(), StoreError> {
        self.0.note_block(note).await
    }

    async fn block_notes(&self) -> Result<Vec<crate::store::BlockNote>, StoreError> {
        self.0.block_notes().await
    }
}

#[tokio::test]
async fn a_crash_between_a_blocks_index_and_the_logs_release_stores_no_span_twice() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let config = TraceStoreConfig {
        url: format!("file://{}", dir.path().join("store").display()),
        ..Default::default()
    };
    let open = || super::wal_log::FileWal::open(&wal_dir, 1 << 30).unwrap();
    let (a, b, c) = (
        batch(1, 3, Some("a")),
        batch(2, 3, Some("b")),
        batch(3, 3, Some("a")),
    );
    {
        let wal: Arc<dyn WriteAheadLog> = Arc::new(NeverReleased(open()));
        let mut exporter = build_exporter(&config, "trace_store", Some(wal)).unwrap();
        exporter.export(&a).await.unwrap();
        exporter.export(&b).await.unwrap();
        exporter.flush().await.unwrap();
        // Logged, never in a block: must come back.
        exporter.export(&c).await.unwrap();
    }
    let mut restarted = build_exporter(&config, "trace_store", Some(Arc::new(open()))).unwrap();
    restarted.start().await.unwrap();
    restarted.shutdown().await;
    let stored = flatten(&read_all(&restarted).await);
    let sent = flatten(
        &[
            a.into_resource_spans(),
            b.into_resource_spans(),
            c.into_resource_spans(),
        ]
        .concat(),
    );
    assert_eq!(stored.len(), sent.len(), "each span exactly once");
    assert_eq!(stored, sent);
}
