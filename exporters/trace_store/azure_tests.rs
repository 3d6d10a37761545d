//! The store on a real Azure Blob Storage emulator (Azurite, from npm) on loopback.

use super::test_server::TestServer;
use super::{TraceStoreConfig, build_exporter};
use crate::component::{Exporter, TraceBatch};
use crate::store::testdata::{self, flatten};

/// 2026-11-27T16:00:00Z
const HOUR_START: u64 = 1_795_795_200_000_000_000;
/// The emulator's fixed port: object_store's `use_emulator` talks to it unless the
/// process environment says otherwise.
const AZURITE_PORT: u16 = 10000;
/// Azurite's well-known development account key (public, in Azure's documentation).
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Starts `azurite-blob` on its fixed port and creates `container`.
async fn start_azurite(container: &str) -> TestServer {
    let data = tempfile::tempdir().unwrap();
    let port = AZURITE_PORT.to_string();
    let mut args = ["--blobHost", "127.0.0.1", "--blobPort", &port, "--silent"]
        .map(String::from)
        .to_vec();
    args.extend(["--skipApiVersionCheck".into(), "--location".into()]);
    args.push(data.path().display().to_string());
    let create = format!(
        "from azure.storage.blob import BlobServiceClient as C; C.from_connection_string('DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};BlobEndpoint=http://127.0.0.1:{AZURITE_PORT}/devstoreaccount1;').create_container('{container}')"
    );
    TestServer::start(
        "azurite-blob",
        &args,
        Some(data),
        &create,
        "npm install -g azurite; pip install azure-storage-blob",
    )
    .await
}

#[tokio::test]
async fn writes_and_reads_through_azure_blob_storage() {
    let _azurite = start_azurite("traces").await;
    let yaml = "url: az://traces/prod\noptions:\n  use_emulator: 'true'\n  max_retries: '1'\n  retry_timeout: 2s\n";
    let config: TraceStoreConfig = serde_yaml::from_str(yaml).unwrap();
    let mut exporter = build_exporter(&config, "trace_store", None).unwrap();
    let batch = TraceBatch::measured(testdata::batch(3, 20, 5, Some("acme"), HOUR_START));
    exporter.export(&batch).await.unwrap();
    exporter.flush().await.unwrap();
    let reader = exporter.reader();
    let blocks = reader.blocks("acme").await.unwrap();
    assert_eq!(blocks.len(), 1);
    assert!(blocks[0].spans_path.starts_with("prod/spans/tenant=acme/"));
    let back = reader.block_spans(&blocks[0]).await.unwrap();
    assert_eq!(flatten(&back), flatten(batch.resource_spans()));
    exporter.shutdown().await;
}
