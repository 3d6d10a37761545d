#!/usr/bin/env bash
# Benchmarks queries over a store of at least TARGET_SPANS spans written by spanline itself.
#
# 1. Unless the store already holds TARGET_SPANS, runs `spanline run` with a trace_store exporter on
#    STORE_DIR and drives it with `spanline loadgen` (one tenant: "default") in 60s rounds until the
#    exporter reports TARGET_SPANS spans committed; SIGTERM then commits the rest.
# 2. Runs `cargo bench --bench query` over the store: trace by id p50/p99 (cold and warm caches) and a
#    one-hour search with service + status + min-duration filters.
#
# Environment:
#   TARGET_SPANS=10000000   spans to store before measuring
#   STORE_DIR=/tmp/spanline-bench-store
#   SKIP_BUILD=1            do not run `cargo build --release`
set -euo pipefail

cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-target}
TARGET_SPANS=${TARGET_SPANS:-10000000}
STORE_DIR=${STORE_DIR:-/tmp/spanline-bench-store}
GRPC=127.0.0.1:14317
METRICS=127.0.0.1:18888
SPANLINE=$TARGET_DIR/release/spanline

if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --release --locked
fi

stored_spans() {
    python3 - "$STORE_DIR" <<'PY'
import glob, json, sys
total = 0
for path in glob.glob(f"{sys.argv[1]}/index/tenant=default/*.json"):
    with open(path) as f:
        total += json.load(f)["span_count"]
print(total)
PY
}

if (( $(stored_spans) < TARGET_SPANS )); then
    mkdir -p "$STORE_DIR"
    CONFIG=$(mktemp --suffix=.yaml)
    cat >"$CONFIG" <<YAML
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: $GRPC
processors:
  batch: {}
exporters:
  trace_store:
    url: file://$STORE_DIR
    wal_dir: $STORE_DIR-wal
    max_block_age: 1m
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [trace_store]
  telemetry:
    metrics:
      address: $METRICS
  query:
    enabled: false
YAML
    "$SPANLINE" run --config "$CONFIG" --log-level warn &
    SERVER_PID=$!
    trap 'kill $SERVER_PID 2>/dev/null || true; rm -f "$CONFIG"' EXIT
    sleep 2
    while (( $(stored_spans) < TARGET_SPANS )); do
        # Acknowledgements wait for the batch to be stored: keep enough requests in flight to fill
        # batches by size rather than by their 200ms timeout.
        "$SPANLINE" loadgen --endpoint "http://$GRPC" --duration 60s --tenants 0 --concurrency 32 2>/dev/null | tail -n 3
        echo "stored so far: $(stored_spans) spans"
    done
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
fi
echo "store: $(stored_spans) spans in $STORE_DIR ($(du -sh "$STORE_DIR" | cut -f1))"
SPANLINE_BENCH_STORE="file://$STORE_DIR" cargo bench --locked --bench query
