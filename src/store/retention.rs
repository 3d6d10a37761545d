//! Retention: deletes whole expired hour partitions, index objects first so readers never
//! see a block whose files are gone. Idempotent: a crash midway is finished by the next run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::StoreError;
use super::layout::{Layout, parse_date_hour};
use super::reader::StoreReader;

/// How long each tenant's data is kept.
#[derive(Debug, Clone)]
pub struct RetentionPolicy {
    pub default: Duration,
    pub tenants: BTreeMap<String, Duration>,
}

impl RetentionPolicy {
    pub fn for_tenant(&self, tenant: &str) -> Duration {
        self.tenants.get(tenant).copied().unwrap_or(self.default)
    }

    /// Whether an hour partition (hours since the epoch) is past retention at `now_unix_secs`.
    fn expired(&self, tenant: &str, hour: u64, now_unix_secs: u64) -> bool {
        let end = (hour + 1) * 3600;
        end.saturating_add(self.for_tenant(tenant).as_secs()) <= now_unix_secs
    }
}

/// What one retention run removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    pub blocks: u64,
    pub objects: u64,
}

/// Deletes every expired partition of every tenant.
pub async fn apply(
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
    policy: &RetentionPolicy,
    now_unix_secs: u64,
) -> Result<RetentionReport, StoreError> {
    let reader = StoreReader::new(store.clone(), layout.clone());
    let mut report = RetentionReport::default();
    for tenant in reader.tenants().await? {
        for meta in reader.blocks(&tenant).await? {
            if policy.expired(&tenant, meta.partition_hour, now_unix_secs) {
                delete(store, &layout.index(&tenant, &meta.block_id)).await?;
                report.blocks += 1;
                report.objects += 1;
            }
        }
    }
    // Then the data files, including those of blocks that never got an index.
    for table in ["spans", "traces"] {
        let root = layout_table(layout, table);
        let objects: Vec<_> = store.list(Some(&root)).try_collect().await?;
        for object in objects {
            let Some((tenant, hour)) = partition_of(&object.location) else {
                continue;
            };
            if policy.expired(&tenant, hour, now_unix_secs) {
                delete(store, &object.location).await?;
                report.objects += 1;
            }
        }
    }
    Ok(report)
}

fn layout_table(layout: &Layout, table: &str) -> Path {
    let root = layout.root.as_ref();
    if root.is_empty() {
        Path::from(table)
    } else {
        Path::from(format!("{root}/{table}"))
    }
}

/// `.../tenant=T/date=D/hour=H/file` → (T, hours since the epoch).
fn partition_of(path: &Path) -> Option<(String, u64)> {
    let (mut tenant, mut date, mut hour) = (None, None, None);
    for part in path.parts() {
        let part = part.as_ref().to_string();
        if let Some(t) = part.strip_prefix("tenant=") {
            tenant = Some(t.to_string());
        } else if let Some(d) = part.strip_prefix("date=") {
            date = Some(d.to_string());
        } else if let Some(h) = part.strip_prefix("hour=") {
            hour = Some(h.to_string());
        }
    }
    Some((tenant?, parse_date_hour(&date?, &hour?)?))
}

/// Deleting what is already gone is fine: retention may be re-run after a crash.
async fn delete(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<(), StoreError> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
