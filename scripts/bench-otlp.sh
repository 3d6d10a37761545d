#!/usr/bin/env bash
# Benchmarks the OTLP gRPC -> batch -> nop path: spanline against rotel (blackhole exporter) on loopback.
#
# For each server: start it pinned to CPU 0, drive it with `spanline loadgen --rate 0` pinned to CPU 1,
# and report spans/s acknowledged, server CPU time per acknowledged span and the server's peak RSS.
#
# Environment:
#   DURATION=30s          how long loadgen sends to each server
#   ONLY=spanline|rotel   run one half only (default: both)
#   LOADGEN="cmd ..."     the load generator (default: target/release/spanline loadgen)
#   LOADGEN_ARGS="..."    extra loadgen flags (default "--concurrency 16": 4 in flight leave a server
#                         core partly idle, waiting on round trips, instead of measuring its throughput)
#   ROTEL_VENV=DIR        where `pip install rotel` goes (default: $CARGO_TARGET_DIR or target, /rotel-venv)
#   SKIP_BUILD=1          do not run `cargo build --release` (refused when the binary is older
#                         than the sources)
#   PIPELINE=nop|trace_store|tail_sampling
#                         spanline's pipeline: batch -> nop (default); trace_store on a local directory
#                         (PROCESSORS="[batch]" puts a batch in front; CPU includes committing every
#                         acknowledged span at shutdown; also prints bytes per span stored);
#                         tail_sampling -> batch -> nop
set -euo pipefail

cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-target}
DURATION=${DURATION:-30s}
ONLY=${ONLY:-all}
PIPELINE=${PIPELINE:-nop}
LOADGEN=${LOADGEN:-$TARGET_DIR/release/spanline loadgen}
LOADGEN_ARGS=${LOADGEN_ARGS:---concurrency 16}
ROTEL_VENV=${ROTEL_VENV:-$TARGET_DIR/rotel-venv}
SPANLINE_GRPC=127.0.0.1:14317
SPANLINE_METRICS=127.0.0.1:18888
ROTEL_GRPC=127.0.0.1:24317
ROTEL_HTTP=127.0.0.1:24318
CLK_TCK=$(getconf CLK_TCK)

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Pins loadgen and server to different CPUs when taskset exists, so they do not share a core.
# (Arrays, not a function, so that `$!` is the server's own pid: taskset execs it.)
PIN_SERVER=()
PIN_LOADGEN=()
if command -v taskset >/dev/null; then
    PIN_SERVER=(taskset -c 0)
    PIN_LOADGEN=(taskset -c 1)
fi

wait_for_port() {
    local host=${1%:*} port=${1##*:}
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "the server exited before listening on $1" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "nothing listens on $1 after 10s" >&2
    return 1
}

# utime + stime of the whole process (all threads), in clock ticks; the command name may hold spaces.
cpu_ticks() {
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# CPU seconds (user + sys) of this shell's finished children, from the `times` builtin (run in this shell,
# not a subshell, so loadgen is counted once it has been waited for).
children_cpu_seconds() {
    times >"$WORK/times"
    awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); t += p[1] * 60 + p[2] } print t }' "$WORK/times"
}

peak_rss_kib() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# measure NAME ENDPOINT SERVER_CMD...: prints "NAME acked_per_s cpu_us_per_span peak_rss_mib" into $WORK/results.
measure() {
    local name=$1 endpoint=$2
    shift 2
    if (exec 3<>"/dev/tcp/${endpoint%:*}/${endpoint##*:}") 2>/dev/null; then
        echo "$endpoint is already in use; stop whatever listens there first" >&2
        return 1
    fi
    "${PIN_SERVER[@]}" "$@" >"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!
    wait_for_port "$endpoint" || { cat "$WORK/$name.log" >&2; return 1; }
    sleep 1
    local before after
    before=$(cpu_ticks "$SERVER_PID")
    children_cpu_seconds >"$WORK/loadgen.before"
    # shellcheck disable=SC2086 # LOADGEN and LOADGEN_ARGS are word lists on purpose
    "${PIN_LOADGEN[@]}" $LOADGEN --endpoint "http://$endpoint" --rate 0 --duration "$DURATION" $LOADGEN_ARGS \
        >"$WORK/$name.report" 2>"$WORK/$name.progress"
    after=$(cpu_ticks "$SERVER_PID")
    children_cpu_seconds >"$WORK/loadgen.after"
    local rss
    rss=$(peak_rss_kib "$SERVER_PID")
    kill "$SERVER_PID"
    if [[ "$PIPELINE" == trace_store && "$name" == spanline ]]; then
        # Acknowledged spans are in the write-ahead log, not yet in Parquet: the store
        # commits them while it shuts down, and that CPU belongs to them too.
        while kill -0 "$SERVER_PID" 2>/dev/null; do
            after=$(cpu_ticks "$SERVER_PID" 2>/dev/null || echo "$after")
            rss=$(peak_rss_kib "$SERVER_PID" 2>/dev/null || echo "$rss")
            sleep 0.1
        done
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    echo "== $name"
    cat "$WORK/$name.report"
    local acked rate
    acked=$(awk '/spans acknowledged:/ { print $3 }' "$WORK/$name.report")
    rate=$(awk '/spans acknowledged:/ { gsub(/\(/, "", $4); print $4 }' "$WORK/$name.report")
    if [[ -z "$acked" || "$acked" -eq 0 ]]; then
        echo "$name acknowledged no spans; server log:" >&2
        tail -20 "$WORK/$name.log" >&2
        return 1
    fi
    local loadgen_cpu
    loadgen_cpu=$(awk 'NR == FNR { b = $1; next } { print $1 - b }' "$WORK/loadgen.before" "$WORK/loadgen.after")
    awk -v n="$name" -v r="$rate" -v t=$((after - before)) -v hz="$CLK_TCK" -v a="$acked" -v k="$rss" -v l="$loadgen_cpu" \
        'BEGIN { printf "%s %.0f %.3f %.1f %.3f\n", n, r, t / hz * 1e6 / a, k / 1024, l * 1e6 / a }' >>"$WORK/results"
}

run_spanline() {
    local processors="[batch]" exporter="nop" exporter_config="{}" extra=""
    case "$PIPELINE" in
        nop) ;;
        trace_store)
            exporter=trace_store
            processors="${PROCESSORS:-[]}"
            exporter_config="{ url: file://$WORK/store, wal_dir: $WORK/wal }"
            ;;
        tail_sampling)
            processors="[tail_sampling, batch]"
            extra="  tail_sampling:
    policies:
      - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
      - { name: slow, type: latency, latency: { threshold_ms: 1000 } }
      - { name: premium, type: tenant, tenant: { tenants: [tenant-0], policies: [ { name: p300, type: latency, latency: { threshold_ms: 300 } } ] } }
      - { name: baseline, type: probabilistic, probabilistic: { sampling_percentage: 5 } }"
            ;;
        *) echo "PIPELINE must be nop, trace_store or tail_sampling, got $PIPELINE" >&2; return 2 ;;
    esac
    cat >"$WORK/bench.yaml" <<EOF
receivers: { otlp: { protocols: { grpc: { endpoint: $SPANLINE_GRPC } } } }
processors:
  batch: {}
$extra
exporters:
  $exporter: $exporter_config
service:
  pipelines: { traces: { receivers: [otlp], processors: $processors, exporters: [$exporter] } }
  telemetry: { metrics: { address: $SPANLINE_METRICS } }
EOF
    measure spanline "$SPANLINE_GRPC" "$TARGET_DIR/release/spanline" run --config "$WORK/bench.yaml"
    if [[ "$PIPELINE" == trace_store ]]; then
        local bytes spans
        bytes=$(du -sb "$WORK/store/spans" "$WORK/store/traces" | awk '{ t += $1 } END { print t }')
        spans=$(awk '/spans acknowledged:/ { print $3 }' "$WORK/spanline.report")
        echo "stored: $bytes bytes in spans/ and traces/ for $spans spans = $(awk -v b="$bytes" -v s="$spans" 'BEGIN { printf "%.1f", b / s }') bytes per span"
    fi
}

run_rotel() {
    local agent
    # No venv yet is not an error (find fails on a missing directory, and pipefail would stop here).
    agent=$(find "$ROTEL_VENV" -path '*/site-packages/rotel/rotel-agent' 2>/dev/null | head -1 || true)
    if [[ -z "$agent" ]]; then
        python3 -m venv "$ROTEL_VENV"
        "$ROTEL_VENV/bin/pip" install --quiet rotel
        agent=$(find "$ROTEL_VENV" -path '*/site-packages/rotel/rotel-agent' | head -1)
    fi
    measure rotel "$ROTEL_GRPC" "$agent" start --exporter blackhole \
        --otlp-grpc-endpoint "$ROTEL_GRPC" --otlp-http-endpoint "$ROTEL_HTTP" \
        --pid-file "$WORK/rotel.pid" --log-file "$WORK/rotel-agent.log"
}

# Both halves use the release binary: as the server, and as the default loadgen.
if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --release
elif [[ -n "$(find src Cargo.toml Cargo.lock -newer "$TARGET_DIR/release/spanline" 2>/dev/null | head -1)" ]] \
    || [[ ! -x "$TARGET_DIR/release/spanline" ]]; then
    # A binary older than the sources (say, in ./target while builds go to $CARGO_TARGET_DIR)
    # would measure some other commit without a word.
    echo "SKIP_BUILD=1 but $TARGET_DIR/release/spanline is missing or older than the sources;" \
        "build it, or set CARGO_TARGET_DIR to where it was built" >&2
    exit 1
fi
case "$ONLY" in
    spanline) run_spanline ;;
    rotel) run_rotel ;;
    all) run_spanline; run_rotel ;;
    *) echo "ONLY must be spanline, rotel or all, got $ONLY" >&2; exit 2 ;;
esac

echo
echo "OTLP gRPC -> $PIPELINE pipeline, ${DURATION} per server, loadgen --rate 0 $LOADGEN_ARGS"
awk 'BEGIN { printf "%-10s %14s %16s %14s %20s\n", "server", "spans/s acked", "CPU us/span", "peak RSS MiB", "loadgen CPU us/span" }
     { printf "%-10s %14s %16s %14s %20s\n", $1, $2, $3, $4, $5; cpu[$1] = $3 }
     END { if (cpu["spanline"] > 0 && cpu["rotel"] > 0)
               printf "CPU per span, spanline / rotel: %.2f\n", cpu["spanline"] / cpu["rotel"] }' "$WORK/results"
