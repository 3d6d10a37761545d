//! One row group's column chunks decoded from memory with one decompressor per thread.
//!
//! Parquet's own page reader makes a fresh codec for every column chunk it opens, and a
//! zstd codec probes the CPU (an instruction that traps under virtualisation) on creation:
//! on a trace lookup, which touches every column of a dozen row groups to decode a few
//! rows, that cost more than the decompression itself. Here the page reader is told the
//! chunk is uncompressed and the pages are decompressed with a codec kept per thread.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{RowGroups, RowSelection};
use parquet::basic::Compression;
use parquet::column::page::{Page, PageIterator, PageMetadata, PageReader};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData, RowGroupMetaData};
use parquet::file::page_index::offset_index::PageLocation;
use parquet::file::reader::{ChunkReader, Length, SerializedPageReader};

/// Larger decompressed sizes in a frame header are taken for corruption.
const MAX_PAGE_BYTES: u64 = 1 << 30;

thread_local! {
    /// Made on a thread's first page, then reused.
    static ZSTD: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Column chunks of one row group held in memory, by leaf column index: whole, or only
/// the pages some rows need (with the chunk's dictionary page).
pub(crate) struct RowGroupBytes<'a> {
    metadata: &'a ParquetMetaData,
    row_group: usize,
    chunks: Vec<Vec<Piece>>,
}

impl<'a> RowGroupBytes<'a> {
    pub fn new(metadata: &'a ParquetMetaData, row_group: usize) -> Self {
        let columns = metadata.file_metadata().schema_descr().num_columns();
        Self {
            metadata,
            row_group,
            chunks: vec![Vec::new(); columns],
        }
    }

    fn meta(&self) -> &RowGroupMetaData {
        self.metadata.row_group(self.row_group)
    }

    /// Where the pages of leaf column `column` are, when the file has an offset index and
    /// it was loaded.
    fn page_locations(&self, column: usize) -> Option<Vec<PageLocation>> {
        self.metadata
            .page_index_for_row_group(self.row_group)
            .page_locations(column)
            .filter(|pages| !pages.is_empty())
            .cloned()
    }

    /// The leaf columns of `mask` not held yet, with their byte ranges in the file.
    pub fn missing(&self, mask: &ProjectionMask) -> Vec<(usize, Range<u64>)> {
        let mut out = Vec::new();
        for (i, column) in self.meta().columns().iter().enumerate() {
            if self.chunks[i].is_empty() && mask.leaf_included(i) {
                let (start, len) = column.byte_range();
                out.push((i, start..start + len));
            }
        }
        out
    }

    /// Like [`missing`](Self::missing), but of a column with an offset index only the
    /// dictionary page and the data pages holding a row of `rows`: a trace's few rows in
    /// a large row group are decoded from a page or two per column, not the whole chunk.
    /// The rows must then be read with `rows` as their selection.
    pub fn missing_pages(
        &self,
        mask: &ProjectionMask,
        rows: &RowSelection,
    ) -> Vec<(usize, Range<u64>)> {
        let mut out = Vec::new();
        for (i, column) in self.meta().columns().iter().enumerate() {
            if !self.chunks[i].is_empty() || !mask.leaf_included(i) {
                continue;
            }
            let (start, len) = column.byte_range();
            let Some(pages) = self.page_locations(i) else {
                out.push((i, start..start + len));
                continue;
            };
            let first = pages[0].offset as u64;
            if first > start {
                out.push((i, start..first));
            }
            out.extend(rows.scan_ranges(&pages).into_iter().map(|r| (i, r)));
        }
        out
    }

    /// Holds the bytes of leaf column `column` read from `start` in the file: the whole
    /// chunk or one of its pages.
    pub fn insert(&mut self, column: usize, start: u64, data: Bytes) {
        let pieces = &mut self.chunks[column];
        let at = pieces.partition_point(|p| p.start < start);
        pieces.insert(at, Piece { start, data });
    }
}

impl RowGroups for RowGroupBytes<'_> {
    fn num_rows(&self) -> usize {
        self.meta().num_rows().max(0) as usize
    }

    fn column_chunks(&self, i: usize) -> Result<Box<dyn PageIterator>> {
        let pieces = self
            .chunks
            .get(i)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                ParquetError::General(format!("column {i} of the row group was not fetched"))
            })?;
        let chunk = Arc::new(Chunk {
            pieces: pieces.clone(),
        });
        let meta = self.meta().column(i);
        let reader = pages(chunk, meta, self.num_rows(), self.page_locations(i))?;
        Ok(Box::new(OnePageReader(Some(reader))))
    }

    fn row_groups(&self) -> Box<dyn Iterator<Item = &RowGroupMetaData> + '_> {
        Box::new(std::iter::once(self.meta()))
    }

    fn metadata(&self) -> &ParquetMetaData {
        self.metadata
    }
}

/// A page reader over one chunk: zstd chunks are decompressed page by page here.
/// With the chunk's page locations it can skip pages no selected row is on (and that were
/// not fetched).
fn pages(
    chunk: Arc<Chunk>,
    meta: &ColumnChunkMetaData,
    rows: usize,
    locations: Option<Vec<PageLocation>>,
) -> Result<Box<dyn PageReader>> {
    if !matches!(meta.compression(), Compression::ZSTD(_)) {
        return Ok(Box::new(SerializedPageReader::new(
            chunk, meta, rows, locations,
        )?));
    }
    let raw = meta
        .clone()
        .into_builder()
        .set_compression(Compression::UNCOMPRESSED)
        .build()?;
    let inner = SerializedPageReader::new(chunk, &raw, rows, locations)?;
    Ok(Box::new(Decompressing { inner }))
}

/// Bytes of one column chunk, or of some of its pages, by where they start in the file.
struct Chunk {
    pieces: Vec<Piece>,
}

/// Bytes read from `start` in the file.
#[derive(Clone)]
struct Piece {
    start: u64,
    data: Bytes,
}

impl Chunk {
    /// The bytes held from `start` to the end of the piece holding it.
    fn from(&self, start: u64) -> Result<Bytes> {
        let at = self.pieces.partition_point(|p| p.start <= start);
        let piece = at
            .checked_sub(1)
            .map(|i| &self.pieces[i])
            .filter(|p| start - p.start <= p.data.len() as u64)
            .ok_or_else(|| ParquetError::General(format!("offset {start} was not fetched")))?;
        Ok(piece.data.slice((start - piece.start) as usize..))
    }
}

impl Length for Chunk {
    fn len(&self) -> u64 {
        self.pieces
            .last()
            .map_or(0, |p| p.start + p.data.len() as u64)
    }
}

impl ChunkReader for Chunk {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> Result<Self::T> {
        Ok(self.from(start)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        let rest = self.from(start)?;
        if length > rest.len() {
            return Err(ParquetError::EOF(format!("{length} bytes past the chunk")));
        }
        Ok(rest.slice(..length))
    }
}

/// Yields one page reader, as a row group holds one chunk of each column.
struct OnePageReader(Option<Box<dyn PageReader>>);

impl Iterator for OnePageReader {
    type Item = Result<Box<dyn PageReader>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.take().map(Ok)
    }
}

impl PageIterator for OnePageReader {}

/// Reads pages still compressed and decompresses them with the thread's codec.
struct Decompressing {
    inner: SerializedPageReader<Chunk>,
}

impl Iterator for Decompressing {
    type Item = Result<Page>;

    fn next(&mut self) -> Option<Self::Item> {
        self.get_next_page().transpose()
    }
}

impl PageReader for Decompressing {
    fn get_next_page(&mut self) -> Result<Option<Page>> {
        match self.inner.get_next_page()? {
            Some(page) => decompress_page(page).map(Some),
            None => Ok(None),
        }
    }

    fn peek_next_page(&mut self) -> Result<Option<PageMetadata>> {
        self.inner.peek_next_page()
    }

    fn skip_next_page(&mut self) -> Result<()> {
        self.inner.skip_next_page()
    }

    fn at_record_boundary(&mut self) -> Result<bool> {
        self.inner.at_record_boundary()
    }
}

/// The page with its values decompressed; v2 levels are stored uncompressed before them.
fn decompress_page(page: Page) -> Result<Page> {
    Ok(match page {
        Page::DictionaryPage {
            buf,
            num_values,
            encoding,
            is_sorted,
        } => Page::DictionaryPage {
            buf: decompress(&buf, 0)?,
            num_values,
            encoding,
            is_sorted,
        },
        Page::DataPage {
            buf,
            num_values,
            encoding,
            def_level_encoding,
            rep_level_encoding,
            statistics,
        } => Page::DataPage {
            buf: decompress(&buf, 0)?,
            num_values,
            encoding,
            def_level_encoding,
            rep_level_encoding,
            statistics,
        },
        Page::DataPageV2 {
            buf,
            num_values,
            encoding,
            num_nulls,
            num_rows,
            def_levels_byte_len,
            rep_levels_byte_len,
            is_compressed,
            statistics,
        } => {
            let levels = def_levels_byte_len as usize + rep_levels_byte_len as usize;
            let buf = if is_compressed {
                decompress(&buf, levels)?
            } else {
                buf
            };
            Page::DataPageV2 {
                buf,
                num_values,
                encoding,
                num_nulls,
                num_rows,
                def_levels_byte_len,
                rep_levels_byte_len,
                is_compressed: false,
                statistics,
            }
        }
    })
}

/// `buf` with everything after its first `keep` bytes zstd-decompressed. Parquet writes
/// the decompressed size into the frame header.
fn decompress(buf: &Bytes, keep: usize) -> Result<Bytes> {
    let (head, frame) = buf
        .split_at_checked(keep)
        .ok_or_else(|| ParquetError::General("invalid page header".into()))?;
    if frame.is_empty() {
        return Ok(buf.clone());
    }
    let size = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten()
        .filter(|size| *size <= MAX_PAGE_BYTES)
        .ok_or_else(|| ParquetError::General("zstd frame without a plausible size".into()))?;
    let mut out = Vec::with_capacity(keep + size as usize);
    out.extend_from_slice(head);
    ZSTD.with(|cell| -> Result<()> {
        let mut slot = cell.borrow_mut();
        let decompressor = match &mut *slot {
            Some(decompressor) => decompressor,
            None => slot.insert(
                zstd::bulk::Decompressor::new().map_err(|e| ParquetError::External(Box::new(e)))?,
            ),
        };
        // A bare Vec would be written from its start, over the levels kept in front.
        let mut cursor = std::io::Cursor::new(&mut out);
        cursor.set_position(keep as u64);
        decompressor
            .decompress_to_buffer(frame, &mut cursor)
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(())
    })?;
    if out.len() != keep + size as usize {
        return Err(ParquetError::General(
            "page shorter than its header says".into(),
        ));
    }
    Ok(Bytes::from(out))
}
