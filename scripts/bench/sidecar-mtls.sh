#!/usr/bin/env bash
# The mTLS row of docs/benchmarks/sidecar.md: the full path
# wrk -> A outbound -> (pooled h2) -> B inbound -> app, once with h2c and once
# with mutual TLS 1.3 on the A -> B hop, alternating in one run; then the
# handshake rate of B's inbound port (full TLS 1.3 handshakes with a client
# certificate, `openssl s_time -new`).
#
# Usage: scripts/bench/sidecar-mtls.sh     (about 2 minutes with 3 rounds)
# Environment: ROUNDS=3, DURATION=10s, CONNS=64, WRK_CPU=0, PROXY_CPU=1.
# Needs wrk and openssl (openssl only makes the benchmark's certificates and
# drives the handshake-rate client; the mesh itself uses rustls).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/common.sh
source scripts/bench/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
WRK_CPU=${WRK_CPU:-0}
PROXY_CPU=${PROXY_CPU:-1}
BENCH=scripts/bench
BIN=target/release
cargo build --release -q -p shardmesh-sidecar -p shardmesh-e2e
RUN=target/bench/mtls-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN/pki"
PIDS=()
trap stop_all EXIT

# --- certificates: one CA, one leaf per sidecar --------------------------------
P=$RUN/pki
openssl ecparam -name prime256v1 -genkey -noout -out "$P/ca.key" 2>/dev/null
openssl req -x509 -new -key "$P/ca.key" -subj "/CN=bench CA" -days 1 -out "$P/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
for who in client bench; do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$P/$who.key" -subj "/CN=$who" -out "$P/$who.csr" 2>/dev/null
    printf 'subjectAltName=URI:spiffe://bench.local/ns/bench/sa/%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' "$who" >"$P/$who.ext"
    openssl x509 -req -in "$P/$who.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial \
        -days 1 -out "$P/$who.crt" -extfile "$P/$who.ext" 2>/dev/null
done
tls_section() {
    printf 'tls:\n  trustDomain: bench.local\n  caFile: %s\n  certFile: %s\n  keyFile: %s\n' \
        "$PWD/$P/ca.crt" "$PWD/$P/$1.crt" "$PWD/$P/$1.key"
}
cp "$BENCH/sidecar-a.yaml" "$RUN/a-plain.yaml"
cp "$BENCH/sidecar-b.yaml" "$RUN/b-plain.yaml"
{ cat "$BENCH/sidecar-a.yaml"; tls_section client; } >"$RUN/a-tls.yaml"
{ cat "$BENCH/sidecar-b.yaml"; tls_section bench; } >"$RUN/b-tls.yaml"

for port in 18080 18090 18091 18092 18093 18095 18096 18097 18098; do
    port_free "$port"
done
start upstream "$BIN/bench-upstream" --listen 127.0.0.1:18080
wait_port 18080
printf 'round\tcase\treq_s\tp50_us\tp99_us\terrors\n' >"$RUN/results.tsv"
for round in $(seq "$ROUNDS"); do
    for mode in plain tls; do
        start "b-$mode-r$round" env SHARDMESH_WORKER_THREADS=1 "$BIN/shardmesh-sidecar" --config "$RUN/b-$mode.yaml"
        B=$LAST_PID
        wait_port 18091
        start "a-$mode-r$round" env SHARDMESH_WORKER_THREADS=1 "$BIN/shardmesh-sidecar" --config "$RUN/a-$mode.yaml"
        A=$LAST_PID
        wait_port 18095
        wrk_run /dev/null "$CONNS" 2s 18095
        out=$RUN/wrk-$mode-r$round.txt
        wrk_run "$out" "$CONNS" "$DURATION" 18095
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$(wrk_field "$out" req_s)" \
            "$(wrk_field "$out" p50)" "$(wrk_field "$out" p99)" "$(wrk_field "$out" errors)" \
            | tee -a "$RUN/results.tsv"
        if [ "$mode" = tls ] && [ "$round" = 1 ]; then
            # Full handshakes (no resumption) against B's inbound port for 5 s.
            taskset -c "$WRK_CPU" openssl s_time -connect 127.0.0.1:18091 -new -time 5 \
                -cert "$P/client.crt" -key "$P/client.key" -CAfile "$P/ca.crt" >"$RUN/handshakes.txt" 2>&1 || true
            grep -E "connections in|connections/user sec" "$RUN/handshakes.txt" | head -2 || true
            curl -s http://127.0.0.1:18092/metrics | grep -E '^shardmesh_tls_handshake' >"$RUN/b-tls-metrics.txt" || true
        fi
        stop_pid "$A"
        stop_pid "$B"
    done
done
echo "results in $RUN/results.tsv"
awk -F'\t' 'NR > 1 { n[$2]++; s[$2] += $3 } END { for (m in n) printf "%s mean req/s %.0f over %d rounds\n", m, s[m] / n[m], n[m] }' "$RUN/results.tsv"
