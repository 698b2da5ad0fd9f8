#!/usr/bin/env bash
# Monitoring, statically: promtool checks and unit-tests the alert rules
# (every alert fires and stays quiet in some test), the rules' metrics,
# labels and runbooks are checked, and the Grafana dashboards pass a
# structural check whose PromQL promtool also parses.
set -euo pipefail
cd "${SHARDMESH_ROOT:-$(dirname "$0")/../..}"
export SHARDMESH_ROOT="$PWD"
source scripts/lib/common.sh
apt_install prometheus
pip_install pyyaml ruff
py=$(venv_python)
rules=charts/shardmesh/files/rules/shardmesh.rules.yaml

# The Python of these checks themselves: pyflakes, pycodestyle, bugbear.
"$(dirname "$py")/ruff" check --isolated --quiet --select E,F,W,B --line-length 120 scripts/monitoring

promtool check rules "$rules"
promtool test rules monitoring/tests/alerts.test.yaml
"$py" scripts/monitoring/check_rules.py "$rules" monitoring/tests/alerts.test.yaml docs/alerts.md

# Dashboards: structure, then every panel query parsed by promtool (as the
# expression of a recording rule in a scratch rule file).
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$py" scripts/monitoring/check_dashboards.py charts/shardmesh/files/dashboards --rules-out "$scratch/panels.rules.yaml"
promtool check rules "$scratch/panels.rules.yaml"
# The committed JSON is what scripts/monitoring/dashboards.py generates.
"$py" scripts/monitoring/dashboards.py --check
