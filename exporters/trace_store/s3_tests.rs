//! The store on a real S3-compatible server (moto) on loopback, including an outage.

use std::net::TcpListener;

use super::test_server::TestServer;
use super::{TraceStoreConfig, build_exporter};
use crate::component::{ExportError, Exporter, TraceBatch};
use crate::store::testdata::{self, flatten};

/// 2026-11-27T16:00:00Z
const HOUR_START: u64 = 1_795_795_200_000_000_000;

/// Starts `moto_server` on `port` and creates `bucket`.
async fn start_moto(port: u16, bucket: &str) -> TestServer {
    let args = ["-H", "127.0.0.1", "-p", &port.to_string()].map(String::from);
    let create = format!(
        "import urllib.request; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:{port}/{bucket}', method='PUT'))"
    );
    TestServer::start(
        "moto_server",
        &args,
        None,
        &create,
        "pip install 'moto[server]'",
    )
    .await
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn config(port: u16) -> TraceStoreConfig {
    let yaml = format!(
        "url: s3://traces/prod\noptions:\n  endpoint: http://127.0.0.1:{port}\n  region: us-east-1\n  allow_http: 'true'\n  access_key_id: test\n  secret_access_key: test\n  max_retries: '1'\n  retry_timeout: 2s\n"
    );
    serde_yaml::from_str(&yaml).unwrap()
}

#[tokio::test]
async fn writes_and_reads_through_s3_and_survives_an_outage() {
    let port = free_port();
    let moto = start_moto(port, "traces").await;
    let mut exporter = build_exporter(&config(port), "trace_store", None).unwrap();
    let first = TraceBatch::measured(testdata::batch(1, 20, 5, Some("acme"), HOUR_START));
    exporter.export(&first).await.unwrap();
    exporter.flush().await.unwrap();
    let reader = exporter.reader();
    let blocks = reader.blocks("acme").await.unwrap();
    assert_eq!(blocks.len(), 1);
    assert!(blocks[0].spans_path.starts_with("prod/spans/tenant=acme/"));
    let back = reader.block_spans(&blocks[0]).await.unwrap();
    assert_eq!(flatten(&back), flatten(first.resource_spans()));

    // The server goes away: spans are still accepted and stay buffered.
    drop(moto);
    let second = TraceBatch::measured(testdata::batch(2, 10, 5, Some("acme"), HOUR_START));
    exporter.export(&second).await.unwrap();
    assert!(matches!(
        exporter.flush().await,
        Err(ExportError::Retryable { .. })
    ));

    // It returns (empty: moto keeps state in memory) and the buffered spans arrive.
    let _moto = start_moto(port, "traces").await;
    exporter.flush().await.unwrap();
    let blocks = reader.blocks("acme").await.unwrap();
    assert_eq!(blocks.len(), 1);
    let back = reader.block_spans(&blocks[0]).await.unwrap();
    assert_eq!(flatten(&back), flatten(second.resource_spans()));
}
