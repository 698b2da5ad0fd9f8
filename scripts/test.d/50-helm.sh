#!/usr/bin/env bash
# The Helm chart: appVersion tracks the crate version, the chart's CRDs equal
# the generated ones, the sidecar defaults match the CRD, the real Helm
# library (PyPI helm-sdkpy) lints the chart with default values and with
# every toggle on (no errors, no warnings) and packages it, and installs it
# into an in-memory API server whose objects are schema-validated.
set -euo pipefail
cd "${SHARDMESH_ROOT:-$(dirname "$0")/../..}"
export SHARDMESH_ROOT="$PWD"
source scripts/lib/common.sh
chart=charts/shardmesh

pip_install --ignore-requires-python helm-sdkpy pyyaml jsonschema kubernetes-validate
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

# 5. helm install into an in-memory API server (with and without the
#    Prometheus Operator's API): the .Capabilities gate, strict Kubernetes
#    schema validation of every object, hardening, RBAC, monitors.
"$py" scripts/monitoring/helm_install_check.py "$chart" "$chart/ci/all-on-values.yaml" \
    "$chart/files/rules/shardmesh.rules.yaml"
