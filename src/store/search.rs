//! Search reads: trace summaries of a block in a time window, and attribute scans of the
//! span table with the window and the predicate pushed into the Parquet reader.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, BooleanArray, FixedSizeBinaryArray, MapArray, RecordBatch,
    TimestampNanosecondArray,
};
use arrow::error::ArrowError;
use futures::TryStreamExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowPredicate, ArrowPredicateFn, RowFilter};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

use super::index::BlockMeta;
use super::object_reader::Tally;
use super::reader::{ReadStats, StoreReader, root_index};
use super::summary::{TraceSummary, fixed_id};
use super::summary_table::batch_to_summaries;
use super::{SpanPredicate, StoreError, TimeWindow};

impl StoreReader {
    /// The trace summaries of one block; with a window, only traces whose [start, end]
    /// overlaps it, reading only row groups whose time statistics allow one.
    pub async fn summaries(
        &self,
        meta: &BlockMeta,
        window: Option<TimeWindow>,
    ) -> Result<Vec<TraceSummary>, StoreError> {
        self.summaries_counted(meta, window, &mut ReadStats::default())
            .await
    }

    /// `summaries`, adding what the read did to `stats`.
    pub async fn summaries_counted(
        &self,
        meta: &BlockMeta,
        window: Option<TimeWindow>,
        stats: &mut ReadStats,
    ) -> Result<Vec<TraceSummary>, StoreError> {
        // Without a window every part is read: the window that holds every time.
        let window = window.unwrap_or(TimeWindow {
            start_unix_nano: 0,
            end_unix_nano: i64::MAX as u64,
        });
        let batches = self.summary_rows(meta, window, None, None, stats).await?;
        let mut out = Vec::new();
        for batch in batches {
            out.extend(batch_to_summaries(&batch)?);
        }
        Ok(out)
    }

    fn finish(&self, stats: &mut ReadStats, tally: &Tally) {
        stats.bytes_read += tally.bytes();
        stats.cache_hits += tally.hits();
        self.fold(tally);
    }

    /// The distinct trace ids of the block's spans that start in `window` and whose own or
    /// resource attributes match `predicate`. The attribute maps hold every attribute
    /// (promoted columns are copies), so they alone answer any key.
    pub async fn scan(
        &self,
        meta: &BlockMeta,
        window: TimeWindow,
        predicate: &SpanPredicate,
    ) -> Result<Vec<[u8; 16]>, StoreError> {
        self.scan_counted(meta, window, predicate, &mut ReadStats::default())
            .await
    }

    /// `scan`, adding what the read did to `stats`.
    pub async fn scan_counted(
        &self,
        meta: &BlockMeta,
        window: TimeWindow,
        predicate: &SpanPredicate,
        stats: &mut ReadStats,
    ) -> Result<Vec<[u8; 16]>, StoreError> {
        let tally = Arc::new(Tally::default());
        let batches = self.read_scan(meta, window, predicate, stats, &tally).await;
        self.finish(stats, &tally);
        let mut ids = BTreeSet::new();
        for batch in batches? {
            let column = batch.column_by_name("trace_id");
            let Some(array) =
                column.and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>())
            else {
                return Err(StoreError::Column("trace_id".into()));
            };
            ids.extend(array.iter().flatten().map(fixed_id));
        }
        Ok(ids.into_iter().collect())
    }

    async fn read_scan(
        &self,
        meta: &BlockMeta,
        window: TimeWindow,
        predicate: &SpanPredicate,
        stats: &mut ReadStats,
        tally: &Arc<Tally>,
    ) -> Result<Vec<RecordBatch>, StoreError> {
        stats.blocks_inspected += 1;
        let builder = self.open(&meta.spans_path, meta.spans_bytes, tally).await?;
        let groups = prune(builder.metadata(), "start_time", "start_time", window);
        stats.row_groups_read += groups.len() as u64;
        let schema = builder.parquet_schema();
        let start = ProjectionMask::roots(schema, [root_index(schema, "start_time")?]);
        let maps = ["attributes", "resource_attributes"];
        let maps = ProjectionMask::roots(
            schema,
            [root_index(schema, maps[0])?, root_index(schema, maps[1])?],
        );
        let output = ProjectionMask::roots(schema, [root_index(schema, "trace_id")?]);
        // Start times first: the attribute maps are decoded only for rows in the window.
        let in_window = ArrowPredicateFn::new(start, move |batch: RecordBatch| {
            let start = times_of(&batch, "start_time")?;
            Ok(start
                .iter()
                .map(|s| Some(window.contains(s? as u64)))
                .collect::<BooleanArray>())
        });
        let (key, value) = (predicate.key.clone(), predicate.value.clone());
        let matches = ArrowPredicateFn::new(maps, move |batch: RecordBatch| {
            let own = map_matches(map_of(&batch, "attributes")?, &key, &value);
            let resource = map_matches(map_of(&batch, "resource_attributes")?, &key, &value);
            arrow::compute::or(&own, &resource)
        });
        let filters: Vec<Box<dyn ArrowPredicate>> = vec![Box::new(in_window), Box::new(matches)];
        let stream = builder
            .with_row_groups(groups)
            .with_projection(output)
            .with_row_filter(RowFilter::new(filters))
            .build()?;
        Ok(stream.try_collect().await?)
    }
}

fn times_of<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a TimestampNanosecondArray, ArrowError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref())
        .ok_or_else(|| ArrowError::SchemaError(format!("column {name} missing")))
}

fn map_of<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a MapArray, ArrowError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref())
        .ok_or_else(|| ArrowError::SchemaError(format!("column {name} missing")))
}

/// Per row: whether the map holds `key` with the text `value`.
pub(super) fn map_matches(map: &MapArray, key: &str, value: &str) -> BooleanArray {
    let keys = map.keys().as_string::<i32>();
    let values = map.values().as_string::<i32>();
    let offsets = map.value_offsets();
    (0..map.len())
        .map(|row| {
            let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
            Some((from..to).any(|i| keys.value(i) == key && values.value(i) == value))
        })
        .collect()
}

/// Row groups whose statistics allow a row with `min(low) <= window.end` and
/// `max(high) >= window.start`; a group without statistics is kept.
pub(super) fn prune(
    metadata: &ParquetMetaData,
    low: &str,
    high: &str,
    window: TimeWindow,
) -> Vec<usize> {
    let columns = metadata.file_metadata().schema_descr().columns();
    let leaf = |name: &str| columns.iter().position(|c| c.path().string() == name);
    let (low, high) = (leaf(low), leaf(high));
    let mut out = Vec::new();
    for (i, group) in metadata.row_groups().iter().enumerate() {
        let min = low.and_then(|c| int64_stat(group.column(c).statistics(), true));
        let max = high.and_then(|c| int64_stat(group.column(c).statistics(), false));
        let too_late = min.is_some_and(|m| m > window.end_unix_nano as i64);
        let too_early = max.is_some_and(|m| m < window.start_unix_nano as i64);
        if !too_late && !too_early {
            out.push(i);
        }
    }
    out
}

fn int64_stat(stats: Option<&Statistics>, min: bool) -> Option<i64> {
    match stats? {
        Statistics::Int64(s) if min => s.min_opt().copied(),
        Statistics::Int64(s) => s.max_opt().copied(),
        _ => None,
    }
}
