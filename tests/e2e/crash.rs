//! Crash safety: spanline is killed with SIGKILL while ingesting into the trace store; after
//! a restart every span acknowledged to the client is in the store exactly once.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use spanline::store::location::Location;
use spanline::store::reader::StoreReader;

use crate::support::{Spanline, client, free_port, request, seqs_of};

fn config(store: &std::path::Path, wal: &std::path::Path, grpc: u16, admin: u16) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:{grpc} }}
exporters:
  trace_store:
    url: file://{}
    wal_dir: {}
    max_block_age: 1s
service:
  pipelines:
    traces: {{ receivers: [otlp], exporters: [trace_store] }}
  telemetry:
    metrics: {{ address: 127.0.0.1:{admin} }}
",
        store.display(),
        wal.display()
    )
}

/// Every span in the store, read through spanline's own reader.
async fn stored_seqs(url: &str) -> Vec<i64> {
    let location = Location::parse(url).expect("store url");
    let (store, layout) = location.open(url, &Default::default()).expect("open store");
    let reader = StoreReader::new(store, layout);
    let mut spans = Vec::new();
    for tenant in reader.tenants().await.expect("tenants") {
        for meta in reader.blocks(&tenant).await.expect("blocks") {
            spans.extend(reader.block_spans(&meta).await.expect("block spans"));
        }
    }
    seqs_of(&spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_span() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, wal) = (dir.path().join("store"), dir.path().join("wal"));
    let (grpc, admin) = (free_port(), free_port());
    let yaml = config(&store, &wal, grpc, admin);
    let admin_addr = format!("127.0.0.1:{admin}");
    let mut first = Spanline::start(&yaml, &admin_addr);

    let acked = Arc::new(Mutex::new(Vec::new()));
    let sender = {
        let acked = acked.clone();
        let mut client = client(grpc).await;
        tokio::spawn(async move {
            for i in 0.. {
                match client.export(request(i * 50, 50)).await {
                    Ok(_) => acked.lock().extend(i * 50..i * 50 + 50),
                    Err(_) => break,
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.kill();
    sender.await.expect("sender task");
    let acked = acked.lock().clone();
    assert!(
        acked.len() >= 500,
        "the run should have acknowledged a good number of spans: {}",
        acked.len()
    );

    let mut second = Spanline::start(&yaml, &admin_addr);
    let status = tokio::task::spawn_blocking(move || second.terminate(Duration::from_secs(30)))
        .await
        .expect("terminate");
    assert!(status.success(), "restart exit status {status:?}");

    let stored = stored_seqs(&format!("file://{}", store.display())).await;
    let mut unique = stored.clone();
    unique.dedup();
    assert_eq!(unique.len(), stored.len(), "no span may be stored twice");
    let missing: Vec<i64> = acked
        .iter()
        .copied()
        .filter(|s| stored.binary_search(s).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged spans lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}
