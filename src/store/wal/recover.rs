//! Opening a WAL: scanning every segment, truncating a torn tail, reporting other damage.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use metrics::counter;

use super::record::Damage;
use super::replay::PendingSegment;
use super::segment::{self, Segment};
use super::{Seq, WalError};
use crate::telemetry::metrics as names;

/// What opening the WAL found.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Segment files found.
    pub segments: usize,
    /// Valid records found, committed or not.
    pub records: u64,
    /// Valid records above the committed mark: what `replay` yields.
    pub uncommitted_records: u64,
    /// The committed mark read from disk.
    pub committed: Seq,
    /// Bytes cut off the last segment (a torn write).
    pub truncated_bytes: u64,
    pub torn_tail: Option<TornTail>,
    /// Damage that a crash does not explain; those bytes were skipped, not removed.
    pub corruptions: Vec<Corruption>,
}

/// A partial or damaged final record, cut off the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    /// The segment's length after truncation: the end of its last good record.
    pub offset: u64,
    pub reason: Damage,
    pub bytes: u64,
}

/// Damage in the middle of the log: the rest of the segment from `offset` was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub path: PathBuf,
    pub offset: u64,
    pub reason: Damage,
    pub skipped_bytes: u64,
}

impl Corruption {
    /// The corruption as an error value, for callers that surface it.
    pub fn to_error(&self) -> WalError {
        WalError::Corrupt {
            path: self.path.clone(),
            offset: self.offset,
            reason: format!(
                "{}; skipped the remaining {} bytes of the segment",
                self.reason, self.skipped_bytes
            ),
        }
    }
}

/// The state recovered from disk, ready to become a `Wal`.
pub(super) struct Found {
    pub segments: Vec<Segment>,
    pub pending: Vec<PendingSegment>,
    pub next_seq: u64,
    /// The last segment may take more appends (no unexplained damage in it).
    pub reusable_tail: bool,
    pub recovery: Recovery,
}

pub(super) fn recover(dir: &Path) -> Result<Found, WalError> {
    let committed = segment::read_committed(dir)?;
    let listed = segment::list(dir)?;
    let mut found = Found {
        segments: Vec::with_capacity(listed.len()),
        pending: Vec::new(),
        next_seq: committed + 1,
        reusable_tail: true,
        recovery: Recovery {
            segments: listed.len(),
            committed: Seq(committed),
            ..Recovery::default()
        },
    };
    let mut last_seen = 0u64;
    for (i, (first_seq, path)) in listed.iter().enumerate() {
        let is_last = i + 1 == listed.len();
        let seg = recover_segment(dir, path, *first_seq, last_seen, is_last, &mut found)?;
        last_seen = seg.last_seq.unwrap_or(last_seen);
        found.next_seq = found.next_seq.max(last_seen + 1).max(*first_seq);
        found.segments.push(seg);
    }
    if !found.reusable_tail
        && let Some(last) = found.segments.last()
    {
        // New appends go to a fresh segment, whose name must differ from the damaged one.
        found.next_seq = found.next_seq.max(last.first_seq + 1);
    }
    Ok(found)
}

fn recover_segment(
    dir: &Path,
    path: &Path,
    first_seq: u64,
    last_seen: u64,
    is_last: bool,
    found: &mut Found,
) -> Result<Segment, WalError> {
    let scan = segment::scan(path, last_seen.max(first_seq.saturating_sub(1)))?;
    let mut bytes = scan.file_len;
    if let Some(damage) = scan.damage {
        let cut = scan.file_len - damage.offset;
        if is_last && !damage.followed_by_valid {
            segment::truncate(path, damage.offset)?;
            bytes = damage.offset;
            report_torn_tail(dir, path, damage.offset, damage.kind, cut, found);
        } else {
            report_corruption(dir, path, damage.offset, damage.kind, cut, found);
            found.reusable_tail &= !is_last;
        }
    }
    let committed = found.recovery.committed.0;
    found.recovery.records += scan.records.len() as u64;
    let uncommitted: VecDeque<_> = scan
        .records
        .iter()
        .filter(|r| r.seq > committed)
        .copied()
        .collect();
    found.recovery.uncommitted_records += uncommitted.len() as u64;
    if !uncommitted.is_empty() {
        found.pending.push(PendingSegment {
            path: path.to_path_buf(),
            records: uncommitted,
        });
    }
    Ok(Segment {
        path: path.to_path_buf(),
        first_seq,
        last_seq: scan.records.last().map(|r| r.seq),
        bytes,
    })
}

fn report_torn_tail(
    dir: &Path,
    path: &Path,
    offset: u64,
    reason: Damage,
    bytes: u64,
    found: &mut Found,
) {
    tracing::warn!(
        segment = %path.display(), offset, bytes, %reason,
        "write-ahead log: torn record at the end of the last segment, truncated"
    );
    counter!(names::STORE_WAL_TRUNCATED_BYTES, "dir" => dir.display().to_string(), "reason" => "torn_tail")
        .increment(bytes);
    found.recovery.truncated_bytes += bytes;
    found.recovery.torn_tail = Some(TornTail {
        path: path.to_path_buf(),
        offset,
        reason,
        bytes,
    });
}

fn report_corruption(
    dir: &Path,
    path: &Path,
    offset: u64,
    reason: Damage,
    skipped_bytes: u64,
    found: &mut Found,
) {
    tracing::error!(
        segment = %path.display(), offset, skipped_bytes, %reason,
        "write-ahead log: corrupt record inside the log; skipped the rest of the segment"
    );
    counter!(names::STORE_WAL_TRUNCATED_BYTES, "dir" => dir.display().to_string(), "reason" => "corrupt")
        .increment(skipped_bytes);
    found.recovery.corruptions.push(Corruption {
        path: path.to_path_buf(),
        offset,
        reason,
        skipped_bytes,
    });
}
