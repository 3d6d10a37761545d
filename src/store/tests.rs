//! Round trips through the store: write blocks, read them back span for span.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::TimestampNanosecondType;
use object_store::{ObjectStore, ObjectStoreExt};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio::time::Instant;

use super::layout::Layout;
use super::location::Location;
use super::reader::StoreReader;
use super::retention::{self, RetentionPolicy};
use super::testdata::{self, flatten};
use super::writer::{BlockWriter, WriterConfig, write_block};

/// 2026-11-27T16:00:00Z
const HOUR_START: u64 = 1_795_795_200_000_000_000;

fn config() -> WriterConfig {
    WriterConfig {
        row_group_spans: 50,
        indexed_attributes: vec!["http.route".into(), "db.system".into()],
        ..Default::default()
    }
}

async fn write_all(
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
    batches: &[Vec<ResourceSpans>],
) -> BlockWriter {
    let mut writer = BlockWriter::new(config());
    let now = Instant::now();
    for (seq, batch) in batches.iter().enumerate() {
        writer.add(batch, seq as u64 + 1, now).unwrap();
    }
    for block in writer.seal_due(now, true, 1_795_795_200_000) {
        let id = block.id.clone();
        write_block(store, layout, writer.config(), block)
            .await
            .unwrap();
        writer.committed(&id);
    }
    writer
}

fn mixed_batches() -> Vec<Vec<ResourceSpans>> {
    let mut exotic = testdata::batch(9, 1, 1, Some("acme"), HOUR_START);
    exotic[0].scope_spans.push(ScopeSpans {
        spans: vec![testdata::exotic_span([7; 16], HOUR_START + 5)],
        ..Default::default()
    });
    vec![
        testdata::batch(1, 40, 6, Some("acme"), HOUR_START),
        testdata::batch(2, 30, 4, None, HOUR_START + 3_599_990_000_000),
        exotic,
    ]
}

async fn assert_round_trip(store: Arc<dyn ObjectStore>, layout: Layout) {
    let batches = mixed_batches();
    let writer = write_all(&store, &layout, &batches).await;
    assert_eq!(writer.committed_through(), 3);
    let reader = StoreReader::new(store, layout);
    assert_eq!(reader.tenants().await.unwrap(), vec!["acme", "default"]);
    let mut read = Vec::new();
    for tenant in reader.tenants().await.unwrap() {
        for meta in reader.blocks(&tenant).await.unwrap() {
            read.extend(reader.block_spans(&meta).await.unwrap());
        }
    }
    let sent: Vec<ResourceSpans> = batches.into_iter().flatten().collect();
    let (sent, read) = (flatten(&sent), flatten(&read));
    assert_eq!(sent.len(), 40 * 6 + 30 * 4 + 2);
    assert_eq!(read.len(), sent.len());
    for (a, b) in sent.iter().zip(&read) {
        assert_eq!(a, b);
    }
}

#[tokio::test]
async fn every_span_and_attribute_survives_memory() {
    let (store, layout) = Location::Memory
        .open("memory://", &BTreeMap::new())
        .unwrap();
    assert_round_trip(store, layout).await;
}

#[tokio::test]
async fn every_span_and_attribute_survives_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let (store, layout) = Location::parse(&url)
        .unwrap()
        .open(&url, &BTreeMap::new())
        .unwrap();
    assert_round_trip(store, layout).await;
    let partition = dir.path().join("spans/tenant=acme/date=2026-11-27/hour=16");
    assert_eq!(std::fs::read_dir(partition).unwrap().count(), 1);
    assert!(
        dir.path()
            .join("traces/tenant=default/date=2026-11-27/hour=16")
            .is_dir()
    );
}

#[tokio::test]
async fn finds_a_trace_by_id_across_blocks_and_hours() {
    let (store, layout) = Location::Memory
        .open("memory://", &BTreeMap::new())
        .unwrap();
    let batches = mixed_batches();
    // A second write of a trace whose spans start in the next hour lands in another block.
    let sent = flatten(&batches[0]);
    let trace_id = sent[17].2.trace_id.clone();
    let mut late = batches[0].clone();
    for rs in &mut late {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| s.trace_id == trace_id);
            for s in &mut ss.spans {
                s.span_id[0] ^= 0xff;
                s.start_time_unix_nano += 3_600_000_000_000;
            }
        }
    }
    write_all(&store, &layout, &[batches[0].clone(), late]).await;
    let reader = StoreReader::new(store, layout);
    assert_eq!(reader.blocks("acme").await.unwrap().len(), 2);
    let found = flatten(&reader.trace("acme", &trace_id).await.unwrap());
    assert_eq!(found.len(), 12);
    assert!(found.iter().all(|(_, _, s)| s.trace_id == trace_id));
    assert!(reader.trace("acme", &[0xab; 16]).await.unwrap().is_empty());
    assert!(reader.trace("other", &trace_id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_row_group_larger_than_a_page_is_one_sorted_row_group_and_its_traces_are_found() {
    // Rows are gathered a page (16 384) at a time; a row group of 20 000 takes two.
    let (store, layout) = Location::Memory
        .open("memory://", &BTreeMap::new())
        .unwrap();
    let config = WriterConfig {
        row_group_spans: 20_000,
        ..config()
    };
    let batch = testdata::batch(3, 2_500, 12, Some("acme"), HOUR_START);
    let mut writer = BlockWriter::new(config);
    let now = Instant::now();
    writer.add(&batch, 1, now).unwrap();
    let mut blocks = writer.seal_due(now, true, 1_795_795_200_000);
    assert_eq!(blocks.len(), 1);
    let meta = write_block(&store, &layout, writer.config(), blocks.remove(0))
        .await
        .unwrap();

    let path = object_store::path::Path::from(meta.spans_path.as_str());
    let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
    let file = parquet::file::reader::SerializedFileReader::new(bytes.clone()).unwrap();
    use parquet::file::reader::FileReader;
    let groups: Vec<i64> = (0..file.num_row_groups())
        .map(|g| file.metadata().row_group(g).num_rows())
        .collect();
    assert_eq!(groups, vec![20_000, 10_000]);
    // In file order, rows sort by (trace id, start time) across the two gathers.
    let rows = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
        .unwrap()
        .build()
        .unwrap();
    let mut order = Vec::new();
    for batch in rows {
        let batch = batch.unwrap();
        let ids = batch
            .column_by_name("trace_id")
            .unwrap()
            .as_fixed_size_binary();
        let starts = batch
            .column_by_name("start_time")
            .unwrap()
            .as_primitive::<TimestampNanosecondType>();
        for row in 0..batch.num_rows() {
            order.push((ids.value(row).to_vec(), starts.value(row)));
        }
    }
    assert_eq!(order.len(), 30_000);
    assert!(order.is_sorted(), "rows are in (trace_id, start) order");
    // Attribute maps carry no statistics (nothing prunes by them), the rest do; every
    // column has its offset index, which trace lookups read.
    let group = file.metadata().row_group(0);
    let without: Vec<String> = group
        .columns()
        .iter()
        .filter(|c| c.statistics().is_none())
        .map(|c| c.column_path().string())
        .collect();
    for path in [
        "attributes.entries.value",
        "events.list.item.attributes.entries.key",
        "events.list.item.dropped_attributes_count",
        "span_id",
        "parent_span_id",
        "status_message",
    ] {
        assert!(without.iter().any(|p| p == path), "{path} in {without:?}");
    }
    // What readers prune by keeps its statistics (and so the column index).
    for path in [
        "trace_id",
        "name",
        "service",
        "start_time",
        "end_time",
        "duration_ns",
        "http_route",
    ] {
        assert!(!without.iter().any(|p| p == path), "{path} in {without:?}");
    }
    for column in group.columns() {
        let path = column.column_path();
        let unpruned = super::schema::is_unpruned_leaf(path);
        assert_eq!(column.statistics().is_none(), unpruned, "{path}");
        assert!(column.offset_index_offset().is_some(), "{path}");
    }

    let reader = StoreReader::new(store, layout);
    let read = flatten(&reader.block_spans(&meta).await.unwrap());
    assert_eq!(read.len(), 30_000);
    let sent = flatten(&batch);
    // Traces from either gather of the first row group and from the second are whole.
    for at in [100, 17_000 / 12 * 12, 25_000] {
        let trace_id = &read[at].2.trace_id;
        let found = flatten(&reader.trace("acme", trace_id).await.unwrap());
        let expected: Vec<_> = sent.iter().filter(|r| &r.2.trace_id == trace_id).collect();
        assert_eq!(found.len(), 12);
        assert_eq!(found.iter().collect::<Vec<_>>(), expected);
    }
}

#[tokio::test]
async fn blocks_roll_by_size_and_age_and_track_the_committed_sequence() {
    let mut writer = BlockWriter::new(WriterConfig {
        max_block_bytes: 10_000,
        max_block_age: Duration::from_secs(60),
        ..Default::default()
    });
    let t0 = Instant::now();
    writer
        .add(&testdata::batch(1, 2, 2, Some("a"), HOUR_START), 1, t0)
        .unwrap();
    assert!(writer.seal_due(t0, false, 0).is_empty());
    assert_eq!(writer.next_deadline(), Some(t0 + Duration::from_secs(60)));
    writer
        .add(&testdata::batch(2, 100, 5, Some("b"), HOUR_START), 2, t0)
        .unwrap();
    let sealed = writer.seal_due(t0, false, 0);
    assert_eq!(
        sealed.len(),
        1,
        "only tenant b's buffer is over 10000 bytes"
    );
    assert_eq!(sealed[0].partition.tenant, "b");
    assert_eq!(
        writer.committed_through(),
        0,
        "tenant a's seq 1 is still buffered"
    );
    let aged = writer.seal_due(t0 + Duration::from_secs(60), false, 0);
    assert_eq!(aged.len(), 1);
    writer.committed(&aged[0].id);
    assert_eq!(
        writer.committed_through(),
        1,
        "block b (seq 2) is in flight"
    );
    let b = sealed.into_iter().next().unwrap();
    let counter = writer.uncommitted_counter();
    assert!(
        counter.load(std::sync::atomic::Ordering::Relaxed) > 10_000,
        "block b is in flight, still held"
    );
    writer.restore(b, t0);
    assert_eq!(writer.committed_through(), 1);
    assert_eq!(writer.uncommitted_bytes(), writer.buffered_bytes());
    let again = writer.seal_due(t0, true, 0);
    writer.committed(&again[0].id);
    assert_eq!(writer.committed_through(), 2);
    assert!(writer.is_empty());
    assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn open_blocks_over_the_memory_budget_are_cut_largest_first() {
    let mut writer = BlockWriter::new(WriterConfig {
        max_block_bytes: 1 << 30,
        max_buffer_bytes: 20_000,
        max_block_age: Duration::from_secs(60),
        ..Default::default()
    });
    let t0 = Instant::now();
    // Three tenants, each under max_block_bytes; together over the budget.
    let sizes = [("small", 2), ("large", 60), ("middle", 30)];
    for (seq, (tenant, traces)) in sizes.iter().enumerate() {
        let batch = testdata::batch(seq as u64 + 1, *traces, 2, Some(tenant), HOUR_START);
        writer.add(&batch, seq as u64 + 1, t0).unwrap();
    }
    let before = writer.buffered_bytes();
    assert!(before > 20_000, "{before}");
    let sealed = writer.seal_due(t0, false, 0);
    let tenants: Vec<&str> = sealed.iter().map(|b| b.partition.tenant.as_str()).collect();
    assert_eq!(tenants[0], "large", "the largest buffer is cut first");
    assert!(!tenants.contains(&"small"), "{tenants:?}");
    assert!(
        writer.buffered_bytes() <= 20_000,
        "{}",
        writer.buffered_bytes()
    );
    let rest = writer.seal_due(t0, true, 0);
    assert_eq!(
        sealed
            .iter()
            .chain(&rest)
            .map(|b| b.span_count())
            .sum::<usize>(),
        sizes.iter().map(|(_, t)| t).sum::<usize>() * 2,
        "no span is lost by cutting early"
    );
}

#[tokio::test]
async fn refuses_a_batch_with_an_unsafe_tenant_without_buffering_any_of_it() {
    let mut writer = BlockWriter::new(WriterConfig::default());
    let mut batch = testdata::batch(1, 2, 2, Some("ok"), HOUR_START);
    batch.extend(testdata::batch(2, 2, 2, Some("../etc"), HOUR_START));
    assert!(writer.add(&batch, 1, Instant::now()).is_err());
    assert!(writer.is_empty());
}

#[tokio::test]
async fn retention_deletes_expired_partitions_only() {
    let (store, layout) = Location::Memory
        .open("memory://", &BTreeMap::new())
        .unwrap();
    let old = HOUR_START - 20 * 86_400 * 1_000_000_000;
    write_all(
        &store,
        &layout,
        &[
            testdata::batch(1, 5, 2, Some("acme"), old),
            testdata::batch(2, 5, 2, Some("acme"), HOUR_START),
            testdata::batch(3, 5, 2, Some("keep"), old),
        ],
    )
    .await;
    let policy = RetentionPolicy {
        default: Duration::from_secs(14 * 86_400),
        tenants: BTreeMap::from([("keep".to_string(), Duration::from_secs(30 * 86_400))]),
    };
    let now = HOUR_START / 1_000_000_000 + 3600;
    let report = retention::apply(&store, &layout, &policy, now)
        .await
        .unwrap();
    assert_eq!(report.blocks, 1);
    assert_eq!(
        report.objects, 3,
        "index, spans and traces of the expired block"
    );
    let reader = StoreReader::new(store.clone(), layout.clone());
    assert_eq!(reader.blocks("acme").await.unwrap().len(), 1);
    assert_eq!(reader.blocks("keep").await.unwrap().len(), 1);
    let again = retention::apply(&store, &layout, &policy, now)
        .await
        .unwrap();
    assert_eq!(again, Default::default());
}

#[tokio::test]
async fn compaction_merges_small_blocks_of_closed_hours_and_finishes_after_a_crash() {
    use super::compaction::compact;
    use object_store::ObjectStoreExt;

    let (store, layout) = Location::Memory
        .open("memory://", &BTreeMap::new())
        .unwrap();
    let mut sent = Vec::new();
    for seed in 0..6 {
        let batch = testdata::batch(seed, 5, 3, Some("acme"), HOUR_START);
        write_all(&store, &layout, std::slice::from_ref(&batch)).await;
        sent.extend(batch);
    }
    // An open hour (the current one at `now`) is left alone.
    let next_hour = HOUR_START + 3_600_000_000_000;
    write_all(
        &store,
        &layout,
        &[testdata::batch(10, 2, 2, Some("acme"), next_hour)],
    )
    .await;
    write_all(
        &store,
        &layout,
        &[testdata::batch(11, 2, 2, Some("acme"), next_hour)],
    )
    .await;
    let reader = StoreReader::new(store.clone(), layout.clone());
    let before = reader.blocks("acme").await.unwrap();
    assert_eq!(before.len(), 8);
    let closed_hour = HOUR_START / 3_600_000_000_000;
    let input = before
        .iter()
        .find(|m| m.partition_hour == closed_hour)
        .unwrap();
    let old_index = layout.index("acme", &input.block_id);
    let old_json = store.get(&old_index).await.unwrap().bytes().await.unwrap();

    let now = next_hour / 1_000_000_000 + 1800;
    let grace = Duration::from_secs(600);
    let report = compact(&store, &layout, &config(), grace, now)
        .await
        .unwrap();
    assert_eq!((report.written, report.deleted), (1, 6));
    let after = reader.blocks("acme").await.unwrap();
    assert_eq!(after.len(), 3, "one merged block plus the open hour's two");
    let merged = after
        .iter()
        .find(|m| m.partition_hour == closed_hour)
        .unwrap();
    assert_eq!(merged.span_count, 6 * 5 * 3);
    assert_eq!(
        flatten(&reader.block_spans(merged).await.unwrap()),
        flatten(&sent)
    );

    // A crash between writing the merged index and deleting an input: the input is hidden
    // from readers at once, and the next run deletes it.
    store.put(&old_index, old_json.into()).await.unwrap();
    assert_eq!(reader.blocks("acme").await.unwrap().len(), 3);
    assert_eq!(reader.all_blocks("acme").await.unwrap().len(), 4);
    let again = compact(&store, &layout, &config(), grace, now)
        .await
        .unwrap();
    assert_eq!((again.written, again.deleted), (0, 1));
    assert_eq!(reader.all_blocks("acme").await.unwrap().len(), 3);
}
