"""The Grafana dashboards, as code: writes charts/shardmesh/files/dashboards/*.json.

Usage: dashboards.py [--check]

The JSON files are generated from this script and committed (the chart embeds
them; users can import them). `--check` fails when the committed files differ
from what this script writes (scripts/test.d/55-promtool.sh runs it).

Variable conventions, shared by every dashboard:
- `datasource`: the Prometheus data source; every panel and query uses it.
- `namespace`, `pod`: the scrape's target labels (the sidecar reporting).
- `service`: the metric's own `service` label: the destination service for
  outbound series, the pod's own service for inbound ones.
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "charts/shardmesh/files/dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
# Matchers used inside f-strings (which cannot hold backslashes before 3.12).
OK = 'code!~"5.."'
MESH = 'reason!=""'
FAILFAST = 'reason=~"circuit-open|overloaded|retry-budget-exhausted"'
NO_OWNER = 'reason="no-owner"'
ALIVE = 'state="alive"'
UNHEALTHY = 'state=~"suspect|dead"'


def sel(*extra, service=True):
    """Label matchers for a sidecar metric, honouring the dashboard variables."""
    parts = ['namespace=~"$namespace"', 'pod=~"$pod"']
    if service:
        parts.append('service=~"$service"')
    parts.extend(extra)
    return "{" + ", ".join(parts) + "}"


def target(expr, legend="", ref="A", instant=False):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref}
    if instant:
        t["instant"] = True
        t["range"] = False
    return t


def panel(kind, title, unit, targets, w=12, h=8, description="", mappings=None, decimals=None):
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
        p["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    if mappings:
        p["fieldConfig"]["defaults"]["mappings"] = mappings
    if decimals is not None:
        p["fieldConfig"]["defaults"]["decimals"] = decimals
    return p


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"w": 24, "h": 1}, "panels": []}


def query_var(name, label, query, multi=True):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-var"},
        "definition": query,
        "refresh": 2,
        "includeAll": multi,
        "multi": multi,
        "allValue": ".+",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
    }


def mesh_vars():
    return [
        query_var("namespace", "Namespace", "label_values(shardmesh_requests_total, namespace)"),
        query_var("service", "Service",
                  'label_values(shardmesh_requests_total{namespace=~"$namespace"}, service)'),
        # Pods that serve or call the selected services.
        query_var("pod", "Pod (reporting sidecar)",
                  'label_values(shardmesh_requests_total{namespace=~"$namespace", service=~"$service"}, pod)'),
    ]


def dashboard(uid, title, description, variables, panels):
    ds_var = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "refresh": 1,
        "regex": "",
    }
    # Lay panels out left to right, wrapping at 24 columns; rows span the width.
    x = y = rowh = 0
    for i, p in enumerate(panels, start=1):
        p["id"] = i
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if p["type"] == "row" or x + w > 24:
            x, y, rowh = 0, y + rowh, 0
        p["gridPos"].update({"x": x, "y": y})
        x += w
        rowh = max(rowh, h)
        if p["type"] == "row":
            x, y, rowh = 0, y + h, 0
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["shardmesh"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "links": [{"title": "shardmesh", "type": "dashboards", "tags": ["shardmesh"], "asDropdown": True,
                   "includeVars": True, "keepTime": True}],
        "templating": {"list": [ds_var] + variables},
        "panels": panels,
    }


def req(*extra):
    return f"shardmesh_requests_total{sel(*extra)}"


def quantiles(metric, by, matchers, legend):
    return [target(f"histogram_quantile({q}, sum by ({by}le) (rate({metric}_bucket{matchers}[{RATE}])))",
                   f"p{int(q * 100)} {legend}") for q in (0.5, 0.95, 0.99)]


def overview():
    inb, outb = 'direction="inbound"', 'direction="outbound"'
    return dashboard("shardmesh-overview", "shardmesh / Mesh overview",
                     "Traffic, success rate and latency per service.", mesh_vars(), [
        panel("stat", "Inbound requests/s", "reqps",
              [target(f"sum(rate({req(inb)}[{RATE}]))", "requests/s")], w=6, h=4),
        panel("stat", "Success rate (callers' view)", "percentunit", [target(
            f'sum(rate({req(outb, OK)}[{RATE}])) / sum(rate({req(outb)}[{RATE}]))', "success")],
            w=6, h=4, decimals=2,
            description="Share of outbound calls that did not answer 5xx (mesh-made or from the app)."),
        panel("stat", "p99 latency (inbound)", "s", [target(
            "histogram_quantile(0.99, sum by (le) "
            f"(rate(shardmesh_request_duration_seconds_bucket{sel(inb)}[{RATE}])))",
            "p99")], w=6, h=4),
        panel("stat", "Mesh-refused requests/s", "reqps", [target(
            f'sum(rate({req(outb, MESH)}[{RATE}]))', "refused/s")], w=6, h=4,
            description="Outbound answers made by the mesh (x-shardmesh-error set)."),
        row("Traffic"),
        panel("timeseries", "Requests/s by service (inbound)", "reqps", [target(
            f"sum by (service) (rate({req(inb)}[{RATE}]))", "{{service}}")]),
        panel("timeseries", "Success rate by service (callers' view)", "percentunit", [target(
            f'sum by (service) (rate({req(outb, OK)}[{RATE}])) / '
            f"sum by (service) (rate({req(outb)}[{RATE}]))", "{{service}}")]),
        panel("timeseries", "Responses/s by code (inbound)", "reqps", [target(
            f"sum by (service, code) (rate({req(inb)}[{RATE}]))", "{{service}} {{code}}")]),
        panel("timeseries", "Mesh errors/s by reason (callers' view)", "reqps", [target(
            f'sum by (service, reason) (rate({req(outb, MESH)}[{RATE}]))', "{{service}} {{reason}}")],
            description="bad-request, unknown-service, overloaded, circuit-open, no-owner, "
                        "retry-budget-exhausted, unavailable, timeout."),
        panel("timeseries", "Requests/s by pod (inbound)", "reqps", [target(
            f"sum by (pod) (rate({req(inb)}[{RATE}]))", "{{pod}}")], w=24),
        row("Latency"),
        panel("timeseries", "Latency p50/p95/p99 by service (inbound)", "s", quantiles(
            "shardmesh_request_duration_seconds", "service, ", sel(inb), "{{service}}")),
        panel("timeseries", "Latency p50/p95/p99 by service (callers' view, retries included)", "s", quantiles(
            "shardmesh_request_duration_seconds", "service, ", sel(outb), "{{service}}")),
    ])


def resilience():
    outb = 'direction="outbound"'
    breaker = f"shardmesh_circuit_breaker_state{sel(service=False)}"
    return dashboard("shardmesh-resilience", "shardmesh / Resilience",
                     "Retries, retry budget, circuit breakers, load shedding and in-flight requests.",
                     mesh_vars(), [
        panel("stat", "Open breakers", "short", [target(f"sum({breaker} == bool 2)", "open")], w=6, h=4),
        panel("stat", "Retries/s", "reqps", [target(
            f"sum(rate(shardmesh_retries_total{sel()}[{RATE}]))", "retries/s")], w=6, h=4),
        panel("stat", "Retry budget refusals/s", "reqps", [target(
            f"sum(rate(shardmesh_retry_budget_exhausted_total{sel()}[{RATE}]))", "refusals/s")], w=6, h=4),
        panel("stat", "Shed requests/s", "reqps", [target(
            f"sum(rate(shardmesh_load_shed_total{sel()}[{RATE}]))", "shed/s")], w=6, h=4),
        row("Retries"),
        panel("timeseries", "Retries/s by service", "reqps", [target(
            f"sum by (service) (rate(shardmesh_retries_total{sel()}[{RATE}]))", "{{service}}")]),
        panel("timeseries", "Retries per request by service", "percentunit", [target(
            f"sum by (service) (rate(shardmesh_retries_total{sel()}[{RATE}])) / "
            f"sum by (service) (rate({req(outb)}[{RATE}]))", "{{service}}")],
            description="The retry budget caps this at 20 % plus 10 retries/s."),
        panel("timeseries", "Retry budget refusals/s by service", "reqps", [target(
            f"sum by (service) (rate(shardmesh_retry_budget_exhausted_total{sel()}[{RATE}]))", "{{service}}")], w=24),
        row("Circuit breakers"),
        panel("timeseries", "Breaker state by peer (0 closed, 1 half-open, 2 open)", "none", [target(
            f"max by (pod, peer) ({breaker})", "{{pod}} → {{peer}}")],
            mappings=[{"type": "value", "options": {
                "0": {"text": "closed", "color": "green"},
                "1": {"text": "half-open", "color": "yellow"},
                "2": {"text": "open", "color": "red"}}}]),
        panel("timeseries", "Breaker transitions/s by target state", "cps", [target(
            f"sum by (peer, to) (rate(shardmesh_circuit_breaker_transitions_total{sel(service=False)}[{RATE}]))",
            "{{peer}} → {{to}}")]),
        panel("timeseries", "Fail-fast refusals/s by reason", "reqps", [target(
            f'sum by (service, reason) (rate({req(outb, FAILFAST)}[{RATE}]))',
            "{{service}} {{reason}}")], w=24),
        row("Backpressure"),
        panel("timeseries", "Shed requests/s by service", "reqps", [target(
            f"sum by (service) (rate(shardmesh_load_shed_total{sel()}[{RATE}]))", "{{service}}")]),
        panel("timeseries", "In-flight requests by direction and service", "short", [target(
            f"sum by (direction, service) (shardmesh_inflight_requests{sel()})", "{{direction}} {{service}}")]),
    ])


def membership():
    members = f"shardmesh_members{sel(service=False)}"
    return dashboard("shardmesh-membership", "shardmesh / Membership",
                     "SWIM gossip: members by state, suspicions, refutations, probes and bad packets.",
                     mesh_vars(), [
        panel("stat", "Alive members (max over sidecars)", "short", [target(
            f'max(sum by (pod) (shardmesh_members{sel(ALIVE, service=False)}))', "alive")],
            w=8, h=4),
        panel("stat", "Suspect or dead (max over sidecars)", "short", [target(
            f'max(sum by (pod) (shardmesh_members{sel(UNHEALTHY, service=False)}))',
            "suspect+dead")], w=8, h=4),
        panel("stat", "Views that disagree (max − min alive)", "short", [target(
            f'max(sum by (pod) (shardmesh_members{sel(ALIVE, service=False)})) - '
            f'min(sum by (pod) (shardmesh_members{sel(ALIVE, service=False)}))', "spread")],
            w=8, h=4, description="0 when every sidecar sees the same number of alive members."),
        row("Members"),
        panel("timeseries", "Members by state (max over sidecars)", "short", [target(
            f"max by (state) ({members})", "{{state}}")]),
        panel("timeseries", "Members by state, per sidecar", "short", [target(
            f"sum by (pod, state) ({members})", "{{pod}} {{state}}")]),
        row("Failure detection"),
        panel("timeseries", "Probe results/s", "cps", [target(
            f"sum by (result) (rate(shardmesh_gossip_probes_total{sel(service=False)}[{RATE}]))", "{{result}}")]),
        panel("timeseries", "Suspicions and refutations/s", "cps", [
            target(f"sum by (pod) (rate(shardmesh_gossip_suspicions_total{sel(service=False)}[{RATE}]))",
                   "suspicions {{pod}}"),
            target(f"sum by (pod) (rate(shardmesh_gossip_refutations_total{sel(service=False)}[{RATE}]))",
                   "refutations {{pod}}")]),
        panel("timeseries", "Bad gossip packets/s by reason", "pps", [target(
            f"sum by (pod, reason) (rate(shardmesh_gossip_bad_packets_total{sel(service=False)}[{RATE}]))",
            "{{pod}} {{reason}}")], w=24,
            description="Malformed, unauthenticated or oversized packets, dropped and counted."),
    ])


def shards():
    owned = f"shardmesh_shards_owned{sel()}"
    return dashboard("shardmesh-shards", "shardmesh / Shards",
                     "Shard ownership per pod, handoffs and their duration, no-owner refusals.", mesh_vars(), [
        panel("stat", "Shards owned (sum over pods)", "short", [target(f"sum({owned})", "shards")], w=8, h=4),
        panel("stat", "Handoffs/s", "cps", [target(
            f"sum(rate(shardmesh_shard_handoffs_total{sel()}[{RATE}]))", "handoffs/s")], w=8, h=4),
        panel("stat", "no-owner refusals/s", "reqps", [target(
            f'sum(rate({req(NO_OWNER)}[{RATE}]))', "no-owner/s")], w=8, h=4),
        row("Ownership"),
        panel("timeseries", "Shards owned per pod", "short", [target(
            f"sum by (service, pod) ({owned})", "{{service}} {{pod}}")]),
        panel("timeseries", "Shard balance: most − fewest owned per pod", "short", [target(
            f"max by (service) ({owned}) - min by (service) ({owned})", "{{service}}")],
            description="Bounded-load rendezvous hashing keeps this at most 1 when every pod is alive."),
        row("Handoffs"),
        panel("timeseries", "Handoffs/s by service", "cps", [target(
            f"sum by (service) (rate(shardmesh_shard_handoffs_total{sel()}[{RATE}]))", "{{service}}")]),
        panel("timeseries", "Handoff duration p50/p95/p99", "s", quantiles(
            "shardmesh_shard_handoff_duration_seconds", "", sel(service=False), "")),
        panel("timeseries", "no-owner refusals/s by service", "reqps", [target(
            f'sum by (service) (rate({req(NO_OWNER)}[{RATE}]))', "{{service}}")], w=24),
    ])


def operator():
    osel = '{namespace=~"$namespace", pod=~"$pod"}'
    variables = [
        query_var("namespace", "Namespace", 'label_values(up{job="shardmesh-operator"}, namespace)'),
        query_var("pod", "Operator pod", 'label_values(up{job="shardmesh-operator", namespace=~"$namespace"}, pod)'),
    ]
    return dashboard("shardmesh-operator", "shardmesh / Operator",
                     "Reconciles, errors and their duration; operator replicas.", variables, [
        panel("stat", "Operator replicas up", "short", [target(
            'sum(up{job="shardmesh-operator", namespace=~"$namespace", pod=~"$pod"})', "up")], w=6, h=4),
        panel("stat", "Reconciles/s", "ops", [target(
            f"sum(rate(shardmesh_reconciliations_total{osel}[{RATE}]))", "reconciles/s")], w=6, h=4),
        panel("stat", "Reconcile errors/s", "ops", [target(
            f"sum(rate(shardmesh_reconcile_errors_total{osel}[{RATE}]))", "errors/s")], w=6, h=4),
        panel("stat", "p99 reconcile duration", "s", [target(
            f"histogram_quantile(0.99, sum by (le) (rate(shardmesh_reconcile_duration_seconds_bucket{osel}[{RATE}])))",
            "p99")], w=6, h=4),
        row("Reconciles"),
        panel("timeseries", "Reconciles and errors/s by pod", "ops", [
            target(f"sum by (pod) (rate(shardmesh_reconciliations_total{osel}[{RATE}]))", "reconciles {{pod}}"),
            target(f"sum by (pod) (rate(shardmesh_reconcile_errors_total{osel}[{RATE}]))", "errors {{pod}}")],
            description="Only the leader reconciles; the standby shows 0."),
        panel("timeseries", "Reconcile errors/s by kind", "ops", [target(
            f"sum by (error) (rate(shardmesh_reconcile_errors_total{osel}[{RATE}]))", "{{error}}")],
            description="Kinds: conflict, api, missing-field, render, invalid-spec, serialize, random, lease, io."),
        panel("timeseries", "Reconcile error ratio", "percentunit", [target(
            f"sum(rate(shardmesh_reconcile_errors_total{osel}[{RATE}])) / "
            f"sum(rate(shardmesh_reconciliations_total{osel}[{RATE}]))", "errors / reconciles")]),
        panel("timeseries", "Reconcile duration p50/p95/p99", "s", quantiles(
            "shardmesh_reconcile_duration_seconds", "", osel, "")),
    ])


DASHBOARDS = {
    "shardmesh-overview.json": overview,
    "shardmesh-resilience.json": resilience,
    "shardmesh-membership.json": membership,
    "shardmesh-shards.json": shards,
    "shardmesh-operator.json": operator,
}


def render():
    return {name: json.dumps(fn(), indent=2, ensure_ascii=False) + "\n" for name, fn in DASHBOARDS.items()}


def main():
    check = "--check" in sys.argv[1:]
    files = render()
    stale = []
    for name, text in files.items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    extra = sorted(p.name for p in OUT.glob("*.json") if p.name not in files)
    if check:
        if stale or extra:
            print(f"dashboards are stale: {stale} extra: {extra}; run scripts/monitoring/dashboards.py and commit")
            sys.exit(1)
        print(f"{len(files)} dashboards match scripts/monitoring/dashboards.py")
    else:
        for e in extra:
            (OUT / e).unlink()
        print(f"wrote {len(files)} dashboards to {OUT}")


if __name__ == "__main__":
    main()
