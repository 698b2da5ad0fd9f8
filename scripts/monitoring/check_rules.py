"""Checks of the alert rules beyond promtool's syntax check.

Usage: check_rules.py RULES.yaml TESTS.yaml RUNBOOKS.md

- every alert has a severity label and summary, description, runbook_url
  annotations; the runbook_url anchor is a heading of RUNBOOKS.md, and every
  alert heading there names an existing alert;
- every alert has a promtool unit test in which it fires and one in which it
  does not;
- every metric and label an expression uses is in the metrics contract
  (scripts/monitoring/promql.py).
"""

import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
import promql  # noqa: E402


def anchors(markdown):
    """GitHub-style anchors of the level-2 headings of MARKDOWN."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("## "):
            title = line[3:].strip().lower()
            out.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return out


def main():
    rules_path, tests_path, runbooks_path = map(Path, sys.argv[1:4])
    rules = yaml.safe_load(rules_path.read_text())
    tests = yaml.safe_load(tests_path.read_text())
    book = anchors(runbooks_path.read_text())
    problems = []

    alerts = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            for p in promql.check_expr(rule["expr"]):
                problems.append(f"{name}: {p}")
            if "alert" not in rule:
                continue
            alerts[name] = rule
            if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                problems.append(f"{name}: severity label must be critical, warning or info")
            ann = rule.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not ann.get(key):
                    problems.append(f"{name}: missing annotation {key}")
            anchor = ann.get("runbook_url", "").rpartition("#")[2]
            if anchor != name.lower() or anchor not in book:
                problems.append(f"{name}: runbook_url anchor #{anchor} is not the heading "
                                f"'## {name}' of {runbooks_path}")
    for a in sorted(book):
        if a.startswith("shardmesh") and a not in {n.lower() for n in alerts}:
            problems.append(f"{runbooks_path}: runbook '{a}' has no alert")

    fires, quiet = set(), set()
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    for name in sorted(alerts):
        if name not in fires:
            problems.append(f"{name}: no unit test in which it fires")
        if name not in quiet:
            problems.append(f"{name}: no unit test in which it stays quiet")

    for p in problems:
        print(f"FAIL {p}")
    print(f"{len(alerts)} alerts checked: severity, annotations, runbooks, metric names, "
          f"fire and no-fire unit tests; {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
