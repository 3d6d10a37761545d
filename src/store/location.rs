//! Opening the object store a `url` names: `file://`, `memory://` or `s3://`.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::{ObjectStore, RetryConfig};

use crate::config::units::HumanDuration;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;

use super::StoreError;
use super::layout::Layout;

/// What a store url names, before anything is opened (so config validation does no IO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory, absolute or relative to the working directory.
    File(std::path::PathBuf),
    /// A process-local in-memory store (tests).
    Memory,
    /// `s3://bucket/prefix`.
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// Parses `file:///abs`, `file://./relative`, `memory://` and `s3://bucket/prefix`.
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err("file:// needs a path: file:///abs/dir or file://./relative".into());
            }
            return Ok(Location::File(path.into()));
        }
        if url == "memory://" || url == "memory:///" {
            return Ok(Location::Memory);
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err("s3:// needs a bucket: s3://bucket/prefix".into());
            }
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if url.starts_with("gs://") || url.starts_with("az://") || url.starts_with("abfs://") {
            return Err("gs:// and az:// are not built into this binary; use s3:// (S3-compatible) or file://".into());
        }
        Err("must start with file://, memory:// or s3://".into())
    }

    /// Checks that every option is one the S3 client knows (pure, for config validation).
    pub fn unknown_option(&self, key: &str) -> bool {
        match self {
            Location::S3 { .. } => s3_key(key).is_none() && !RETRY_KEYS.contains(&key),
            _ => true,
        }
    }

    /// Opens the store; a local directory is created if missing.
    pub fn open(
        &self,
        url: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<(Arc<dyn ObjectStore>, Layout), StoreError> {
        let bad = |message: String| StoreError::Url {
            url: url.to_string(),
            message,
        };
        match self {
            Location::Memory => Ok((Arc::new(InMemory::new()), Layout::default())),
            Location::File(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
                // fsync: the write-ahead log drops its entries once a block's index is
                // written, so a committed block must survive a power loss. Blocks are few
                // and large, so the cost is a few syncs per block.
                let fs = LocalFileSystem::new_with_prefix(dir)?
                    .with_automatic_cleanup(true)
                    .with_fsync(true);
                Ok((Arc::new(fs), Layout::default()))
            }
            Location::S3 { bucket, prefix } => {
                // The S3 client's TLS needs the process-wide rustls provider; ring is the one
                // the rest of spanline uses. Installing twice is harmless (the first wins).
                let _ = rustls::crypto::ring::default_provider().install_default();
                // from_env: credentials (AWS_ACCESS_KEY_ID, ...) never sit in the config file.
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry(options).map_err(bad)?);
                for (key, value) in options {
                    if RETRY_KEYS.contains(&key.as_str()) {
                        continue;
                    }
                    let key = s3_key(key).ok_or_else(|| bad(format!("unknown option {key:?}")))?;
                    builder = builder.with_config(key, value);
                }
                Ok((
                    Arc::new(builder.build()?),
                    Layout::new(Path::from(prefix.as_str())),
                ))
            }
        }
    }
}

/// Options spanline reads itself: the client's retry budget per request. Block uploads are
/// retried again by the exporter, so a short budget surfaces an outage quickly.
const RETRY_KEYS: [&str; 2] = ["max_retries", "retry_timeout"];

fn retry(options: &BTreeMap<String, String>) -> Result<RetryConfig, String> {
    let mut config = RetryConfig::default();
    if let Some(n) = options.get("max_retries") {
        config.max_retries = n
            .parse()
            .map_err(|_| format!("max_retries must be a number, got {n:?}"))?;
    }
    if let Some(t) = options.get("retry_timeout") {
        config.retry_timeout = HumanDuration::parse(t)?.get();
    }
    Ok(config)
}

/// `endpoint`, `region`, `allow_http` and the rest of object_store's S3 keys.
fn s3_key(key: &str) -> Option<AmazonS3ConfigKey> {
    let key = key.to_ascii_lowercase();
    let key = match key.as_str() {
        "allow_http" => "aws_allow_http",
        other => other,
    };
    key.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_supported_url() {
        assert_eq!(
            Location::parse("file://./spanline-data"),
            Ok(Location::File("./spanline-data".into()))
        );
        assert_eq!(
            Location::parse("file:///var/lib/x"),
            Ok(Location::File("/var/lib/x".into()))
        );
        assert_eq!(Location::parse("memory://"), Ok(Location::Memory));
        assert_eq!(
            Location::parse("s3://bucket/a/b/"),
            Ok(Location::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            })
        );
        assert!(Location::parse("ftp://x").is_err());
        assert!(Location::parse("gs://x").unwrap_err().contains("not built"));
        let s3 = Location::parse("s3://b").unwrap();
        assert!(!s3.unknown_option("endpoint"));
        assert!(!s3.unknown_option("allow_http"));
        assert!(!s3.unknown_option("region"));
        assert!(s3.unknown_option("bogus"));
        assert!(!s3.unknown_option("retry_timeout"));
    }
}
