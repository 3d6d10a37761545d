//! Graceful shutdown: spans accepted before SIGTERM are all delivered, and spanline exits 0.

use std::time::Duration;

use crate::support::{Capture, Spanline, captured_seqs, client, free_port, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_delivers_everything_accepted() {
    let capture = Capture::default();
    let downstream = free_port();
    let _stop = capture.serve(downstream).await;
    let (grpc, admin) = (free_port(), free_port());
    // The batch processor holds everything (large size, long timeout) until shutdown flushes it.
    let config = format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:{grpc} }}
processors:
  batch: {{ send_batch_size: 100000, timeout: 1h }}
exporters:
  otlp:
    endpoint: http://127.0.0.1:{downstream}
    tls: {{ insecure: true }}
service:
  pipelines:
    traces: {{ receivers: [otlp], processors: [batch], exporters: [otlp] }}
  telemetry:
    metrics: {{ address: 127.0.0.1:{admin} }}
  shutdown_timeout: 10s
"
    );
    let mut a = Spanline::start(&config, &format!("127.0.0.1:{admin}"));
    let mut client = client(grpc).await;
    for i in 0..5 {
        client.export(request(i * 50, 50)).await.expect("accepted");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        capture.span_count(),
        0,
        "the batch processor should still hold the spans"
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = a.terminate(Duration::from_secs(15));
        (status, a.logs())
    })
    .await
    .expect("terminate");
    assert!(
        status.0.success(),
        "exit status {:?}\n{}",
        status.0,
        status.1
    );
    assert_eq!(captured_seqs(&capture), (0..250).collect::<Vec<i64>>());
}
