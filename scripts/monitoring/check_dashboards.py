"""Structural check of the Grafana dashboards.

Usage: check_dashboards.py DIR [--rules-out FILE]

For every DIR/*.json: unique uid across dashboards; unique panel ids (rows
and nested panels included) and a gridPos on each, inside the 24-column
grid, no two panels overlapping; a `datasource` variable of
type datasource for Prometheus; `namespace` and `pod` variables (and
`service` on mesh dashboards) of type query that use it; every panel and
query uses `${datasource}` (no data source hard-coded); every panel that
shows data sets a unit; every variable is used by some query; every
expression's metrics and labels are in the metrics contract. With
--rules-out, writes every panel query as a recording rule so that promtool
parses each one (Grafana variables substituted).
"""

import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
import promql  # noqa: E402

DS_REF = "${datasource}"
MESH_VARS = ("namespace", "service", "pod")


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def uses_datasource(ds):
    return isinstance(ds, dict) and ds.get("uid") == DS_REF


def check(path, problems, rules, uids):
    d = json.loads(path.read_text())
    name = path.name

    def fail(msg):
        problems.append(f"{name}: {msg}")

    for key in ("uid", "title", "panels", "templating", "schemaVersion"):
        if key not in d:
            fail(f"missing {key}")
    if d.get("uid") in uids:
        fail(f"uid {d.get('uid')} also used by {uids[d['uid']]}")
    uids[d.get("uid")] = name

    variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        fail("no `datasource` variable of type datasource querying prometheus")
    # The operator has no services; every mesh dashboard filters by service too.
    wanted = ("namespace", "pod") if d.get("uid") == "shardmesh-operator" else MESH_VARS
    for v in wanted:
        var = variables.get(v)
        if not var:
            fail(f"no `{v}` variable")
        elif var.get("type") != "query" or not uses_datasource(var.get("datasource")):
            fail(f"variable `{v}` is not a query on ${{datasource}}")

    ids, exprs = {}, []
    for p in walk_panels(d.get("panels", [])):
        title = p.get("title", "?")
        pid = p.get("id")
        if pid is None:
            fail(f"panel '{title}' has no id")
        elif pid in ids:
            fail(f"panel id {pid} of '{title}' also used by '{ids[pid]}'")
        else:
            ids[pid] = title
        gp = p.get("gridPos", {})
        if not all(k in gp for k in ("x", "y", "w", "h")):
            fail(f"panel '{title}' has no complete gridPos")
        if p.get("type") == "row":
            continue
        if not uses_datasource(p.get("datasource")):
            fail(f"panel '{title}' does not use ${{datasource}}: {p.get('datasource')}")
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if not unit:
            fail(f"panel '{title}' sets no unit")
        targets = p.get("targets") or []
        if not targets:
            fail(f"panel '{title}' has no query")
        refids = [t.get("refId") for t in targets]
        if len(set(refids)) != len(refids):
            fail(f"panel '{title}' repeats a refId: {refids}")
        for t in targets:
            if "datasource" in t and not uses_datasource(t["datasource"]):
                fail(f"panel '{title}' query {t.get('refId')} does not use ${{datasource}}")
            expr = t.get("expr", "")
            if not expr.strip():
                fail(f"panel '{title}' query {t.get('refId')} has no expr")
                continue
            if '$namespace' not in expr:
                fail(f"panel '{title}' query {t.get('refId')} ignores $namespace")
            for prob in promql.check_expr(promql.substitute_grafana(expr)):
                fail(f"panel '{title}': {prob}")
            exprs.append(expr)
            rules.append({
                "record": f"dashboard:{d.get('uid', 'x').replace('-', '_')}:panel{pid}_{t.get('refId')}",
                "expr": promql.substitute_grafana(expr),
            })
    # Layout: inside the 24-column grid, and no two top-level panels overlap.
    boxes = []
    for p in d.get("panels", []):
        gp = p.get("gridPos", {})
        if not all(k in gp for k in ("x", "y", "w", "h")):
            continue
        if gp["x"] < 0 or gp["x"] + gp["w"] > 24:
            fail(f"panel '{p.get('title')}' leaves the 24-column grid: {gp}")
        for title, other in boxes:
            if (gp["x"] < other["x"] + other["w"] and other["x"] < gp["x"] + gp["w"]
                    and gp["y"] < other["y"] + other["h"] and other["y"] < gp["y"] + gp["h"]):
                fail(f"panel '{p.get('title')}' overlaps '{title}'")
        boxes.append((p.get("title"), gp))
    queries = " ".join(exprs) + " " + " ".join(
        json.dumps(v.get("query", "")) for v in variables.values())
    for v in variables:
        if v != "datasource" and f"${v}" not in queries:
            fail(f"variable `{v}` is used by no query")
    return len(ids)


def main():
    directory = Path(sys.argv[1])
    out = sys.argv[sys.argv.index("--rules-out") + 1] if "--rules-out" in sys.argv else None
    problems, rules, uids = [], [], {}
    files = sorted(directory.glob("*.json"))
    if not files:
        problems.append(f"no dashboards in {directory}")
    panels = sum(check(f, problems, rules, uids) for f in files)
    if out:
        Path(out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard-panels", "rules": rules}]},
                                            sort_keys=False, width=1000))
    for p in problems:
        print(f"FAIL {p}")
    print(f"{len(files)} dashboards, {panels} panels, {len(rules)} queries checked; {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
