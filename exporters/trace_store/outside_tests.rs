//! The store as outside engines see it: DuckDB over the Parquet files, and bytes per span.

use std::process::Command;

use super::{TraceStoreConfig, build_exporter};
use crate::component::{Exporter, TraceBatch};
use crate::store::convert::hex;
use crate::store::testdata;

/// 2026-11-27T16:00:00Z
const HOUR_START: u64 = 1_795_795_200_000_000_000;

/// Runs a Python snippet that prints one JSON document; fails (never skips) without duckdb.
fn python(script: &str) -> serde_json::Value {
    let output = Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3 should be installed (.ci/run uses it to install duckdb and pyarrow)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named 'duckdb'"),
        "Python's duckdb is missing: .ci/run installs it (python3 -m pip install pyarrow duckdb)"
    );
    assert!(output.status.success(), "python failed: {stderr}");
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

async fn write_store(dir: &std::path::Path, batches: &[TraceBatch], row_group_spans: usize) {
    let config = TraceStoreConfig {
        url: format!("file://{}", dir.display()),
        row_group_spans,
        ..Default::default()
    };
    let mut exporter = build_exporter(&config, "trace_store", None).unwrap();
    for batch in batches {
        exporter.export(batch).await.unwrap();
    }
    exporter.shutdown().await;
}

#[tokio::test]
async fn duckdb_reads_spans_traces_tenants_and_one_trace() {
    let dir = tempfile::tempdir().unwrap();
    let acme = testdata::batch(1, 20, 5, Some("acme"), HOUR_START);
    let wanted = acme[0].scope_spans[0].spans[3].trace_id.clone();
    let mut wanted_spans: Vec<String> = testdata::flatten(&acme)
        .into_iter()
        .filter(|(_, _, s)| s.trace_id == wanted)
        .map(|(_, _, s)| hex(&s.span_id))
        .collect();
    wanted_spans.sort();
    let batches = [
        TraceBatch::measured(acme),
        TraceBatch::measured(testdata::batch(2, 10, 3, Some("beta"), HOUR_START)),
        TraceBatch::measured(testdata::batch(
            3,
            7,
            4,
            None,
            HOUR_START + 3_600_000_000_000,
        )),
    ];
    write_store(dir.path(), &batches, 50).await;
    let root = dir.path().display();
    let script = format!(
        r#"
import duckdb, json
spans = "read_parquet('{root}/spans/**/*.parquet', hive_partitioning=true)"
traces = "read_parquet('{root}/traces/**/*.parquet', hive_partitioning=true)"
q = lambda sql: duckdb.sql(sql).fetchall()
print(json.dumps({{
  "spans": q(f"select count(*) from {{spans}}")[0][0],
  "tenants": {{t: n for t, n in q(f"select tenant, count(*) from {{spans}} group by tenant")}},
  "traces": q(f"select count(*), sum(span_count) from {{traces}}")[0],
  "hours": sorted(h for (h,) in q(f"select distinct hour from {{spans}}")),
  "trace": sorted(hex for (hex,) in q(f"select lower(hex(span_id)) from {{spans}} where tenant = 'acme' and trace_id = unhex('{trace}')")),
  "route": q(f"select count(*) from {{spans}} where attributes['http.route'] is not null and http_route = attributes['http.route']")[0][0],
  "has_root": q(f"select count(*) from {{traces}} where has_root")[0][0],
  "root_ops": q(f"select count(distinct trace_id) from (select trace_id, root_service, root_name, unnest(operations) as op from {{traces}}) where op.service = root_service and op.name = root_name")[0][0],
  "errors_agree": q(f"select count(*) from {{traces}} where (status_code = 'error') != (len(error_services) > 0)")[0][0],
}}))
"#,
        trace = hex(&wanted),
    );
    let result = python(&script);
    assert_eq!(result["spans"], 20 * 5 + 10 * 3 + 7 * 4);
    assert_eq!(result["tenants"]["acme"], 100);
    assert_eq!(result["tenants"]["beta"], 30);
    assert_eq!(result["tenants"]["default"], 28);
    assert_eq!(result["traces"], serde_json::json!([37, 158]));
    assert_eq!(result["hours"], serde_json::json!([16, 17]));
    assert_eq!(result["trace"], serde_json::json!(wanted_spans));
    assert_eq!(
        result["route"], 158,
        "promoted columns agree with the attribute map"
    );
    assert_eq!(result["has_root"], 37, "every test trace has its root");
    assert_eq!(result["root_ops"], 37, "each root's operation is listed");
    assert_eq!(
        result["errors_agree"], 0,
        "error traces name their error services"
    );
}

/// Not a timed test: prints the store's size per span for realistic spans.
#[tokio::test]
async fn bytes_per_span_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut batches = Vec::new();
    let mut otlp_bytes = 0;
    for seed in 0..10 {
        let batch = TraceBatch::measured(testdata::batch(seed, 500, 10, Some("acme"), HOUR_START));
        otlp_bytes += batch.size_hint();
        batches.push(batch);
    }
    write_store(dir.path(), &batches, 10_000).await;
    let (mut spans_bytes, mut traces_bytes) = (0, 0);
    for (table, total) in [("spans", &mut spans_bytes), ("traces", &mut traces_bytes)] {
        let partition = dir
            .path()
            .join(table)
            .join("tenant=acme/date=2026-11-27/hour=16");
        for file in std::fs::read_dir(partition).unwrap() {
            *total += file.unwrap().metadata().unwrap().len();
        }
    }
    let spans = 50_000.0;
    println!(
        "{spans} spans, {:.0} B/span OTLP: spans table {:.1} B/span, traces table {:.1} B/span, total {:.1} B/span",
        otlp_bytes as f64 / spans,
        spans_bytes as f64 / spans,
        traces_bytes as f64 / spans,
        (spans_bytes + traces_bytes) as f64 / spans,
    );
    assert!(spans_bytes > 0 && traces_bytes > 0);
}
