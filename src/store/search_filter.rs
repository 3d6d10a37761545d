//! Selective reads of the trace summary table: only the rows (or only the column) a search
//! needs, with the test pushed into the Parquet reader so other columns are decoded for
//! matching rows only.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, BooleanArray, FixedSizeBinaryArray, ListArray, MapArray, RecordBatch,
    StringArray, StructArray, TimestampNanosecondArray, UInt32Array,
};
use arrow::error::ArrowError;
use parquet::arrow::ProjectionMask;

use super::index::BlockMeta;
use super::object_reader::Tally;
use super::reader::lookup::{RowTest, rows_where};
use super::reader::{ReadStats, StoreReader, root_index};
use super::search::prune;
use super::summary::{TraceSummary, fixed_id};
use super::summary_table::batch_to_summaries;
use super::{StoreError, TimeWindow};

/// A test one row of the summary table (one block's part of a trace) answers alone.
#[derive(Debug, Clone)]
pub enum PartFilter {
    /// Some span of the part failed.
    Error,
    /// Some span of the part belongs to this service.
    Service(String),
    /// The part's root (or earliest) span is of this service.
    RootService(String),
    /// The part's root (or earliest) span has this name.
    RootName(String),
    /// The part belongs to one of these traces.
    Ids(Arc<HashSet<[u8; 16]>>),
}

impl PartFilter {
    fn column(&self) -> &'static str {
        match self {
            PartFilter::Error => "error_count",
            PartFilter::Service(_) => "services",
            PartFilter::RootService(_) => "root_service",
            PartFilter::RootName(_) => "root_name",
            PartFilter::Ids(_) => "trace_id",
        }
    }

    /// The same test on a summary already in memory (the live buffers).
    pub fn matches(&self, t: &TraceSummary) -> bool {
        match self {
            PartFilter::Error => t.error_count > 0,
            PartFilter::Service(s) => t.services.contains(s),
            PartFilter::RootService(s) => &t.root_service == s,
            PartFilter::RootName(s) => &t.root_name == s,
            PartFilter::Ids(ids) => ids.contains(&t.trace_id),
        }
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray, ArrowError> {
        let column = batch
            .column_by_name(self.column())
            .ok_or_else(|| ArrowError::SchemaError(format!("column {} missing", self.column())))?;
        let wrong = || {
            ArrowError::SchemaError(format!(
                "column {} is {}, not what the summary table holds",
                self.column(),
                column.data_type()
            ))
        };
        Ok(match self {
            PartFilter::Error => {
                let counts = column
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .ok_or_else(wrong)?;
                counts.iter().map(|c| Some(c.unwrap_or(0) > 0)).collect()
            }
            PartFilter::Service(s) => {
                let lists = column
                    .as_any()
                    .downcast_ref::<ListArray>()
                    .ok_or_else(wrong)?;
                list_contains(lists, s).ok_or_else(wrong)?
            }
            PartFilter::RootService(s) | PartFilter::RootName(s) => {
                let strings = column
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(wrong)?;
                strings
                    .iter()
                    .map(|v| Some(v == Some(s.as_str())))
                    .collect()
            }
            PartFilter::Ids(ids) => {
                let array = column
                    .as_any()
                    .downcast_ref::<FixedSizeBinaryArray>()
                    .ok_or_else(wrong)?;
                array
                    .iter()
                    .map(|id| Some(id.is_some_and(|id| ids.contains(&fixed_id(id)))))
                    .collect()
            }
        })
    }
}

/// Per row: whether a `List<Utf8>` holds `wanted`.
fn list_contains(lists: &ListArray, wanted: &str) -> Option<BooleanArray> {
    let values = lists.values().as_any().downcast_ref::<StringArray>()?;
    let offsets = lists.value_offsets();
    Some(
        (0..lists.len())
            .map(|row| {
                let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
                Some((from..to).any(|i| values.value(i) == wanted))
            })
            .collect(),
    )
}

/// Which values `column_values` collects.
#[derive(Debug, Clone)]
pub enum ValueColumn {
    Services,
    Status,
    /// Span names, of one service or of all.
    Operations(Option<String>),
    /// Values of one indexed attribute.
    Attribute(String),
}

impl ValueColumn {
    fn column(&self) -> &'static str {
        match self {
            ValueColumn::Services => "services",
            ValueColumn::Status => "status_code",
            ValueColumn::Operations(_) => "operations",
            ValueColumn::Attribute(_) => "attributes",
        }
    }
}

impl StoreReader {
    /// Summaries of the block's parts that overlap `window` and pass `filter`.
    pub async fn summaries_where(
        &self,
        meta: &BlockMeta,
        window: TimeWindow,
        filter: &PartFilter,
        stats: &mut ReadStats,
    ) -> Result<Vec<TraceSummary>, StoreError> {
        let batches = self.read_where(meta, window, filter, stats).await?;
        let mut out = Vec::new();
        for batch in batches {
            out.extend(batch_to_summaries(&batch)?);
        }
        Ok(out)
    }

    /// For each of `tests`, the trace ids of the block's parts in `window` that pass it; one
    /// read decodes the trace id and the tested columns of the rows passing any test.
    pub async fn part_ids_each(
        &self,
        meta: &BlockMeta,
        window: TimeWindow,
        tests: &[PartFilter],
        stats: &mut ReadStats,
    ) -> Result<Vec<Vec<[u8; 16]>>, StoreError> {
        let columns: Vec<&str> = tests.iter().map(PartFilter::column).collect();
        let any = |batch: &RecordBatch| -> Result<BooleanArray, StoreError> {
            let mut passes = BooleanArray::from(vec![false; batch.num_rows()]);
            for test in tests {
                passes = arrow::compute::or(&passes, &test.evaluate(batch)?)?;
            }
            Ok(passes)
        };
        let mut output = columns.clone();
        output.push("trace_id");
        let batches = self
            .summary_rows(meta, window, Some((&columns, &any)), Some(&output), stats)
            .await?;
        let mut out = vec![Vec::new(); tests.len()];
        for batch in batches {
            let ids = batch
                .column_by_name("trace_id")
                .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>())
                .ok_or_else(|| StoreError::Column("trace_id".into()))?;
            for (test, found) in tests.iter().zip(out.iter_mut()) {
                let passes = test.evaluate(&batch)?;
                for row in 0..batch.num_rows() {
                    if passes.value(row) {
                        found.push(fixed_id(ids.value(row)));
                    }
                }
            }
        }
        Ok(out)
    }

    async fn read_where(
        &self,
        meta: &BlockMeta,
        window: TimeWindow,
        filter: &PartFilter,
        stats: &mut ReadStats,
    ) -> Result<Vec<RecordBatch>, StoreError> {
        let test = |batch: &RecordBatch| Ok(filter.evaluate(batch)?);
        self.summary_rows(meta, window, Some((&[filter.column()], &test)), None, stats)
            .await
    }

    /// The distinct values of one summary column over the block's parts in `window`,
    /// decoding that column alone.
    pub async fn column_values(
        &self,
        meta: &BlockMeta,
        window: TimeWindow,
        column: &ValueColumn,
        stats: &mut ReadStats,
    ) -> Result<BTreeSet<String>, StoreError> {
        let batches = self
            .summary_rows(meta, window, None, Some(&[column.column()]), stats)
            .await?;
        let mut values = BTreeSet::new();
        for batch in batches {
            collect_values(batch.column(0).as_ref(), column, &mut values)
                .ok_or_else(|| StoreError::Column(column.column().to_string()))?;
        }
        Ok(values)
    }

    /// Rows of a block's summary table that overlap `window` and pass `test` (which sees
    /// its named columns), with the `output` columns (all without a list). A column this
    /// block's format version lacks reads as no rows.
    pub(super) async fn summary_rows(
        &self,
        meta: &BlockMeta,
        window: TimeWindow,
        test: Option<(&[&str], RowTest<'_>)>,
        output: Option<&[&str]>,
        stats: &mut ReadStats,
    ) -> Result<Vec<RecordBatch>, StoreError> {
        stats.blocks_inspected += 1;
        let tally = Arc::new(Tally::default());
        let read = async {
            let (mut reader, metadata) = self
                .footer(&meta.traces_path, meta.traces_bytes, &tally)
                .await?;
            let schema = metadata.metadata().file_metadata().schema_descr();
            let groups = prune(metadata.metadata(), "start_time", "end_time", window);
            stats.row_groups_read += groups.len() as u64;
            let inside = window.start_unix_nano <= meta.min_start_unix_nano
                && meta.max_end_unix_nano <= window.end_unix_nano;
            let mut tested: Vec<&str> = test
                .map(|(columns, _)| columns.to_vec())
                .unwrap_or_default();
            if !inside {
                tested.extend(["start_time", "end_time"]);
            }
            let mask = |names: &[&str]| -> Result<Option<ProjectionMask>, StoreError> {
                let mut roots = Vec::new();
                for name in names {
                    match root_index(schema, name) {
                        Ok(i) => roots.push(i),
                        Err(_) => return Ok(None),
                    }
                }
                Ok(Some(ProjectionMask::roots(schema, roots)))
            };
            let output = match output {
                Some(names) => match mask(names)? {
                    Some(m) => m,
                    None => return Ok(Vec::new()),
                },
                None => ProjectionMask::all(),
            };
            let combined = |batch: &RecordBatch| -> Result<BooleanArray, StoreError> {
                let mut passes = match test {
                    Some((_, test)) => test(batch)?,
                    None => BooleanArray::from(vec![true; batch.num_rows()]),
                };
                if !inside {
                    passes = arrow::compute::and(&passes, &overlapping(batch, window)?)?;
                }
                Ok(passes)
            };
            let row_test = if tested.is_empty() {
                None
            } else {
                match mask(&tested)? {
                    Some(m) => Some((m, &combined as RowTest<'_>)),
                    None => return Ok(Vec::new()),
                }
            };
            rows_where(&mut reader, &metadata, &groups, row_test, output).await
        }
        .await;
        stats.bytes_read += tally.bytes();
        stats.cache_hits += tally.hits();
        self.fold(&tally);
        read
    }
}

/// Per row: whether the part's [start, end] overlaps `window`.
fn overlapping(batch: &RecordBatch, window: TimeWindow) -> Result<BooleanArray, StoreError> {
    let times = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
            .ok_or_else(|| StoreError::Column(name.to_string()))
    };
    let (start, end) = (times("start_time")?, times("end_time")?);
    Ok(start
        .iter()
        .zip(end.iter())
        .map(|(s, e)| Some(window.overlaps(s.unwrap_or(0) as u64, e.unwrap_or(0) as u64)))
        .collect())
}

/// The child indexes the rows of a list array cover (its values may hold more).
fn entries(lists: &ListArray) -> std::ops::Range<usize> {
    let offsets = lists.value_offsets();
    match (offsets.first(), offsets.last()) {
        (Some(&first), Some(&last)) => first as usize..last as usize,
        _ => 0..0,
    }
}

fn collect_values(
    array: &dyn Array,
    column: &ValueColumn,
    out: &mut BTreeSet<String>,
) -> Option<()> {
    match column {
        ValueColumn::Status => {
            let strings = array.as_any().downcast_ref::<StringArray>()?;
            out.extend(strings.iter().flatten().map(str::to_string));
        }
        ValueColumn::Services => {
            let lists = array.as_any().downcast_ref::<ListArray>()?;
            let strings = lists.values().as_any().downcast_ref::<StringArray>()?;
            out.extend(entries(lists).map(|i| strings.value(i).to_string()));
        }
        ValueColumn::Operations(service) => {
            let lists = array.as_any().downcast_ref::<ListArray>()?;
            let pairs = lists.values().as_any().downcast_ref::<StructArray>()?;
            let services = pairs
                .column_by_name("service")?
                .as_any()
                .downcast_ref::<StringArray>()?;
            let names = pairs
                .column_by_name("name")?
                .as_any()
                .downcast_ref::<StringArray>()?;
            for i in entries(lists) {
                if service.as_deref().is_none_or(|s| services.value(i) == s) {
                    out.insert(names.value(i).to_string());
                }
            }
        }
        ValueColumn::Attribute(key) => {
            let map = array.as_any().downcast_ref::<MapArray>()?;
            let keys = map.keys().as_string::<i32>();
            let lists = map.values().as_any().downcast_ref::<ListArray>()?;
            let strings = lists.values().as_any().downcast_ref::<StringArray>()?;
            let offsets = lists.value_offsets();
            for i in 0..keys.len() {
                if keys.value(i) == key {
                    let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
                    out.extend((from..to).map(|j| strings.value(j).to_string()));
                }
            }
        }
    }
    Some(())
}
