//! Reading back the records that were not committed when the WAL was opened.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use metrics::Counter;

use super::record::{self, RecordLoc};
use super::{Seq, WalError};
use crate::component::TraceBatch;

/// One segment's uncommitted records, as validated on open.
#[derive(Debug, Clone)]
pub(super) struct PendingSegment {
    pub path: PathBuf,
    pub records: VecDeque<RecordLoc>,
}

/// Yields `(Seq, TraceBatch)` for every record that was uncommitted when the WAL was opened,
/// in sequence order, reading one record at a time (the uncommitted part may be gigabytes).
///
/// Owns its state, so it can be moved into `spawn_blocking`. Each record's checksum is
/// checked again as it is read. An error for one record does not end the iteration.
pub struct Replay {
    segments: VecDeque<PendingSegment>,
    file: Option<File>,
    replayed_spans: Counter,
}

impl Replay {
    pub(super) fn new(segments: VecDeque<PendingSegment>, replayed_spans: Counter) -> Self {
        Self {
            segments,
            file: None,
            replayed_spans,
        }
    }

    fn read(&mut self, path: &Path, loc: RecordLoc) -> Result<(Seq, TraceBatch), WalError> {
        let file = match self.file.as_mut() {
            Some(file) => file,
            None => {
                let file = File::open(path).map_err(|e| WalError::io(path, "open", e))?;
                self.file.insert(file)
            }
        };
        let mut buf = vec![0u8; loc.len as usize];
        file.seek(SeekFrom::Start(loc.offset))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| WalError::io(path, "read", e))?;
        let corrupt = |reason: String| WalError::Corrupt {
            path: path.to_path_buf(),
            offset: loc.offset,
            reason,
        };
        record::parse_at(&buf, 0, loc.seq - 1).map_err(|d| corrupt(d.to_string()))?;
        let batch =
            record::decode(&buf).map_err(|e| corrupt(format!("cannot decode batch: {e}")))?;
        self.replayed_spans.increment(batch.span_count() as u64);
        Ok((Seq(loc.seq), batch))
    }
}

impl Iterator for Replay {
    type Item = Result<(Seq, TraceBatch), WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let segment = self.segments.front_mut()?;
            match segment.records.pop_front() {
                Some(loc) => {
                    let path = segment.path.clone();
                    return Some(self.read(&path, loc));
                }
                None => {
                    self.segments.pop_front();
                    self.file = None;
                }
            }
        }
    }
}
