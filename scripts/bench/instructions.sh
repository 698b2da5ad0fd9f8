#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: a figure
# that, unlike requests/s and CPU time, does not move with what else runs on a
# shared machine. User space only (the kernel's share is the same syscalls for
# every proxy here: see docs/benchmarks/sidecar.md). Run by hand, after
# scripts/bench/sidecar.sh has installed and built everything.
#
# Usage: scripts/bench/instructions.sh [CASE...]
#   CASE: upstream l4-relay nginx haproxy envoy sidecar-hop sidecar-outbound (default: all)
#   (upstream: bench-upstream itself, wrk straight at it: hyper's HTTP/1.1 server cost;
#   l4-relay: the byte relay with no HTTP, tokio's share of any proxy built on it)
# Each case: the proxy under callgrind, counters zeroed after a warm-up, then
# wrk -t1 -c8 -d10s, a dump, and scripts/bench/callgrind_top.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
export SHARDMESH_ROOT="$PWD"
source scripts/lib/common.sh
# Symbols for perf/callgrind and fewer codegen units than the test builds use.
export CARGO_PROFILE_RELEASE_DEBUG=1 CARGO_PROFILE_RELEASE_CODEGEN_UNITS=4

BENCH=scripts/bench
BIN=target/release
apt_install valgrind wrk nginx haproxy
PY=$(venv_python)
ENVOY=$("$PY" -c 'import envoy._bin, os; print(os.path.join(os.path.dirname(envoy._bin.__file__), "envoy"))' 2>/dev/null || true)
# Always: a no-op when the binaries are current, and never a stale measurement
# after a change (the profile above differs from CI's, so both rebuild).
cargo build --release -q -p shardmesh-sidecar -p shardmesh-e2e

RUN=target/bench/instructions-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN/nginx/tmp"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT

# wait_ok URL [HEADERS...]: waits up to 180 s (valgrind starts slowly) for a 200.
wait_ok() {
    local url=$1
    shift
    for _ in $(seq 600); do
        [ "$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$@" "$url")" = 200 ] && return 0
        sleep 0.3
    done
    echo "no 200 from $url" >&2
    return 1
}

# count CASE PORT PID [wrk args...]: zero, load, dump, report.
count() {
    local name=$1 port=$2 pid=$3
    shift 3
    wait_ok "http://127.0.0.1:$port/bench" -H 'x-shardmesh-service: bench' "$@" || return 0
    callgrind_control -z "$pid" >/dev/null
    timeout 60 taskset -c 0 wrk -t1 -c8 -d10s -H 'x-shardmesh-service: bench' "$@" \
        "http://127.0.0.1:$port/bench" >"$RUN/wrk-$name.txt"
    callgrind_control -d "$pid" >/dev/null
    sleep 1
    local n dump
    n=$(awk '/requests in/ { print $1 }' "$RUN/wrk-$name.txt")
    dump=$(ls -t "$RUN/$name.cg".* | head -1)
    echo "== $name: $n requests"
    "$PY" "$BENCH/callgrind_top.py" "$dump" "$n" 25 | tee "$RUN/$name.txt"
}

CG=(valgrind --tool=callgrind)
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(upstream l4-relay nginx haproxy envoy sidecar-hop sidecar-outbound)

# The app every proxy forwards to; the upstream case runs its own copy on 18088.
taskset -c 1 "$BIN/bench-upstream" --listen 127.0.0.1:18080 >"$RUN/upstream.log" 2>&1 &
UPSTREAM=$!
for c in "${cases[@]}"; do
    PIDS=()
    case $c in
        upstream)
            "${CG[@]}" --callgrind-out-file="$RUN/upstream.cg" "$BIN/bench-upstream" --listen 127.0.0.1:18088 >"$RUN/upstream-cg.log" 2>&1 &
            PIDS+=($!)
            count upstream 18088 $! ;;
        l4-relay)
            "${CG[@]}" --callgrind-out-file="$RUN/l4-relay.cg" "$BIN/l4-relay" --listen 127.0.0.1:18085 --upstream 127.0.0.1:18080 >"$RUN/l4-relay.log" 2>&1 &
            PIDS+=($!)
            count l4-relay 18085 $! ;;
        nginx)
            sed 's/master_process on;/master_process off;/' "$BENCH/nginx.conf" >"$RUN/nginx/nginx.conf"
            "${CG[@]}" --callgrind-out-file="$RUN/nginx.cg" nginx -p "$PWD/$RUN/nginx" -c "$PWD/$RUN/nginx/nginx.conf" -e stderr 2>"$RUN/nginx.log" &
            PIDS+=($!)
            count nginx 18081 $! ;;
        haproxy)
            "${CG[@]}" --callgrind-out-file="$RUN/haproxy.cg" haproxy -db -f "$BENCH/haproxy.cfg" >"$RUN/haproxy.log" 2>&1 &
            PIDS+=($!)
            count haproxy 18082 $! ;;
        envoy)
            [ -x "$ENVOY" ] || { echo "no envoy; run scripts/bench/sidecar.sh first" >&2; continue; }
            "${CG[@]}" --callgrind-out-file="$RUN/envoy.cg" "$ENVOY" -c "$BENCH/envoy.yaml" --concurrency 1 --disable-hot-restart --log-level warn >"$RUN/envoy.log" 2>&1 &
            PIDS+=($!)
            count envoy 18083 $! ;;
        sidecar-hop)
            SHARDMESH_WORKER_THREADS=1 "${CG[@]}" --callgrind-out-file="$RUN/sidecar-hop.cg" "$BIN/shardmesh-sidecar" --config "$BENCH/sidecar-b.yaml" >"$RUN/sidecar-hop.log" 2>&1 &
            PIDS+=($!)
            count sidecar-hop 18091 $! ;;
        sidecar-outbound)
            SHARDMESH_WORKER_THREADS=1 taskset -c 1 "$BIN/shardmesh-sidecar" --config "$BENCH/sidecar-b.yaml" >"$RUN/sidecar-b.log" 2>&1 &
            PIDS+=($!)
            SHARDMESH_WORKER_THREADS=1 "${CG[@]}" --callgrind-out-file="$RUN/sidecar-outbound.cg" "$BIN/shardmesh-sidecar" --config "$BENCH/sidecar-a.yaml" >"$RUN/sidecar-outbound.log" 2>&1 &
            PIDS+=($!)
            count sidecar-outbound 18095 $! -H 'x-shardmesh-key: bench-key' ;;
        *) echo "unknown case $c" >&2 ;;
    esac
    cleanup
done
kill "$UPSTREAM"
echo "dumps and reports in $RUN"
