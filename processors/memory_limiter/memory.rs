//! Where memory numbers come from: the process's resident set and the memory available to it.

use std::path::Path;

/// Why memory could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {detail}")]
    Parse { path: String, detail: String },
}

/// Reports the process's resident memory; injectable so tests can drive the limiter.
pub trait RssSource: Send + Sync + 'static {
    fn rss_bytes(&self) -> Result<u64, MemoryError>;
}

/// The real resident set: `/proc/self/statm` resident pages times the page size.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcRss;

impl RssSource for ProcRss {
    fn rss_bytes(&self) -> Result<u64, MemoryError> {
        let path = "/proc/self/statm";
        let text = read(path)?;
        let resident = text
            .split_whitespace()
            .nth(1)
            .and_then(|field| field.parse::<u64>().ok())
            .ok_or_else(|| MemoryError::Parse {
                path: path.into(),
                detail: format!("expected `size resident ...`, got {text:?}"),
            })?;
        Ok(resident * page_size())
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a constant of the running system and has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

fn read(path: &str) -> Result<String, MemoryError> {
    std::fs::read_to_string(path).map_err(|source| MemoryError::Read {
        path: path.into(),
        source,
    })
}

/// The memory this process may use: the cgroup's limit when one is set, else total RAM.
pub fn available_memory() -> Result<u64, MemoryError> {
    let total = mem_total()?;
    Ok(match cgroup_limit() {
        Some(limit) => limit.min(total),
        None => total,
    })
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
fn mem_total() -> Result<u64, MemoryError> {
    let path = "/proc/meminfo";
    let text = read(path)?;
    parse_mem_total(&text).ok_or_else(|| MemoryError::Parse {
        path: path.into(),
        detail: "no MemTotal line".into(),
    })
}

pub(crate) fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The cgroup v2 `memory.max` of this process's cgroup (or the v1 limit), if one is set.
fn cgroup_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok();
    let own_path = own.as_deref().and_then(v2_cgroup_path).unwrap_or("/");
    let candidates = [
        format!(
            "/sys/fs/cgroup{}/memory.max",
            own_path.trim_end_matches('/')
        ),
        "/sys/fs/cgroup/memory.max".to_string(),
        "/sys/fs/cgroup/memory/memory.limit_in_bytes".to_string(),
    ];
    for path in candidates {
        if let Some(limit) = read_limit(Path::new(&path)) {
            return Some(limit);
        }
    }
    None
}

/// The path of the unified (v2) hierarchy in `/proc/self/cgroup`: the `0::/path` line.
pub(crate) fn v2_cgroup_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

/// Reads a cgroup limit file; `max` (v2) and absurd v1 "unlimited" values mean no limit.
fn read_limit(path: &Path) -> Option<u64> {
    parse_limit(&std::fs::read_to_string(path).ok()?)
}

pub(crate) fn parse_limit(text: &str) -> Option<u64> {
    let value: u64 = text.trim().parse().ok()?;
    // cgroup v1 reports "unlimited" as a page-rounded i64::MAX.
    (value < (1 << 60)).then_some(value)
}
