//! Segment files on disk: names, listing, scanning on open, and the committed-sequence marker.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::WalError;
use super::record::{self, Damage, RecordLoc};

const SEGMENT_SUFFIX: &str = ".wal";
const COMMITTED_FILE: &str = "committed";
const COMMITTED_TMP: &str = "committed.tmp";
const LOCK_FILE: &str = "lock";

/// What the WAL knows about one segment file.
#[derive(Debug, Clone)]
pub struct Segment {
    pub path: PathBuf,
    /// The sequence number the segment was created for (its name); its records are >= it.
    pub first_seq: u64,
    /// The last valid record's sequence number, if it holds any.
    pub last_seq: Option<u64>,
    /// The file's size.
    pub bytes: u64,
}

/// The file name of the segment whose first record is `first_seq`; zero-padded so names sort.
pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}{SEGMENT_SUFFIX}"))
}

/// Segment files in `dir`, ordered by first sequence number. Other files are ignored.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let entries = fs::read_dir(dir).map_err(|e| WalError::io(dir, "list", e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io(dir, "list", e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)) else {
            continue;
        };
        if let Ok(first_seq) = stem.parse::<u64>() {
            found.push((first_seq, entry.path()));
        }
    }
    found.sort_by_key(|(seq, _)| *seq);
    Ok(found)
}

/// The outcome of reading one segment file from start to end.
#[derive(Debug)]
pub struct Scan {
    pub records: Vec<RecordLoc>,
    pub file_len: u64,
    /// The first damaged record, if any; nothing after it is used.
    pub damage: Option<ScanDamage>,
}

#[derive(Debug, Clone, Copy)]
pub struct ScanDamage {
    pub offset: u64,
    pub kind: Damage,
    /// A valid-looking record follows the damage: it is not a torn tail.
    pub followed_by_valid: bool,
}

/// Reads a segment and validates its records in order; stops at the first damage.
/// `prev` is the sequence number the first record must exceed.
pub fn scan(path: &Path, prev: u64) -> Result<Scan, WalError> {
    let buf = fs::read(path).map_err(|e| WalError::io(path, "read", e))?;
    let mut records = Vec::new();
    let mut pos = 0usize;
    let mut last = prev;
    let mut damage = None;
    while pos < buf.len() {
        match record::parse_at(&buf, pos, last) {
            Ok(loc) => {
                last = loc.seq;
                pos = loc.end() as usize;
                records.push(loc);
            }
            Err(kind) => {
                damage = Some(ScanDamage {
                    offset: pos as u64,
                    kind,
                    followed_by_valid: record::valid_record_after(&buf, pos + 1, last),
                });
                break;
            }
        }
    }
    Ok(Scan {
        records,
        file_len: buf.len() as u64,
        damage,
    })
}

/// Takes the directory's exclusive lock so two processes never append to one WAL.
pub fn lock_dir(dir: &Path) -> Result<File, WalError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| WalError::io(&path, "open", e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(WalError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(WalError::io(&path, "lock", e)),
    }
}

/// Opens (creating) a segment for appending.
pub fn open_append(path: &Path) -> Result<File, WalError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| WalError::io(path, "open", e))
}

/// Cuts a segment back to `len` bytes and makes the cut durable.
pub fn truncate(path: &Path, len: u64) -> Result<(), WalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io(path, "open", e))?;
    file.set_len(len)
        .map_err(|e| WalError::io(path, "truncate", e))?;
    file.sync_all().map_err(|e| WalError::io(path, "fsync", e))
}

/// Makes creations, renames and deletions in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), WalError> {
    let handle = File::open(dir).map_err(|e| WalError::io(dir, "open", e))?;
    handle.sync_all().map_err(|e| WalError::io(dir, "fsync", e))
}

/// Reads the committed-sequence marker; a missing marker means nothing is committed.
/// An unreadable one is logged and treated as 0: replaying committed data again (duplicates)
/// is preferred to losing uncommitted data.
pub fn read_committed(dir: &Path) -> Result<u64, WalError> {
    let path = dir.join(COMMITTED_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(WalError::io(&path, "read", e)),
    };
    match text.trim().parse::<u64>() {
        Ok(seq) => Ok(seq),
        Err(_) => {
            tracing::warn!(path = %path.display(), "unreadable committed marker; replaying every record");
            Ok(0)
        }
    }
}

/// Records `seq` as committed: written to a temporary file, synced, then renamed over the
/// marker so a crash leaves either the old or the new value.
pub fn write_committed(dir: &Path, seq: u64, sync: bool) -> Result<(), WalError> {
    let tmp = dir.join(COMMITTED_TMP);
    let mut file = File::create(&tmp).map_err(|e| WalError::io(&tmp, "create", e))?;
    file.write_all(format!("{seq}\n").as_bytes())
        .map_err(|e| WalError::io(&tmp, "write", e))?;
    if sync {
        file.sync_all()
            .map_err(|e| WalError::io(&tmp, "fsync", e))?;
    }
    let path = dir.join(COMMITTED_FILE);
    fs::rename(&tmp, &path).map_err(|e| WalError::io(&path, "rename", e))?;
    if sync {
        sync_dir(dir)?;
    }
    Ok(())
}
