#!/usr/bin/env bash
# Live monitoring check: a real Prometheus scrapes a local mesh (sidecars from
# target/release, built by stage 10) under load and faults; every PromQL
# expression of every dashboard panel/variable and alert rule must return
# data through the HTTP API (scripts/monitoring/live_check.py). Bounded: the
# whole stage is killed after 180 s.
set -euo pipefail
cd "${SHARDMESH_ROOT:-$(dirname "$0")/../..}"
export SHARDMESH_ROOT="$PWD"
source scripts/lib/common.sh

sidecar=target/release/shardmesh-sidecar
if [ ! -x "$sidecar" ]; then
    echo "SKIP prometheus-live: $sidecar is not built (stage 10 builds it with cargo build --release --bins)"
    exit 0
fi
apt_install prometheus
pip_install pyyaml
py=$(venv_python)
work=target/prometheus-live
rm -rf "$work"
mkdir -p "$work"
if ! timeout --kill-after=10 180 "$py" scripts/monitoring/live_check.py "$sidecar" "$work" --seconds 40; then
    echo "live check failed; process logs in $work/*.log"
    exit 1
fi
