//! Query-side reads of the store: summaries, scans, trace lookups with statistics, live rows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use tokio::time::Instant;

use super::index::BlockMeta;
use super::layout::Layout;
use super::live::{merge_spans, rows_scan, rows_summaries, rows_trace};
use super::location::Location;
use super::reader::{ReadStats, StoreReader};
use super::summary::{TraceSummary, merge_by_trace};
use super::testdata::{self, flatten, i, s};
use super::writer::{BlockWriter, WriterConfig, stage_decoded, write_block};
use super::{SpanPredicate, TimeWindow};

/// 2026-11-27T16:00:00Z
const HOUR_START: u64 = 1_795_795_200_000_000_000;
const HOUR: u64 = 3_600_000_000_000;
const MS: u64 = 1_000_000;

fn config() -> WriterConfig {
    WriterConfig {
        row_group_spans: 50,
        indexed_attributes: vec!["http.route".into(), "user.id".into()],
        ..Default::default()
    }
}

fn memory() -> (Arc<dyn ObjectStore>, Layout) {
    Location::Memory
        .open("memory://", &BTreeMap::new())
        .unwrap()
}

/// Writes `batches` through one writer: one block per partition touched.
async fn write(
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
    batches: &[Vec<ResourceSpans>],
) -> Vec<BlockMeta> {
    let mut writer = BlockWriter::new(config());
    let now = Instant::now();
    for (seq, batch) in batches.iter().enumerate() {
        writer.add(batch, seq as u64 + 1, now).unwrap();
    }
    let mut metas = Vec::new();
    for block in writer.seal_due(now, true, HOUR_START / MS) {
        metas.push(
            write_block(store, layout, writer.config(), block)
                .await
                .unwrap(),
        );
    }
    metas
}

fn resource_spans(
    service: &str,
    extra: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
    spans: Vec<Span>,
) -> ResourceSpans {
    let mut attributes = vec![s("service.name", service), s("tenant.id", "acme")];
    attributes.extend(extra);
    ResourceSpans {
        resource: Some(Resource {
            attributes,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope::default()),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn span(
    trace: u8,
    id: u8,
    parent: Option<u8>,
    name: &str,
    start: u64,
    end: u64,
    code: i32,
) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        start_time_unix_nano: HOUR_START + start,
        end_time_unix_nano: HOUR_START + end,
        status: (code != 0).then(|| Status {
            code,
            message: String::new(),
        }),
        ..Default::default()
    }
}

/// Trace 0x11: an OK root in frontend, an ERROR child in payment carrying an int
/// `user.id`, an unset child. Trace 0x22: two OK children without their root, one with
/// the string `user.id` "8821", in a resource with a unique pod name.
fn handmade() -> Vec<ResourceSpans> {
    let mut root = span(0x11, 1, None, "GET /", 100 * MS, 900 * MS, 1);
    root.attributes = vec![s("http.route", "/")];
    let mut charge = span(0x11, 2, Some(1), "charge", 200 * MS, 1200 * MS, 2);
    charge.attributes = vec![i("user.id", 8821)];
    let refund = span(0x11, 3, Some(1), "refund", 300 * MS, 400 * MS, 0);
    let mut late = span(0x22, 5, Some(4), "late", 2000 * MS, 2100 * MS, 1);
    late.attributes = vec![s("user.id", "8821")];
    let later = span(0x22, 6, Some(4), "later", 2050 * MS, 2060 * MS, 0);
    vec![
        resource_spans("frontend", vec![], vec![root]),
        resource_spans("payment", vec![], vec![charge, refund]),
        resource_spans(
            "cart",
            vec![s("k8s.pod.name", "cart-x1")],
            vec![late, later],
        ),
    ]
}

fn set<const N: usize>(items: [&str; N]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn summary_columns_are_written_and_read_back() {
    let (store, layout) = memory();
    let metas = write(&store, &layout, &[handmade()]).await;
    let reader = StoreReader::new(store, layout);
    let read = reader.summaries(&metas[0], None).await.unwrap();
    assert_eq!(read.len(), 2);
    let first = &read[0];
    assert_eq!(first.trace_id, [0x11; 16]);
    assert_eq!(
        (first.root_service.as_str(), first.root_name.as_str()),
        ("frontend", "GET /")
    );
    assert!(first.has_root);
    assert_eq!(
        first.status, "error",
        "any ERROR span makes the trace an error"
    );
    assert_eq!((first.span_count, first.error_count), (3, 1));
    assert_eq!(first.duration_nanos(), 1100 * MS);
    assert_eq!(first.services, set(["frontend", "payment"]));
    assert_eq!(first.error_services, set(["payment"]));
    let operations: Vec<(&str, &str)> = first
        .operations
        .iter()
        .map(|(s, n)| (s.as_str(), n.as_str()))
        .collect();
    assert_eq!(
        operations,
        [
            ("frontend", "GET /"),
            ("payment", "charge"),
            ("payment", "refund")
        ]
    );
    assert_eq!(first.attributes["http.route"], set(["/"]));
    assert_eq!(first.attributes["user.id"], set(["8821"]));

    let second = &read[1];
    assert!(!second.has_root);
    assert_eq!(
        second.root_name, "late",
        "the earliest span stands in for the root"
    );
    assert_eq!(
        second.status, "ok",
        "no root and no error: ok because a span is ok"
    );
    assert!(second.error_services.is_empty());
}

#[test]
fn merging_two_parts_of_a_trace_takes_the_root_from_the_part_that_has_it() {
    let row = |service: &str, span: Span| (service.to_string(), span);
    let child = [row("payment", span(7, 2, Some(1), "charge", 50, 400, 2))];
    let root = [
        row("frontend", span(7, 1, None, "GET /", 100, 300, 0)),
        row("frontend", span(7, 3, Some(1), "render", 120, 500, 1)),
    ];
    let mut merged = summary_of(&child, &[]);
    assert_eq!(
        (merged.has_root, merged.root_name.as_str()),
        (false, "charge")
    );
    merged.merge(summary_of(&root, &[]));
    assert!(merged.has_root);
    assert_eq!(
        (merged.root_service.as_str(), merged.root_name.as_str()),
        ("frontend", "GET /")
    );
    assert_eq!(merged.status, "error");
    assert_eq!((merged.span_count, merged.error_count), (3, 1));
    assert_eq!(
        (merged.start_unix_nano, merged.end_unix_nano),
        (HOUR_START + 50, HOUR_START + 500)
    );
    assert_eq!(merged.services, set(["frontend", "payment"]));
    assert_eq!(merged.error_services, set(["payment"]));
    assert_eq!(merged.operations.len(), 3);
    // Without errors the root's own status wins over an OK child.
    let mut calm = summary_of(&root[1..], &[]);
    calm.merge(summary_of(&root[..1], &[]));
    assert_eq!((calm.status.as_str(), calm.has_root), ("unset", true));
    // Merging in either order gives the same summary.
    let mut other_way = summary_of(&root, &[]);
    other_way.merge(summary_of(&child, &[]));
    assert_eq!(other_way, merged);
}

#[tokio::test]
async fn a_time_window_prunes_summary_row_groups_and_keeps_exactly_the_overlapping_traces() {
    let (store, layout) = memory();
    // 400 traces starting 1ms apart: the summary table has 8 row groups of 50 traces.
    let metas = write(
        &store,
        &layout,
        &[testdata::batch(1, 400, 2, Some("acme"), HOUR_START)],
    )
    .await;
    let reader = StoreReader::new(store, layout);
    let mut full_stats = ReadStats::default();
    let all = reader
        .summaries_counted(&metas[0], None, &mut full_stats)
        .await
        .unwrap();
    assert_eq!(all.len(), 400);
    assert_eq!(full_stats.row_groups_read, 8);
    let window = TimeWindow {
        start_unix_nano: HOUR_START + 200 * MS,
        end_unix_nano: HOUR_START + 210 * MS,
    };
    let mut stats = ReadStats::default();
    let found = reader
        .summaries_counted(&metas[0], Some(window), &mut stats)
        .await
        .unwrap();
    let expected: BTreeSet<[u8; 16]> = all
        .iter()
        .filter(|t| window.overlaps(t.start_unix_nano, t.end_unix_nano))
        .map(|t| t.trace_id)
        .collect();
    let found_ids: BTreeSet<[u8; 16]> = found.iter().map(|t| t.trace_id).collect();
    assert!(!expected.is_empty());
    assert_eq!(found_ids, expected);
    assert_eq!(found.len(), expected.len());
    assert!(
        stats.row_groups_read < 8 && stats.row_groups_read >= 1,
        "{stats:?}"
    );
    assert!(
        stats.bytes_read < full_stats.bytes_read,
        "{stats:?} vs {full_stats:?}"
    );
    assert_eq!(
        stats.cache_hits, 1,
        "the footer read for the first call is reused"
    );
}

#[tokio::test]
async fn scan_finds_a_trace_by_a_non_indexed_attribute_only_inside_the_window() {
    let (store, layout) = memory();
    let mut batch = handmade();
    batch.extend(testdata::batch(2, 30, 4, Some("acme"), HOUR_START));
    let metas = write(&store, &layout, std::slice::from_ref(&batch)).await;
    let reader = StoreReader::new(store, layout);
    let meta = &metas[0];
    let user = SpanPredicate {
        key: "user.id".into(),
        value: "8821".into(),
    };
    let around = |from: u64, to: u64| TimeWindow {
        start_unix_nano: HOUR_START + from * MS,
        end_unix_nano: HOUR_START + to * MS,
    };
    let hits = reader.scan(meta, around(0, 3000), &user).await.unwrap();
    assert_eq!(
        hits,
        vec![[0x11; 16], [0x22; 16]],
        "an int and a string both match"
    );
    let hits = reader.scan(meta, around(150, 250), &user).await.unwrap();
    assert_eq!(hits, vec![[0x11; 16]], "charge starts at 200ms");
    assert!(
        reader
            .scan(meta, around(201, 1999), &user)
            .await
            .unwrap()
            .is_empty()
    );
    let pod = SpanPredicate {
        key: "k8s.pod.name".into(),
        value: "cart-x1".into(),
    };
    let hits = reader.scan(meta, around(0, 3000), &pod).await.unwrap();
    assert_eq!(hits, vec![[0x22; 16]], "resource attributes match too");
    // The live rows answer the same questions the same way.
    let rows = rows_of(&batch);
    assert_eq!(
        rows_scan(&rows, around(0, 3000), &user),
        vec![[0x11; 16], [0x22; 16]]
    );
    assert_eq!(rows_scan(&rows, around(150, 250), &user), vec![[0x11; 16]]);
    // Promoted keys are answered from the maps as well (the promoted columns are copies).
    let failed = SpanPredicate {
        key: "http.status_code".into(),
        value: "500".into(),
    };
    let stored_failed = reader.scan(meta, around(0, 3000), &failed).await.unwrap();
    assert!(!stored_failed.is_empty());
    assert_eq!(stored_failed, rows_scan(&rows, around(0, 3000), &failed));
    let live = rows_summaries(&rows, around(2000, 2000), &config().indexed_attributes);
    let stored = reader
        .summaries(meta, Some(around(2000, 2000)))
        .await
        .unwrap();
    assert_eq!(live, stored);
}

fn rows_of(batch: &[ResourceSpans]) -> Vec<super::writer::Rows> {
    let mut writer = BlockWriter::new(config());
    writer.add(batch, 1, Instant::now()).unwrap();
    writer.live_rows("acme")
}

#[tokio::test]
async fn trace_in_skips_blocks_outside_the_window_and_counts_what_it_read() {
    let (store, layout) = memory();
    let early = testdata::batch(1, 40, 4, Some("acme"), HOUR_START);
    let late = testdata::batch(2, 40, 4, Some("acme"), HOUR_START + HOUR);
    write(&store, &layout, std::slice::from_ref(&early)).await;
    write(&store, &layout, &[late]).await;
    let reader = StoreReader::new(store, layout);
    let trace_id = early[0].scope_spans[0].spans[5].trace_id.clone();
    let expected: Vec<_> = flatten(&early)
        .into_iter()
        .filter(|(_, _, s)| s.trace_id == trace_id)
        .collect();
    let first_hour = TimeWindow {
        start_unix_nano: HOUR_START,
        end_unix_nano: HOUR_START + HOUR - 1,
    };
    let mut cold = ReadStats::default();
    let found = reader
        .trace_in("acme", &trace_id, Some(first_hour), &mut cold)
        .await
        .unwrap();
    assert_eq!(flatten(&found), expected);
    assert_eq!(
        cold.blocks_inspected, 1,
        "the later hour's block is skipped"
    );
    assert_eq!(cold.bloom_false_positives, 0);
    assert!(cold.row_groups_read >= 1 && cold.bytes_read > 0);
    assert_eq!(cold.cache_hits, 0);
    let mut warm = ReadStats::default();
    let again = reader
        .trace_in("acme", &trace_id, Some(first_hour), &mut warm)
        .await
        .unwrap();
    assert_eq!(flatten(&again), expected);
    assert_eq!(warm.cache_hits, 3, "two index objects and one footer");
    assert!(warm.bytes_read < cold.bytes_read, "{warm:?} vs {cold:?}");
    assert!(reader.cache_hits() >= 3);
    let second_hour = TimeWindow {
        start_unix_nano: HOUR_START + 2 * HOUR,
        end_unix_nano: HOUR_START + 3 * HOUR,
    };
    let mut none = ReadStats::default();
    assert!(
        reader
            .trace_in("acme", &trace_id, Some(second_hour), &mut none)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(none.blocks_inspected, 0);
}

#[tokio::test]
async fn a_span_in_two_blocks_is_returned_once() {
    let (store, layout) = memory();
    let batch = testdata::batch(3, 20, 5, Some("acme"), HOUR_START);
    write(&store, &layout, std::slice::from_ref(&batch)).await;
    write(&store, &layout, std::slice::from_ref(&batch)).await;
    let reader = StoreReader::new(store, layout);
    let trace_id = batch[1].scope_spans[0].spans[2].trace_id.clone();
    let mut stats = ReadStats::default();
    let found = reader
        .trace_in("acme", &trace_id, None, &mut stats)
        .await
        .unwrap();
    assert_eq!(stats.blocks_inspected, 2);
    let spans = flatten(&found);
    assert_eq!(spans.len(), 5);
    assert_eq!(
        spans,
        flatten(&reader.trace("acme", &trace_id).await.unwrap())
    );
    // The live copy of the same spans merges away too.
    let live = rows_trace(&rows_of(&batch), &trace_id);
    assert_eq!(flatten(&merge_spans(vec![live, found])), spans);
}

#[tokio::test]
async fn a_bloom_filter_that_says_maybe_for_an_absent_trace_is_counted() {
    let (store, layout) = memory();
    let metas = write(
        &store,
        &layout,
        &[testdata::batch(4, 100, 3, Some("acme"), HOUR_START)],
    )
    .await;
    let mut meta = metas[0].clone();
    // An id inside the first row group's range that no span has.
    let mut id = unhex(&meta.row_groups[0].min_trace_id);
    id[15] = id[15].wrapping_add(1);
    assert!(meta.row_groups_for(&id).contains(&0));
    // A saturated filter answers maybe for every id.
    Arc::make_mut(&mut meta.bloom.words)
        .iter_mut()
        .for_each(|w| *w = u64::MAX);
    let path = layout.index("acme", &meta.block_id);
    store
        .put(&path, serde_json::to_vec(&meta).unwrap().into())
        .await
        .unwrap();
    let reader = StoreReader::new(store, layout);
    let mut stats = ReadStats::default();
    let found = reader
        .trace_in("acme", &id, None, &mut stats)
        .await
        .unwrap();
    assert!(found.is_empty());
    assert_eq!(stats.bloom_false_positives, 1);
    assert!(stats.row_groups_read >= 1);
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn blocks_in_follows_new_and_deleted_blocks_through_the_cache() {
    let (store, layout) = memory();
    let first = write(
        &store,
        &layout,
        &[testdata::batch(5, 5, 2, Some("acme"), HOUR_START)],
    )
    .await;
    let reader = StoreReader::new(store.clone(), layout.clone());
    assert_eq!(reader.blocks_in("acme", None).await.unwrap().len(), 1);
    write(
        &store,
        &layout,
        &[testdata::batch(6, 5, 2, Some("acme"), HOUR_START + HOUR)],
    )
    .await;
    let hits = reader.cache_hits();
    assert_eq!(reader.blocks_in("acme", None).await.unwrap().len(), 2);
    assert_eq!(
        reader.cache_hits(),
        hits + 1,
        "the first index is not read again"
    );
    store
        .delete(&layout.index("acme", &first[0].block_id))
        .await
        .unwrap();
    let left = reader.blocks_in("acme", None).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_ne!(left[0].block_id, first[0].block_id);
    let window = TimeWindow {
        start_unix_nano: HOUR_START,
        end_unix_nano: HOUR_START + HOUR - 1,
    };
    assert!(
        reader
            .blocks_in("acme", Some(window))
            .await
            .unwrap()
            .is_empty()
    );
}

#[test]
fn summaries_of_live_rows_agree_with_summarise() {
    let batch = handmade();
    // Each resource group arrives in its own batch, so traces are split across chunks.
    let mut writer = BlockWriter::new(config());
    for (seq, rs) in batch.iter().enumerate() {
        writer
            .add(std::slice::from_ref(rs), seq as u64 + 1, Instant::now())
            .unwrap();
    }
    let rows = writer.live_rows("acme");
    assert_eq!(rows.len(), batch.len());
    let window = TimeWindow {
        start_unix_nano: 0,
        end_unix_nano: u64::MAX,
    };
    let live = rows_summaries(&rows, window, &config().indexed_attributes);
    assert_eq!(live.len(), 2);
    // The whole batch staged at once: each trace's spans summarised together.
    let direct = stage_decoded(&batch, 0)
        .unwrap()
        .iter()
        .flat_map(|staged| {
            staged
                .chunk
                .summaries(&config().indexed_attributes)
                .unwrap()
        })
        .collect::<Vec<_>>();
    let direct = direct.into_iter().find(|t| t.trace_id == [0x11; 16]);
    assert_eq!(Some(&live[0]), direct.as_ref());
}

/// The summary the store makes of one trace's spans, given as (service, span) rows.
fn summary_of(rows: &[(String, Span)], indexed: &[String]) -> TraceSummary {
    let batch: Vec<ResourceSpans> = rows
        .iter()
        .map(|(service, span)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![s("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![span.clone()],
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    let staged = stage_decoded(&batch, 0).unwrap();
    let parts: Vec<TraceSummary> = staged
        .iter()
        .flat_map(|s| s.chunk.summaries(indexed).unwrap())
        .collect();
    let mut traces = merge_by_trace(parts);
    assert_eq!(traces.len(), 1, "one trace");
    traces.remove(0)
}
