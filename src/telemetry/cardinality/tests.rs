//! Tests of the cardinality estimator: accuracy, bounds, the top-N gauges and the endpoint.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::component::AnyValue;
use crate::runtime::Readiness;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn string(key: &str, value: String) -> KeyValue {
    kv(key, Value::StringValue(value))
}

/// Feeds `n` distinct values (each seen three times) and returns the estimate.
fn estimate_of(n: usize) -> KeyEstimate {
    let c = Cardinality::new(Bounds::default());
    for round in 0..3 {
        for i in 0..n {
            let attrs = [
                string("user.id", format!("user-{i}")),
                kv("round", Value::IntValue(round)),
            ];
            c.observe("acme", &attrs);
        }
    }
    let report = c.report(Some("acme"), 10);
    report.tenants[0]
        .keys
        .iter()
        .find(|k| k.key == "user.id")
        .cloned()
        .expect("user.id is reported")
}

#[test]
fn estimates_are_within_a_few_percent_of_the_truth() {
    for (truth, tolerance) in [(10usize, 0.0), (1000, 0.03), (100_000, 0.04)] {
        let got = estimate_of(truth);
        let error = (got.estimate as f64 - truth as f64).abs() / truth as f64;
        assert!(
            error <= tolerance,
            "{truth} distinct values estimated as {}",
            got.estimate
        );
        assert!(!got.lower_bound);
    }
}

#[test]
fn inverse_powers_of_two_are_exact() {
    for rank in 0..=64u8 {
        assert_eq!(inverse_power_of_two(rank), f64::powi(2.0, -i32::from(rank)));
    }
}

#[test]
fn values_of_different_types_are_distinct() {
    let c = Cardinality::new(Bounds::default());
    c.observe("t", &[kv("k", Value::IntValue(1))]);
    c.observe("t", &[kv("k", Value::StringValue("1".into()))]);
    c.observe("t", &[kv("k", Value::BoolValue(true))]);
    c.observe("t", &[kv("k", Value::BoolValue(true))]);
    assert_eq!(c.report(None, 5).tenants[0].keys[0].estimate, 3);
}

#[test]
fn tenants_and_keys_past_the_caps_go_to_other() {
    let bounds = Bounds {
        max_tenants: 2,
        max_keys_per_tenant: 3,
        max_dense: 10,
    };
    let c = Cardinality::new(bounds);
    for tenant in ["a", "b", "c", "d"] {
        for key in ["k1", "k2", "k3", "k4", "k5"] {
            c.observe(tenant, &[string(key, format!("{tenant}-{key}"))]);
        }
    }
    let report = c.report(None, 100);
    let mut tenants: Vec<&str> = report.tenants.iter().map(|t| t.tenant.as_str()).collect();
    tenants.sort_unstable();
    assert_eq!(tenants, ["a", "b", OTHER]);
    for t in &report.tenants {
        let mut keys: Vec<&str> = t.keys.iter().map(|k| k.key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["k1", "k2", "k3", OTHER], "keys of {}", t.tenant);
    }
    let other = report
        .tenants
        .iter()
        .find(|t| t.tenant == OTHER)
        .expect("other tenant");
    // Tenants c and d share the bucket: each of their keys saw two values.
    let k1 = other.keys.iter().find(|k| k.key == "k1").expect("k1");
    assert_eq!(k1.estimate, 2);
    // k4 and k5 of tenants c and d: four values in the `other` key.
    assert_eq!(other.keys[0].key, OTHER);
    assert_eq!(other.keys[0].estimate, 4);
}

#[test]
fn past_the_dense_budget_estimates_are_lower_bounds() {
    let c = Cardinality::new(Bounds {
        max_tenants: 10,
        max_keys_per_tenant: 10,
        max_dense: 1,
    });
    for i in 0..500 {
        c.observe(
            "t",
            &[string("a", format!("{i}")), string("b", format!("{i}"))],
        );
    }
    let keys = &c.report(Some("t"), 10).tenants[0].keys;
    let a = keys.iter().find(|k| k.key == "a").expect("a");
    let b = keys.iter().find(|k| k.key == "b").expect("b");
    assert!(!a.lower_bound && a.estimate > 450, "{a:?}");
    assert!(b.lower_bound && b.estimate <= SPARSE_MAX as u64, "{b:?}");
}

#[test]
fn the_gauges_publish_only_the_top_n_pairs_in_order() {
    let c = Cardinality::new(Bounds::default());
    for tenant in 0..10 {
        for key in 0..20 {
            let distinct = tenant * 20 + key + 1;
            for v in 0..distinct {
                c.observe(
                    &format!("t{tenant}"),
                    &[string(&format!("k{key}"), v.to_string())],
                );
            }
        }
    }
    let text = c.render_prometheus(5);
    let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(series.len(), 5, "{text}");
    assert!(series[0].starts_with(&format!(
        "{ATTRIBUTE_CARDINALITY}{{tenant=\"t9\",key=\"k19\"}} "
    )));
    assert!(series[4].starts_with(&format!(
        "{ATTRIBUTE_CARDINALITY}{{tenant=\"t9\",key=\"k15\"}} "
    )));
    assert!(text.contains(&format!("# TYPE {ATTRIBUTE_CARDINALITY} gauge")));
}

#[test]
fn label_values_are_escaped() {
    let c = Cardinality::new(Bounds::default());
    c.observe("t", &[string("a\"b\\c\nd", "x".into())]);
    assert!(c.render_prometheus(1).contains(r#"key="a\"b\\c\nd"} 1"#));
}

async fn get(address: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete response");
    (head.to_string(), body.to_string())
}

#[tokio::test]
async fn the_admin_server_reports_cardinality_per_tenant() {
    let tenant = "cardinality-endpoint-test";
    for i in 0..300 {
        global().observe(
            tenant,
            &[
                string("session.id", format!("s{i}")),
                string("http.method", "GET".into()),
            ],
        );
    }
    global().observe("cardinality-endpoint-other", &[string("x", "y".into())]);
    let stop = CancellationToken::new();
    let (address, task) = crate::telemetry::server::serve(
        "127.0.0.1:0",
        Arc::new(Readiness::default()),
        stop.clone(),
    )
    .await
    .expect("the admin server binds");

    let (head, body) = get(address, &format!("/debug/cardinality?tenant={tenant}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    let tenants = json["tenants"].as_array().expect("tenants");
    assert_eq!(tenants.len(), 1, "{body}");
    assert_eq!(tenants[0]["tenant"], tenant);
    let keys = tenants[0]["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["key"], "session.id");
    let estimate = keys[0]["estimate"].as_u64().expect("estimate");
    assert!((290..=310).contains(&estimate), "{estimate}");
    assert_eq!(
        keys[1],
        serde_json::json!({"key": "http.method", "estimate": 1})
    );

    let (_, body) = get(address, "/debug/cardinality").await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    let names: Vec<&str> = json["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .filter_map(|t| t["tenant"].as_str())
        .collect();
    assert!(
        names.contains(&tenant) && names.contains(&"cardinality-endpoint-other"),
        "{body}"
    );

    let (_, metrics) = get(address, "/metrics").await;
    assert!(
        metrics.contains(&format!(
            "{ATTRIBUTE_CARDINALITY}{{tenant=\"{tenant}\",key=\"session.id\"}}"
        )),
        "{metrics}"
    );
    stop.cancel();
    task.await.expect("the admin server stops");
}
