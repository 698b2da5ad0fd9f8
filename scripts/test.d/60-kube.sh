#!/usr/bin/env bash
# A real Kubernetes control plane: builds (or reuses from the cache outside
# the checkout) the pinned upstream kube-apiserver, controller-manager,
# scheduler, kubectl, etcd and Helm (scripts/kube/build), starts them on
# 127.0.0.1 (scripts/kube/cluster up), checks the chart's rendered objects
# offline with the Helm CLI (helm_template_check.py), runs the e2e tests that need them
# (SHARDMESH_KUBE_E2E=1: the chart with the real Helm CLI, the operator with
# the chart's RBAC, the cluster test; the tracing test against the Jaeger
# of the same cache), and always stops everything.
set -euo pipefail
cd "${SHARDMESH_ROOT:-$(dirname "$0")/../..}"
export SHARDMESH_ROOT="$PWD"
source scripts/lib/common.sh
t0=$(date +%s)

if ! command -v go >/dev/null 2>&1; then
    echo "skipped: no Go toolchain on PATH (scripts/kube/build needs go1.26+ to build Kubernetes from the Go module proxy)"
    exit 0
fi
if [ "$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1; then
    apt_install openssl curl python3 ca-certificates
fi
for tool in openssl curl python3; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool missing and cannot be installed"; exit 1; }
done

bin=$(scripts/kube/build)
t_build=$(date +%s)
echo "kube components ready in $(( t_build - t0 ))s"

# The chart rendered offline by the real Helm CLI (`helm template`, with and
# without monitoring.coreos.com/v1 in .Capabilities): every object valid
# against the Kubernetes schemas (strict), hardening, RBAC = docs/rbac.md,
# the monitors' content. kube_chart.rs then installs it for real.
pip_install pyyaml kubernetes-validate
chart=charts/shardmesh
"$(venv_python)" scripts/monitoring/helm_template_check.py "$bin/helm" "$chart" \
    "$chart/ci/all-on-values.yaml" "$chart/files/rules/shardmesh.rules.yaml"

# The release binaries and the test binaries (no-ops after 10-rust.sh),
# before the control plane starts.
cargo build --workspace --release --locked --bins
cargo test -p shardmesh-e2e --locked --no-run --test cluster --test kube_chart --test kube_operator --test tracing
t_rust=$(date +%s)

export SHARDMESH_KUBE_DIR="$PWD/target/kube/ci"
trap 'scripts/kube/cluster down || true' EXIT
eval "$(scripts/kube/cluster up)"
t_up=$(date +%s)
echo "control plane up in $(( t_up - t_rust ))s"

export SHARDMESH_KUBE_E2E=1 SHARDMESH_E2E_PREBUILT=1
cargo test -p shardmesh-e2e --locked --test cluster --test kube_chart --test kube_operator --test tracing \
    -- --nocapture --test-threads=1
echo "kube stage: kube components $(( t_build - t0 ))s, Rust builds $(( t_rust - t_build ))s, control plane $(( t_up - t_rust ))s, tests $(( $(date +%s) - t_up ))s"
