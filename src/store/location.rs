//! Opening the object store a `url` names: `file://`, `memory://`, `s3://`, `gs://` or `az://`.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::{ObjectStore, RetryConfig};

use crate::config::units::HumanDuration;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
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
    /// `gs://bucket/prefix` (Google Cloud Storage).
    Gcs { bucket: String, prefix: String },
    /// `az://container/prefix` (Azure Blob Storage; the account from `options` or the
    /// environment).
    Azure { container: String, prefix: String },
}

/// Builds a cloud location from its bucket (or container) and prefix.
type CloudLocation = fn(String, String) -> Location;

/// `scheme://name/prefix` → (name, prefix without surrounding slashes).
fn bucket_and_prefix(rest: &str) -> (String, String) {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (bucket.to_string(), prefix.trim_matches('/').to_string())
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
        let clouds: [(&str, &str, CloudLocation); 3] = [
            ("s3://", "bucket", |bucket, prefix| Location::S3 {
                bucket,
                prefix,
            }),
            ("gs://", "bucket", |bucket, prefix| Location::Gcs {
                bucket,
                prefix,
            }),
            ("az://", "container", |container, prefix| Location::Azure {
                container,
                prefix,
            }),
        ];
        for (scheme, what, location) in clouds {
            if let Some(rest) = url.strip_prefix(scheme) {
                let (name, prefix) = bucket_and_prefix(rest);
                if name.is_empty() {
                    return Err(format!("{scheme} needs a {what}: {scheme}{what}/prefix"));
                }
                return Ok(location(name, prefix));
            }
        }
        Err("must start with file://, memory://, s3://, gs:// or az://".into())
    }

    /// Checks that every option is one the cloud client knows (pure, for config validation).
    pub fn unknown_option(&self, key: &str) -> bool {
        if RETRY_KEYS.contains(&key) && !matches!(self, Location::File(_) | Location::Memory) {
            return false;
        }
        match self {
            Location::S3 { .. } => s3_key(key).is_none(),
            Location::Gcs { .. } => gcs_key(key).is_none(),
            Location::Azure { .. } => azure_key(key).is_none(),
            Location::File(_) | Location::Memory => true,
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
                install_tls();
                // from_env: credentials (AWS_ACCESS_KEY_ID, ...) never sit in the config file.
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry(options).map_err(bad)?);
                for (key, value) in client_options(options) {
                    let key = s3_key(key).ok_or_else(|| bad(format!("unknown option {key:?}")))?;
                    builder = builder.with_config(key, value);
                }
                cloud(builder.build()?, prefix)
            }
            Location::Gcs { bucket, prefix } => {
                install_tls();
                // from_env: GOOGLE_SERVICE_ACCOUNT / GOOGLE_APPLICATION_CREDENTIALS, ...
                let mut builder = GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry(options).map_err(bad)?);
                for (key, value) in client_options(options) {
                    let key = gcs_key(key).ok_or_else(|| bad(format!("unknown option {key:?}")))?;
                    builder = builder.with_config(key, value);
                }
                cloud(builder.build()?, prefix)
            }
            Location::Azure { container, prefix } => {
                install_tls();
                // from_env: AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY, ...
                let mut builder = MicrosoftAzureBuilder::from_env()
                    .with_container_name(container)
                    .with_retry(retry(options).map_err(bad)?);
                for (key, value) in client_options(options) {
                    let key =
                        azure_key(key).ok_or_else(|| bad(format!("unknown option {key:?}")))?;
                    builder = builder.with_config(key, value);
                }
                cloud(builder.build()?, prefix)
            }
        }
    }
}

/// A cloud store under `prefix`.
fn cloud(
    store: impl ObjectStore,
    prefix: &str,
) -> Result<(Arc<dyn ObjectStore>, Layout), StoreError> {
    Ok((Arc::new(store), Layout::new(Path::from(prefix))))
}

/// The cloud clients' TLS needs the process-wide rustls provider before they are built;
/// ring is the one the rest of spanline uses (installing twice is harmless: the first wins).
fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The options the cloud client takes (all but spanline's own retry keys).
fn client_options(options: &BTreeMap<String, String>) -> impl Iterator<Item = (&String, &String)> {
    options
        .iter()
        .filter(|(key, _)| !RETRY_KEYS.contains(&key.as_str()))
}

/// Options spanline reads itself: the client's retry budget per request. Block uploads are
/// retried again by the exporter, so a short budget surfaces an outage quickly.
const RETRY_KEYS: [&str; 2] = ["max_retries", "retry_timeout"];

/// The default budget. object_store's own (3 minutes) kept the block committer inside one
/// failing upload while open buffers grew past `max_buffer_bytes`; after this long the
/// exporter stages the block and keeps sealing, and retries with its own backoff.
const DEFAULT_RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn retry(options: &BTreeMap<String, String>) -> Result<RetryConfig, String> {
    let mut config = RetryConfig {
        retry_timeout: DEFAULT_RETRY_TIMEOUT,
        ..RetryConfig::default()
    };
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

/// object_store's GCS keys (`service_account`, `base_url`, `allow_http`, ...).
fn gcs_key(key: &str) -> Option<GoogleConfigKey> {
    key.to_ascii_lowercase().parse().ok()
}

/// object_store's Azure keys (`account_name`, `access_key`, `endpoint`, `use_emulator`,
/// `allow_http`, ...).
fn azure_key(key: &str) -> Option<AzureConfigKey> {
    key.to_ascii_lowercase().parse().ok()
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
        assert_eq!(
            Location::parse("gs://traces/prod/"),
            Ok(Location::Gcs {
                bucket: "traces".into(),
                prefix: "prod".into()
            })
        );
        assert_eq!(
            Location::parse("az://traces"),
            Ok(Location::Azure {
                container: "traces".into(),
                prefix: String::new()
            })
        );
        assert!(
            Location::parse("gs://")
                .unwrap_err()
                .contains("needs a bucket")
        );
        assert!(
            Location::parse("az:///x")
                .unwrap_err()
                .contains("needs a container")
        );
        let gcs = Location::parse("gs://b").unwrap();
        assert!(!gcs.unknown_option("service_account"));
        assert!(!gcs.unknown_option("allow_http"));
        assert!(gcs.unknown_option("region"), "an S3 key is not a GCS key");
        let azure = Location::parse("az://c").unwrap();
        assert!(!azure.unknown_option("account_name"));
        assert!(!azure.unknown_option("use_emulator"));
        assert!(!azure.unknown_option("max_retries"));
        assert!(azure.unknown_option("bogus"));
        assert!(Location::File("/x".into()).unknown_option("max_retries"));
        let s3 = Location::parse("s3://b").unwrap();
        assert!(!s3.unknown_option("endpoint"));
        assert!(!s3.unknown_option("allow_http"));
        assert!(!s3.unknown_option("region"));
        assert!(s3.unknown_option("bogus"));
        assert!(!s3.unknown_option("retry_timeout"));
    }
}

#[cfg(test)]
mod cloud_tests {
    use super::*;

    #[test]
    fn opens_gcs_and_azure_clients_from_options_without_touching_the_network() {
        let gcs = Location::parse("gs://traces/prod").unwrap();
        let options = BTreeMap::from([
            ("base_url".to_string(), "http://127.0.0.1:1".to_string()),
            ("skip_signature".to_string(), "true".to_string()),
            ("max_retries".to_string(), "0".to_string()),
        ]);
        assert!(gcs.open("gs://traces/prod", &options).is_ok());
        let azure = Location::parse("az://traces/prod").unwrap();
        let options = BTreeMap::from([
            ("account_name".to_string(), "devstoreaccount1".to_string()),
            ("use_emulator".to_string(), "true".to_string()),
        ]);
        assert!(azure.open("az://traces/prod", &options).is_ok());
        let bad = BTreeMap::from([("region".to_string(), "x".to_string())]);
        let err = match gcs.open("gs://traces/prod", &bad) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("an S3 option must not open a GCS store"),
        };
        assert!(err.contains("unknown option \"region\""), "{err}");
    }
}
