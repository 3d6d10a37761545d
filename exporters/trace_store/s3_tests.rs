//! The store on a real S3-compatible server (moto) on loopback, including an outage.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{TraceStoreConfig, build_exporter};
use crate::component::{ExportError, Exporter, TraceBatch};
use crate::store::testdata::{self, flatten};

/// 2026-11-27T16:00:00Z
const HOUR_START: u64 = 1_795_795_200_000_000_000;

struct Moto {
    child: Child,
}

impl Moto {
    /// Starts `moto_server` and creates `bucket`; fails (never skips) when moto is missing.
    async fn start(port: u16, bucket: &str) -> Moto {
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "moto_server should be installed: .ci/run installs it (pip install 'moto[server]')",
            );
        let moto = Moto { child };
        let create = format!(
            "import urllib.request; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:{port}/{bucket}', method='PUT'))"
        );
        for _ in 0..100 {
            let status = Command::new("python3")
                .args(["-c", &create])
                .stderr(Stdio::null())
                .status();
            if status.is_ok_and(|s| s.success()) {
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto_server did not start on port {port}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let moto = Moto::start(port, "traces").await;
    let mut exporter = build_exporter(&config(port), "trace_store", None).unwrap();
    let first = TraceBatch::measured(testdata::batch(1, 20, 5, Some("acme"), HOUR_START));
    exporter.export(&first).await.unwrap();
    exporter.flush().await.unwrap();
    let reader = exporter.reader();
    let blocks = reader.blocks("acme").await.unwrap();
    assert_eq!(blocks.len(), 1);
    assert!(blocks[0].spans_path.starts_with("prod/spans/tenant=acme/"));
    let back = reader.block_spans(&blocks[0]).await.unwrap();
    assert_eq!(flatten(&back), flatten(&first.resource_spans));

    // The server goes away: spans are still accepted and stay buffered.
    drop(moto);
    let second = TraceBatch::measured(testdata::batch(2, 10, 5, Some("acme"), HOUR_START));
    exporter.export(&second).await.unwrap();
    assert!(matches!(
        exporter.flush().await,
        Err(ExportError::Retryable { .. })
    ));

    // It returns (empty: moto keeps state in memory) and the buffered spans arrive.
    let _moto = Moto::start(port, "traces").await;
    exporter.flush().await.unwrap();
    let blocks = reader.blocks("acme").await.unwrap();
    assert_eq!(blocks.len(), 1);
    let back = reader.block_spans(&blocks[0]).await.unwrap();
    assert_eq!(flatten(&back), flatten(&second.resource_spans));
}
