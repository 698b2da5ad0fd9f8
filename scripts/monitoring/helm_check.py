"""helm lint and helm package through the real Helm library (PyPI helm-sdkpy).

Usage: helm_check.py CHART OUTDIR [VALUES.yaml ...]

Lints CHART with its default values, then once per VALUES file. helm-sdkpy's
Lint takes no values, so each values file is deep-merged over the chart's
values.yaml (as helm does) into a copy of the chart, and the copy is linted.
Any message of severity warning or error fails; every message is printed
with its path (helm-sdkpy returns the error text as an empty object). Then a
copy of the chart with a value that breaks values.schema.json must fail lint
(proof that the schema is enforced and that failures are seen), and
`helm package` must produce an archive holding the chart's files.
"""

import asyncio
import copy
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import helm_sdkpy as helm
import yaml

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def merge(base, over):
    """Deep merge like helm's value coalescing: maps merge, the rest replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


def lint(config, chart_dir):
    """Returns (problems, lines): problems counts warnings and errors."""
    result = asyncio.run(helm.Lint(config).run(str(chart_dir)))
    lines, problems = [], 0
    for msg in result.get("Messages") or []:
        sev = msg.get("Severity", 0)
        lines.append(f"  {SEVERITY.get(sev, sev)}: {msg.get('Path')}")
        if sev >= 2 or sev == 0:
            problems += 1
    if result.get("Errors"):
        problems = max(problems, len(result["Errors"]))
    if result.get("TotalChartsLinted") != 1:
        lines.append(f"  linted {result.get('TotalChartsLinted')} charts, expected 1")
        problems += 1
    return problems, lines


def chart_with_values(chart, values_file, workdir):
    """A copy of CHART whose values.yaml is the defaults merged with VALUES_FILE."""
    dest = Path(workdir) / chart.name
    shutil.copytree(chart, dest)
    defaults = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    overlay = yaml.safe_load(Path(values_file).read_text()) or {}
    (dest / "values.yaml").write_text(yaml.safe_dump(merge(defaults, overlay), sort_keys=False))
    return dest


def main():
    chart, outdir = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    values_files = sys.argv[3:]
    config = helm.Configuration()
    print(f"helm library: {helm.get_version()}")
    failed = False

    cases = [("default values", chart)]
    tmp = tempfile.TemporaryDirectory()
    for n, vf in enumerate(values_files):
        cases.append((f"values {vf}", chart_with_values(chart, vf, Path(tmp.name) / str(n))))
    for label, path in cases:
        problems, lines = lint(config, path)
        print(f"helm lint ({label}): {problems} warnings/errors")
        print("\n".join(lines))
        failed |= problems > 0

    # Negative control: a schema violation must be reported as an error.
    bad = Path(tmp.name) / "bad.yaml"
    bad.write_text(yaml.safe_dump({"operator": {"replicas": 0}}))
    problems, lines = lint(config, chart_with_values(chart, bad, Path(tmp.name) / "bad"))
    if problems == 0:
        print("helm lint of a chart with operator.replicas=0 reported nothing: schema not enforced")
        failed = True
    else:
        print(f"negative control: operator.replicas=0 is rejected ({problems} errors), as it must be")

    outdir.mkdir(parents=True, exist_ok=True)
    archive = asyncio.run(helm.Package(config).run(str(chart), dest_dir=str(outdir)))
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    want = [
        "shardmesh/Chart.yaml",
        "shardmesh/values.yaml",
        "shardmesh/values.schema.json",
        "shardmesh/templates/deployment.yaml",
        "shardmesh/files/rules/shardmesh.rules.yaml",
    ]
    want += [f"shardmesh/files/dashboards/{p.name}" for p in (chart / "files/dashboards").glob("*.json")]
    want += [f"shardmesh/crds/{p.name}" for p in (chart / "crds").glob("*.yaml")]
    missing = [w for w in want if w not in names]
    leaked = sorted(n for n in names if n.startswith("shardmesh/ci/"))
    print(f"helm package: {archive} ({len(names)} files)")
    if missing:
        print(f"  missing from the archive: {missing}")
        failed = True
    if leaked:
        print(f"  ci/ files leaked into the archive: {leaked}")
        failed = True
    tmp.cleanup()
    print(json.dumps({"helm_check": "failed" if failed else "passed"}))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
