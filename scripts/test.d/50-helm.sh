#!/usr/bin/env bash
# The Helm chart, offline: appVersion tracks the crate version, the chart's
# CRDs equal the generated ones, the sidecar defaults match the CRD, and the
# real Helm library (PyPI helm-sdkpy) lints the chart with default values and
# with every toggle on (no errors, no warnings) and packages it.
# Rendering and checking every object (`helm template` + strict schemas,
# hardening, RBAC, monitors) needs the Helm CLI, which helm-sdkpy lacks: stage
# 60-kube runs it with the CLI it builds, then installs the chart into the
# real API server.
set -euo pipefail
cd "${SHARDMESH_ROOT:-$(dirname "$0")/../..}"
export SHARDMESH_ROOT="$PWD"
source scripts/lib/common.sh
chart=charts/shardmesh

pip_install --ignore-requires-python helm-sdkpy pyyaml jsonschema
py=$(venv_python)

# 1. appVersion == the workspace version in the root Cargo.toml.
"$py" - "$chart/Chart.yaml" <<'PY'
import sys, tomllib, yaml
crate = tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]["version"]
chart = yaml.safe_load(open(sys.argv[1]))
print(f"Cargo workspace version {crate}; chart appVersion {chart['appVersion']}, version {chart['version']}")
if str(chart["appVersion"]) != crate:
    sys.exit(f"Chart.yaml appVersion {chart['appVersion']!r} != workspace version {crate!r}: update {sys.argv[1]}")
PY

# 2. The chart's crds/ is an exact copy of crds/ (scripts/sync-crds).
shopt -s nullglob
src=(crds/*.yaml)
if [ ${#src[@]} -eq 0 ]; then
    echo "CRD drift check skipped: crds/ holds no generated CRD yet (operator's 'shardmesh-operator crd')"
else
    if ! diff -r --exclude='.*' crds "$chart/crds" >/tmp/shardmesh-crd-diff.$$ 2>&1; then
        head -40 /tmp/shardmesh-crd-diff.$$
        rm -f /tmp/shardmesh-crd-diff.$$
        echo "FAIL: $chart/crds differs from crds/: run scripts/sync-crds and commit"
        exit 1
    fi
    rm -f /tmp/shardmesh-crd-diff.$$
    echo "CRD drift check: $chart/crds equals crds/ (${#src[@]} files)"
fi

# 3. The chart's sidecar defaults are valid ShardedService resilience fields
#    and equal the CRD's defaults.
"$py" scripts/monitoring/check_chart_values.py "$chart" crds/shardedservice.yaml

# 4. helm lint (default + all toggles on), a negative control, helm package.
"$py" scripts/monitoring/helm_check.py "$chart" target/helm "$chart/ci/all-on-values.yaml"

