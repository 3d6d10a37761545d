//! The rows of one trace in one span file: per candidate row group, the trace id column is
//! fetched and decoded first, and of the other columns only the pages holding the trace's
//! rows are fetched and decoded, and only for the row groups that hold it.

use std::ops::Range;

use arrow::array::{BooleanArray, FixedSizeBinaryArray, RecordBatch};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReader, RowSelection};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::{FieldLevels, parquet_to_arrow_field_levels};

use super::pages::RowGroupBytes;
use super::root_index;
use crate::store::StoreError;
use crate::store::object_reader::ObjectReader;

/// Rows decoded per batch once the trace's rows are known (a trace is rarely larger).
const BATCH_ROWS: usize = 8192;

/// The rows of `trace_id` in row groups `groups` of the file `reader` reads.
pub(super) async fn trace_rows(
    reader: &mut ObjectReader,
    metadata: &ArrowReaderMetadata,
    groups: &[usize],
    trace_id: &[u8],
) -> Result<Vec<RecordBatch>, StoreError> {
    let parquet = metadata.metadata();
    let schema = parquet.file_metadata().schema_descr();
    let fields = metadata.schema().fields();
    let id_mask = ProjectionMask::roots(schema, [root_index(schema, "trace_id")?]);
    let id_levels = parquet_to_arrow_field_levels(schema, id_mask.clone(), Some(fields))?;
    let all_levels = parquet_to_arrow_field_levels(schema, ProjectionMask::all(), Some(fields))?;
    let mut out = Vec::new();
    for &group in groups {
        if group >= parquet.num_row_groups() {
            return Err(StoreError::Column(format!("row group {group}")));
        }
        let mut bytes = RowGroupBytes::new(parquet, group);
        let missing = bytes.missing(&id_mask);
        fetch(reader, &mut bytes, missing).await?;
        let Some(selection) = matching_rows(&bytes, &id_levels, trace_id)? else {
            continue;
        };
        let missing = bytes.missing_pages(&ProjectionMask::all(), &selection);
        fetch(reader, &mut bytes, missing).await?;
        let rows = ParquetRecordBatchReader::try_new_with_row_groups(
            &all_levels,
            &bytes,
            BATCH_ROWS,
            Some(selection),
        )?;
        for batch in rows {
            out.push(batch?);
        }
    }
    Ok(out)
}

/// A test of the rows of one row group, seeing the columns it asked for.
pub(crate) type RowTest<'a> = &'a (dyn Fn(&RecordBatch) -> Result<BooleanArray, StoreError> + Sync);

/// The `output` columns of the rows of row groups `groups` that pass `test` (all rows
/// without one): per row group the tested columns are fetched and decoded first, the rest
/// only when some row passes, and only at those rows. Pages are decompressed with one zstd
/// context per thread rather than one per column chunk.
pub(crate) async fn rows_where(
    reader: &mut ObjectReader,
    metadata: &ArrowReaderMetadata,
    groups: &[usize],
    test: Option<(ProjectionMask, RowTest<'_>)>,
    output: ProjectionMask,
) -> Result<Vec<RecordBatch>, StoreError> {
    let parquet = metadata.metadata();
    let schema = parquet.file_metadata().schema_descr();
    let fields = metadata.schema().fields();
    let out_levels = parquet_to_arrow_field_levels(schema, output.clone(), Some(fields))?;
    let test = match test {
        Some((mask, test)) => {
            let levels = parquet_to_arrow_field_levels(schema, mask.clone(), Some(fields))?;
            Some((mask, levels, test))
        }
        None => None,
    };
    let mut out = Vec::new();
    for &group in groups {
        if group >= parquet.num_row_groups() {
            return Err(StoreError::Column(format!("row group {group}")));
        }
        let mut bytes = RowGroupBytes::new(parquet, group);
        let selection = match &test {
            Some((mask, levels, test)) => {
                let missing = bytes.missing(mask);
                fetch(reader, &mut bytes, missing).await?;
                match passing_rows(&bytes, levels, test)? {
                    Some(selection) => Some(selection),
                    None => continue,
                }
            }
            None => None,
        };
        let missing = bytes.missing(&output);
        fetch(reader, &mut bytes, missing).await?;
        let rows = ParquetRecordBatchReader::try_new_with_row_groups(
            &out_levels,
            &bytes,
            BATCH_ROWS,
            selection,
        )?;
        for batch in rows {
            out.push(batch?);
        }
    }
    Ok(out)
}

/// The rows of the row group passing `test`; `None` when none does.
fn passing_rows(
    bytes: &RowGroupBytes<'_>,
    levels: &FieldLevels,
    test: RowTest<'_>,
) -> Result<Option<RowSelection>, StoreError> {
    use parquet::arrow::arrow_reader::RowGroups;
    let rows = bytes.num_rows().max(1);
    let tested = ParquetRecordBatchReader::try_new_with_row_groups(levels, bytes, rows, None)?;
    let mut masks = Vec::new();
    let mut found = false;
    for batch in tested {
        let mask = test(&batch?)?;
        found |= mask.true_count() > 0;
        masks.push(mask);
    }
    Ok(found.then(|| RowSelection::from_filters(&masks)))
}

/// Fetches the `missing` byte ranges of leaf columns in one call, so the store can merge
/// neighbouring ranges.
async fn fetch(
    reader: &mut ObjectReader,
    bytes: &mut RowGroupBytes<'_>,
    missing: Vec<(usize, Range<u64>)>,
) -> Result<(), StoreError> {
    if missing.is_empty() {
        return Ok(());
    }
    let ranges = missing.iter().map(|(_, range)| range.clone()).collect();
    let data = reader.get_byte_ranges(ranges).await?;
    for ((column, range), data) in missing.into_iter().zip(data) {
        bytes.insert(column, range.start, data);
    }
    Ok(())
}

/// The rows of the row group whose trace id is `trace_id`; `None` when there are none.
pub(super) fn matching_rows(
    bytes: &RowGroupBytes<'_>,
    id_levels: &FieldLevels,
    trace_id: &[u8],
) -> Result<Option<RowSelection>, StoreError> {
    use parquet::arrow::arrow_reader::RowGroups;
    let rows = bytes.num_rows().max(1);
    let ids = ParquetRecordBatchReader::try_new_with_row_groups(id_levels, bytes, rows, None)?;
    let mut masks = Vec::new();
    let mut found = false;
    for batch in ids {
        let batch = batch?;
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<FixedSizeBinaryArray>()
            .ok_or_else(|| StoreError::Column("trace_id".into()))?;
        let mask: BooleanArray = column.iter().map(|id| Some(id == Some(trace_id))).collect();
        found |= mask.true_count() > 0;
        masks.push(mask);
    }
    Ok(found.then(|| RowSelection::from_filters(&masks)))
}

#[cfg(test)]
mod tests;
