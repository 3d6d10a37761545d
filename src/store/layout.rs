//! Object paths of the store: partitions by tenant, date and hour; sortable block ids.

use object_store::path::Path;

use crate::component::tenant::validate_tenant_id;

use super::StoreError;

pub(super) const NANOS_PER_HOUR: u64 = 3_600_000_000_000;

/// One hour of one tenant's data: the unit of partitioning and of retention.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub tenant: String,
    /// Hours since the Unix epoch (UTC).
    pub hour: u64,
}

impl Partition {
    /// The partition of a span that starts at `start_unix_nano`; the tenant must be valid
    /// because it becomes a path segment.
    pub fn new(tenant: &str, start_unix_nano: u64) -> Result<Self, StoreError> {
        validate_tenant_id(tenant).map_err(StoreError::Tenant)?;
        Ok(Self {
            tenant: tenant.to_string(),
            hour: start_unix_nano / NANOS_PER_HOUR,
        })
    }

    /// `date=YYYY-MM-DD/hour=HH`.
    pub fn date_hour(&self) -> String {
        let (y, m, d) = civil_from_days((self.hour / 24) as i64);
        format!("date={y:04}-{m:02}-{d:02}/hour={:02}", self.hour % 24)
    }

    /// The first nanosecond after this partition's hour.
    pub fn end_unix_nano(&self) -> u64 {
        (self.hour + 1).saturating_mul(NANOS_PER_HOUR)
    }
}

/// Where a store lives inside its bucket (`prefix` of `s3://bucket/prefix`).
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub root: Path,
}

impl Layout {
    pub fn new(root: Path) -> Self {
        Self { root }
    }

    fn join(&self, rest: &str) -> Path {
        let root = self.root.as_ref();
        if root.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{root}/{rest}"))
        }
    }

    /// `{root}/spans/tenant={t}/date=.../hour=.../{block}.parquet`
    pub fn spans(&self, partition: &Partition, block: &str) -> Path {
        self.table("spans", partition, block)
    }

    /// `{root}/traces/tenant={t}/date=.../hour=.../{block}.parquet`
    pub fn traces(&self, partition: &Partition, block: &str) -> Path {
        self.table("traces", partition, block)
    }

    fn table(&self, table: &str, partition: &Partition, block: &str) -> Path {
        self.join(&format!(
            "{table}/tenant={}/{}/{block}.parquet",
            partition.tenant,
            partition.date_hour()
        ))
    }

    /// `{root}/index/tenant={t}/{block}.json`
    pub fn index(&self, tenant: &str, block: &str) -> Path {
        self.join(&format!("index/tenant={tenant}/{block}.json"))
    }

    /// The folder of a tenant's index objects.
    pub fn index_dir(&self, tenant: &str) -> Path {
        self.join(&format!("index/tenant={tenant}"))
    }

    /// The folder holding every tenant's index folder.
    pub fn index_root(&self) -> Path {
        self.join("index")
    }

    /// The folder of one table's partition (for retention).
    pub fn partition_dir(&self, table: &str, partition: &Partition) -> Path {
        self.join(&format!(
            "{table}/tenant={}/{}",
            partition.tenant,
            partition.date_hour()
        ))
    }
}

/// A new block id: 12 hex digits of milliseconds since the epoch, then 16 random hex
/// digits, so ids sort by creation time and never collide between writers.
pub fn new_block_id(now_unix_millis: u64) -> String {
    let random: u64 = rand::random();
    format!("{:012x}{random:016x}", now_unix_millis & 0xffff_ffff_ffff)
}

/// Milliseconds since the epoch encoded in a block id.
pub fn block_id_millis(block: &str) -> Option<u64> {
    u64::from_str_radix(block.get(..12)?, 16).ok()
}

/// Parses `date=YYYY-MM-DD/hour=HH` back into hours since the epoch.
pub fn parse_date_hour(date: &str, hour: &str) -> Option<u64> {
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    let h: u64 = hour.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    u64::try_from(days).ok().map(|days| days * 24 + h)
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The inverse of `civil_from_days`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_by_utc_hour_and_round_trips_dates() {
        // 2026-11-27T16:08:19Z
        let p = Partition::new("acme", 1_795_795_699_000_000_000).unwrap();
        assert_eq!(p.date_hour(), "date=2026-11-27/hour=16");
        assert_eq!(parse_date_hour("2026-11-27", "16"), Some(p.hour));
        assert_eq!(parse_date_hour("1970-01-01", "00"), Some(0));
        assert_eq!(
            parse_date_hour("2024-02-29", "23").map(|h| h % 24),
            Some(23)
        );
        assert_eq!(parse_date_hour("2024-13-01", "00"), None);
        let layout = Layout::new(Path::from("data"));
        assert_eq!(
            layout.spans(&p, "b1").as_ref(),
            "data/spans/tenant=acme/date=2026-11-27/hour=16/b1.parquet"
        );
        assert_eq!(
            Layout::default().index("acme", "b1").as_ref(),
            "index/tenant=acme/b1.json"
        );
    }

    #[test]
    fn refuses_tenants_that_would_escape_their_partition() {
        assert!(Partition::new("../x", 0).is_err());
        assert!(Partition::new("a/b", 0).is_err());
    }

    #[test]
    fn block_ids_sort_by_time() {
        let a = new_block_id(1_000);
        let b = new_block_id(2_000);
        assert!(a < b);
        assert_eq!(block_id_millis(&b), Some(2_000));
        assert_eq!(a.len(), 28);
    }
}
