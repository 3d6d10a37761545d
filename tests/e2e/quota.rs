//! Tenant fairness through a real `spanline run`: API keys name the tenants, `noisy` offers
//! ten times its span rate and is held to it, `calm` is never refused, and a sender that
//! retries on RESOURCE_EXHAUSTED gets everything through.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::{Capture, Spanline, client, free_port, request};

/// noisy's `rate_limit_spans`; its burst is half of it so the window's ±10% can hold it.
const NOISY_RATE: usize = 500;
const NOISY_BURST: usize = NOISY_RATE / 2;
const WINDOW: Duration = Duration::from_secs(10);
/// noisy offers 10× its rate: 100 spans every 20 ms.
const NOISY_REQUEST: usize = 100;
const NOISY_EVERY: Duration = Duration::from_millis(20);
/// calm stays well within the defaults (2000 spans/s): 50 spans every 100 ms.
const CALM_REQUEST: usize = 50;
const CALM_EVERY: Duration = Duration::from_millis(100);
/// Where each sender's `seq` attributes start, so every span is told apart.
const CALM_SEQ: i64 = 0;
const NOISY_SEQ: i64 = 1_000_000;
const RETRY_SEQ: i64 = 2_000_000;

fn config(grpc: u16, admin: u16, downstream: u16) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:{grpc} }}
    auth:
      api_keys: {{ key-calm: calm, key-noisy: noisy }}
      required: true
processors:
  tenant_quota:
    action: refuse
    defaults: {{ rate_limit_spans: 2000, burst_size_spans: 2000 }}
    tenants:
      noisy: {{ rate_limit_spans: {NOISY_RATE}, burst_size_spans: {NOISY_BURST} }}
  batch:
    timeout: 100ms
exporters:
  otlp:
    endpoint: http://127.0.0.1:{downstream}
    tls: {{ insecure: true }}
    compression: none
service:
  pipelines:
    traces: {{ receivers: [otlp], processors: [tenant_quota, batch], exporters: [otlp] }}
  telemetry:
    metrics: {{ address: 127.0.0.1:{admin} }}
"
    )
}

/// One export of `n` spans numbered from `first`, authenticated with `key`.
fn call(
    key: &str,
    first: i64,
    n: usize,
) -> tonic::Request<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest> {
    let mut call = tonic::Request::new(request(first, n as i64));
    let bearer = format!("Bearer {key}").parse().expect("metadata value");
    call.metadata_mut().insert("authorization", bearer);
    call
}

/// What one sender saw over its window.
#[derive(Debug, Default)]
struct Sent {
    offered: usize,
    accepted: usize,
    refused: usize,
    elapsed: Duration,
}

/// Sends `n` spans every `every` for `WINDOW`, never retrying; counts accepted and refused spans.
async fn send_for(grpc: u16, key: &'static str, first: i64, n: usize, every: Duration) -> Sent {
    let mut client = client(grpc).await;
    let mut tick = tokio::time::interval(every);
    let mut sent = Sent::default();
    let start = Instant::now();
    while start.elapsed() < WINDOW {
        tick.tick().await;
        let seq = first + sent.offered as i64;
        sent.offered += n;
        match client.export(call(key, seq, n)).await {
            Ok(_) => sent.accepted += n,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                sent.refused += n;
            }
        }
    }
    sent.elapsed = start.elapsed();
    sent
}

/// Sends `total` spans in requests of `n`, retrying each refused one after its RetryInfo delay.
async fn send_retrying(grpc: u16, key: &str, first: i64, n: usize, total: usize) -> usize {
    let mut client = client(grpc).await;
    let (mut delivered, mut retries) = (0, 0);
    while delivered < total {
        match client.export(call(key, first + delivered as i64, n)).await {
            Ok(_) => delivered += n,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                let delay = status
                    .get_details_retry_info()
                    .and_then(|info| info.retry_delay)
                    .expect("a refusal carries RetryInfo");
                assert!(delay <= Duration::from_secs(1), "{delay:?}");
                retries += 1;
                tokio::time::sleep(delay).await;
            }
        }
    }
    assert!(
        retries > 0,
        "the drained bucket should have refused at least once"
    );
    delivered
}

fn tenant(resource: Option<&Resource>) -> String {
    let attributes = resource
        .map(|r| r.attributes.as_slice())
        .unwrap_or_default();
    attributes
        .iter()
        .find(|kv| kv.key == "tenant.id")
        .and_then(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            },
        )
        .unwrap_or_default()
}

/// The `seq` attributes the capture holds, by tenant, sorted.
fn seqs_by_tenant(capture: &Capture) -> BTreeMap<String, Vec<i64>> {
    let mut by_tenant: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for rs in capture.received.lock().iter() {
        let seqs = by_tenant.entry(tenant(rs.resource.as_ref())).or_default();
        for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            for kv in span.attributes.iter().filter(|kv| kv.key == "seq") {
                if let Some(any_value::Value::IntValue(seq)) =
                    kv.value.as_ref().and_then(|v| v.value.as_ref())
                {
                    seqs.push(*seq);
                }
            }
        }
    }
    by_tenant.values_mut().for_each(|v| v.sort_unstable());
    by_tenant
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_tenant_is_held_to_its_rate_while_a_calm_one_is_untouched() {
    let (grpc, admin, downstream) = (free_port(), free_port(), free_port());
    let capture = Capture::default();
    let _stop = capture.serve(downstream).await;
    let spanline = Spanline::start(
        &config(grpc, admin, downstream),
        &format!("127.0.0.1:{admin}"),
    );

    let noisy = tokio::spawn(send_for(
        grpc,
        "key-noisy",
        NOISY_SEQ,
        NOISY_REQUEST,
        NOISY_EVERY,
    ));
    let calm = tokio::spawn(send_for(
        grpc,
        "key-calm",
        CALM_SEQ,
        CALM_REQUEST,
        CALM_EVERY,
    ));
    let noisy = noisy.await.expect("noisy sender");
    let calm = calm.await.expect("calm sender");

    // calm: never refused, everything it sent arrives.
    assert_eq!(calm.refused, 0, "{calm:?}");
    assert_eq!(calm.accepted, calm.offered);
    let expected = calm.accepted + noisy.accepted;
    let arrived = capture.wait_for(expected, Duration::from_secs(10)).await;
    assert_eq!(arrived, expected, "{}", spanline.logs());
    let by_tenant = seqs_by_tenant(&capture);
    let calm_seqs: Vec<i64> = (CALM_SEQ..CALM_SEQ + calm.offered as i64).collect();
    assert_eq!(
        by_tenant["calm"], calm_seqs,
        "calm's full throughput, once each"
    );

    // noisy: offered ~10× its rate, held to the rate ±10% over the window.
    let secs = noisy.elapsed.as_secs_f64();
    let allowed = NOISY_RATE as f64 * secs;
    assert!(
        noisy.offered as f64 >= 8.0 * allowed,
        "noisy must offer about 10x its rate: {noisy:?}"
    );
    let accepted = noisy.accepted as f64;
    assert!(
        (0.9 * allowed..=1.1 * allowed).contains(&accepted),
        "noisy accepted {accepted} spans in {secs:.2}s, limit {allowed}: {noisy:?}"
    );
    assert_eq!(by_tenant["noisy"].len(), noisy.accepted);

    // Refusals are counted per tenant, and only noisy has any.
    let refused = |tenant: &str| {
        spanline.metric(
            "spanline_tenant_refused_spans_total",
            &[&format!("tenant=\"{tenant}\""), "reason=\"rate_limited\""],
        ) as usize
    };
    assert_eq!(refused("noisy"), noisy.refused);
    assert_eq!(refused("calm"), 0);

    // A sender that retries after the RetryInfo delay delivers everything, exactly once.
    let total = 4 * NOISY_REQUEST;
    let delivered = send_retrying(grpc, "key-noisy", RETRY_SEQ, NOISY_REQUEST, total).await;
    assert_eq!(delivered, total);
    let expected = expected + total;
    let arrived = capture.wait_for(expected, Duration::from_secs(10)).await;
    assert_eq!(arrived, expected, "{}", spanline.logs());
    let retried: Vec<i64> = seqs_by_tenant(&capture)["noisy"]
        .iter()
        .copied()
        .filter(|seq| *seq >= RETRY_SEQ)
        .collect();
    assert_eq!(
        retried,
        (RETRY_SEQ..RETRY_SEQ + total as i64).collect::<Vec<_>>()
    );
}
