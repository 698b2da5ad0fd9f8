#!/usr/bin/env bash
# Kubernetes with pods: the control plane, the node agent, kube-proxy
# (nftables) and CoreDNS inside one network namespace, the node netns
# (scripts/kube/cluster in netns mode; scripts/kube/netns), and the e2e
# suites that need running pods, run inside that namespace with
# SHARDMESH_KUBE_E2E=1. Skips with the reason without Go, root or network
# namespaces; always tears everything down.
set -euo pipefail
cd "${SHARDMESH_ROOT:-$(dirname "$0")/../..}"
export SHARDMESH_ROOT="$PWD"
source scripts/lib/common.sh
t0=$(date +%s)

# The suites of this stage, in order; each runs when its file exists.
suites=(kube_net kube_node kube_bank)

skip() { echo "65-kube-pods: SKIP: $*"; exit 0; }
command -v go >/dev/null 2>&1 \
    || skip "no Go toolchain on PATH (scripts/kube/build needs go1.26+ to build Kubernetes, kube-proxy and CoreDNS)"
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, a bridge, nftables)"
apt_install openssl curl python3 ca-certificates iproute2 nftables util-linux
why=$(scripts/kube/netns check) || skip "$why"

tests=()
present=()
for s in "${suites[@]}"; do
    [ -f "e2e/tests/$s.rs" ] && tests+=(--test "$s") && present+=("$s")
done
[ ${#tests[@]} -gt 0 ] || skip "none of the suites (${suites[*]}) exists"

scripts/kube/build >/dev/null
t_build=$(date +%s)
echo "65-kube-pods: kube components ready in $(( t_build - t0 ))s"

# Release binaries (sidecar, operator, bank, the node agent; no-ops after
# 10-rust.sh) and the test binaries, before anything starts: the tests run
# offline inside the namespace.
cargo build --workspace --release --locked --bins
cargo test -p shardmesh-e2e --locked --no-run "${tests[@]}"
t_rust=$(date +%s)

export SHARDMESH_KUBE_DIR="$PWD/target/kube/pods"
export SHARDMESH_KUBE_NETNS="${SHARDMESH_KUBE_NETNS:-shardmesh-node}"
trap 'scripts/kube/cluster down || true' EXIT
scripts/kube/cluster down >/dev/null 2>&1 || true  # leftovers of an interrupted run
scripts/kube/cluster up >/dev/null
t_up=$(date +%s)
echo "65-kube-pods: cluster up in netns $SHARDMESH_KUBE_NETNS in $(( t_up - t_rust ))s"

ip netns exec "$SHARDMESH_KUBE_NETNS" env SHARDMESH_KUBE_E2E=1 SHARDMESH_E2E_PREBUILT=1 \
    CARGO_NET_OFFLINE=true cargo test -p shardmesh-e2e --locked "${tests[@]}" \
    -- --nocapture --test-threads=1
t_tests=$(date +%s)
scripts/kube/cluster down >/dev/null
trap - EXIT
t_down=$(date +%s)
# The node agent's own tests start, kill and restart their agent, so they
# get a throwaway node netns and control plane of their own.
scripts/kube/node-test
echo "65-kube-pods: kube components $(( t_build - t0 ))s, Rust builds $(( t_rust - t_build ))s," \
    "cluster up $(( t_up - t_rust ))s, tests (${present[*]}) $(( t_tests - t_up ))s," \
    "teardown $(( t_down - t_tests ))s, node agent tests $(( $(date +%s) - t_down ))s"
