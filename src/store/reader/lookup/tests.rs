use std::sync::Arc;

use arrow::array::{
    Array, FixedSizeBinaryArray, ListArray, ListBuilder, RecordBatch, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowSelection, RowSelector,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::properties::{WriterProperties, WriterVersion};

use super::trace_rows;
use crate::store::object_reader::{FooterCache, Tally};
use crate::store::reader::pages::RowGroupBytes;

/// Rows as (trace id byte, name, tags), sorted by trace id: trace 2 crosses a page boundary
/// (pages hold 4 rows) and trace 5 crosses from the first row group (10 rows) into the second.
fn rows() -> Vec<(u8, String, Vec<String>)> {
    let traces = [
        1, 1, 2, 2, 2, 2, 2, 3, 4, 5, 5, 5, 6, 6, 7, 8, 8, 8, 9, 9, 9,
    ];
    traces
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let tags = (0..i % 3).map(|k| format!("tag-{i}-{k}")).collect();
            (*t, format!("span-{i}"), tags)
        })
        .collect()
}

fn id(t: u8) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[15] = t;
    id
}

fn parquet_file(compression: Compression) -> Vec<u8> {
    parquet_file_of(compression, WriterVersion::PARQUET_2_0)
}

fn parquet_file_of(compression: Compression, version: WriterVersion) -> Vec<u8> {
    let rows = rows();
    let ids = FixedSizeBinaryArray::try_from_iter(rows.iter().map(|r| id(r.0))).expect("ids");
    let names = StringArray::from_iter_values(rows.iter().map(|r| r.1.clone()));
    let mut tags = ListBuilder::new(StringBuilder::new());
    for (_, _, row_tags) in &rows {
        for tag in row_tags {
            tags.values().append_value(tag);
        }
        tags.append(true);
    }
    let tags: ListArray = tags.finish();
    let schema = Arc::new(Schema::new(vec![
        Field::new("trace_id", DataType::FixedSizeBinary(16), false),
        Field::new("name", DataType::Utf8, false),
        Field::new("tags", tags.data_type().clone(), false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(ids), Arc::new(names), Arc::new(tags)],
    )
    .expect("batch");
    let props = WriterProperties::builder()
        .set_writer_version(version)
        .set_compression(compression)
        .set_data_page_row_count_limit(4)
        .set_write_batch_size(4)
        .set_max_row_group_row_count(Some(10))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    out
}

/// The names and tags of the rows read for trace `t`.
async fn lookup(compression: Compression, t: u8, groups: &[usize]) -> Vec<(String, Vec<String>)> {
    lookup_in(parquet_file(compression), t, groups).await
}

async fn lookup_in(file: Vec<u8>, t: u8, groups: &[usize]) -> Vec<(String, Vec<String>)> {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let size = file.len() as u64;
    store
        .put(&Path::from("spans.parquet"), PutPayload::from(file))
        .await
        .expect("put");
    let footers = FooterCache::new(4);
    let tally = Arc::new(Tally::default());
    let (mut reader, metadata) = footers
        .footer(&store, "spans.parquet", size, &tally)
        .await
        .expect("footer");
    assert_eq!(metadata.metadata().num_row_groups(), 3);
    let batches = trace_rows(&mut reader, &metadata, groups, &id(t))
        .await
        .expect("rows");
    let mut out = Vec::new();
    for batch in batches {
        let names = batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("names");
        let tags = batch
            .column(2)
            .as_any()
            .downcast_ref::<ListArray>()
            .expect("tags");
        for row in 0..batch.num_rows() {
            let row_tags = tags.value(row);
            let row_tags = row_tags
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("tag");
            let row_tags = row_tags.iter().flatten().map(str::to_string).collect();
            out.push((names.value(row).to_string(), row_tags));
        }
    }
    out
}

fn expected(t: u8) -> Vec<(String, Vec<String>)> {
    rows()
        .into_iter()
        .filter(|r| r.0 == t)
        .map(|r| (r.1, r.2))
        .collect()
}

#[tokio::test]
async fn reads_exactly_the_rows_of_a_trace_that_crosses_pages() {
    for compression in [
        Compression::ZSTD(ZstdLevel::default()),
        Compression::UNCOMPRESSED,
    ] {
        let found = lookup(compression, 2, &[0]).await;
        assert_eq!(found.len(), 5);
        assert_eq!(found, expected(2), "{compression:?}");
    }
}

#[tokio::test]
async fn reads_the_rows_of_a_trace_from_version_1_pages() {
    // Version 1 data pages (what the store writes) keep the levels inside the compressed
    // data; a repeated column's page boundaries must still fall between rows.
    for t in 1..=9 {
        let file = parquet_file_of(
            Compression::ZSTD(ZstdLevel::default()),
            WriterVersion::PARQUET_1_0,
        );
        assert_eq!(
            lookup_in(file, t, &[0, 1, 2]).await,
            expected(t),
            "trace {t}"
        );
    }
}

#[tokio::test]
async fn fetches_only_the_dictionary_and_the_pages_of_the_selected_rows() {
    let file = Bytes::from(parquet_file(Compression::ZSTD(ZstdLevel::default())));
    let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
    let metadata = ArrowReaderMetadata::load(&file, options).expect("metadata");
    let parquet = metadata.metadata();
    let bytes = RowGroupBytes::new(parquet, 0);
    // Rows 4..6 of the first row group: its second page of 4 rows.
    let rows = RowSelection::from(vec![
        RowSelector::skip(4),
        RowSelector::select(2),
        RowSelector::skip(4),
    ]);
    let names = ProjectionMask::leaves(parquet.file_metadata().schema_descr(), [1]);
    let missing = bytes.missing_pages(&names, &rows);
    let pages = parquet
        .page_index_for_row_group(0)
        .page_locations(1)
        .cloned()
        .expect("offset index");
    assert_eq!(pages.len(), 3);
    let (start, len) = parquet.row_group(0).column(1).byte_range();
    let page = &pages[1];
    let page_range = page.offset as u64..(page.offset as u64 + page.compressed_page_size as u64);
    assert_eq!(
        missing,
        vec![(1, start..pages[0].offset as u64), (1, page_range)],
        "the dictionary page, then the second data page (the chunk is {start}..{})",
        start + len
    );
    // Without a selection, the whole chunk.
    assert_eq!(bytes.missing(&names), vec![(1, start..start + len)]);
}

#[tokio::test]
async fn reads_a_trace_split_across_row_groups_from_both() {
    let zstd = Compression::ZSTD(ZstdLevel::default());
    assert_eq!(lookup(zstd, 5, &[0, 1]).await, expected(5));
    // Only the groups asked for are read.
    assert_eq!(lookup(zstd, 5, &[1]).await, expected(5)[1..].to_vec());
    assert_eq!(lookup(zstd, 9, &[1, 2]).await, expected(9));
}

#[tokio::test]
async fn a_trace_absent_from_the_file_reads_no_rows() {
    let zstd = Compression::ZSTD(ZstdLevel::default());
    assert!(lookup(zstd, 0, &[0, 1, 2]).await.is_empty());
    // Within the id range of a row group, between two traces it holds.
    assert!(lookup(zstd, 4, &[1]).await.is_empty());
}

#[tokio::test]
async fn a_row_group_past_the_file_is_an_error() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let file = parquet_file(Compression::UNCOMPRESSED);
    let size = file.len() as u64;
    store
        .put(&Path::from("f"), PutPayload::from(file))
        .await
        .expect("put");
    let tally = Arc::new(Tally::default());
    let (mut reader, metadata) = FooterCache::new(1)
        .footer(&store, "f", size, &tally)
        .await
        .expect("footer");
    assert!(
        trace_rows(&mut reader, &metadata, &[7], &id(1))
            .await
            .is_err()
    );
}
