//! A downstream that is down: A's queue fills, A refuses with RESOURCE_EXHAUSTED, its memory
//! stays bounded, and nothing it accepted is lost once the downstream returns.

use std::time::Duration;

use crate::support::{Capture, Spanline, captured_seqs, client, free_port, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_refuses_and_delivers_everything_accepted_later() {
    let (grpc, admin, downstream) = (free_port(), free_port(), free_port());
    let config = format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:{grpc} }}
exporters:
  otlp:
    endpoint: http://127.0.0.1:{downstream}
    tls: {{ insecure: true }}
    compression: none
    timeout: 1s
    sending_queue: {{ queue_size: 4 }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 300ms, max_elapsed_time: 0 }}
service:
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp] }}
  telemetry:
    metrics: {{ address: 127.0.0.1:{admin} }}
"
    );
    let a = Spanline::start(&config, &format!("127.0.0.1:{admin}"));
    let mut client = client(grpc).await;
    let mut accepted = Vec::new();
    let mut exhausted = 0;
    let mut peak_rss = 0;
    for i in 0..60 {
        match client.export(request(i * 200, 200)).await {
            Ok(_) => accepted.extend(i * 200..i * 200 + 200),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("full"), "{status:?}");
                exhausted += 1;
            }
        }
        peak_rss = peak_rss.max(a.rss_kib());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(exhausted > 0, "a full queue must refuse");
    assert!(
        accepted.len() <= 6 * 200,
        "queue of 4 + one in flight bounds what is accepted, got {}",
        accepted.len()
    );
    assert!(
        peak_rss < 100 * 1024,
        "A's memory must stay bounded while refusing: {peak_rss} KiB"
    );
    let refused = a.metric(
        "spanline_receiver_refused_spans_total",
        &["reason=\"pipeline_full\""],
    );
    assert_eq!(refused as i64, exhausted * 200);

    let capture = Capture::default();
    let _stop = capture.serve(downstream).await;
    let arrived = capture
        .wait_for(accepted.len(), Duration::from_secs(20))
        .await;
    assert_eq!(arrived, accepted.len(), "{}", a.logs());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        captured_seqs(&capture),
        accepted,
        "every accepted span exactly once"
    );
}
