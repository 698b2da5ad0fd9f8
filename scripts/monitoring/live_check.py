"""Live check: a real Prometheus scrapes a running local mesh under load, then
every PromQL expression of every dashboard panel, dashboard variable and alert
rule is evaluated through Prometheus's HTTP API and must return data.

Usage: live_check.py SIDECAR_BIN WORKDIR [--seconds N]

- Prometheus (Debian `prometheus`) listens on 127.0.0.1, scrapes every 2 s,
  and loads the alert rules file itself (every rule must evaluate with health
  "ok").
- The mesh (live_mesh.py): the local runner (`shardmesh-operator local up`)
  with the sample bank app, driven by `bank-load`, plus two services of a
  stand-in app (ledger, audit) for the faults; when the runner or the bank is
  not built, five sidecars started directly (bank, ledger; stand-in apps) that
  find each other by gossip. Healthy load runs the whole time, the fault mix
  in the middle, so that the series of every mesh reason exist. A sidecar
  without gossip (it exports no gossip series) runs with static members
  instead, and the expressions only gossip can feed are exempted, each printed.
- No operator runs in this test, so operator series are backfilled into the
  TSDB with `promtool tsdb create-blocks-from openmetrics` (a past hour of a
  leader and a standby); expressions on them are evaluated at a time inside
  that hour, and the test says so.
- Panels: every query of every panel must return a non-empty result with at
  least one non-NaN value; failures are listed by dashboard and panel title.
  Alerts: each signal the alert compares (see promql.alert_signals) must
  return data, Prometheus must evaluate every rule without error, and the
  alerts the faults provoke (PROVOKED) must have gone pending (ALERTS series).
- Faults: unknown service, bad request, timeouts, slow and failing app
  answers, two bursts of garbage gossip packets, and two pods killed with
  SIGKILL (bank-2: handoffs and a dead member; ledger-1: ledger-0 loses its
  majority and refuses with no-owner).
"""

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
import live_mesh  # noqa: E402
import promql  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts/shardmesh/files/rules/shardmesh.rules.yaml"
DASHBOARDS = ROOT / "charts/shardmesh/files/dashboards"
OPERATOR_NS = "shardmesh-system"


# Series only a gossiping mesh produces: membership, probes, bad packets,
# handoffs (ownership moves only when membership changes), and no-owner.
GOSSIP_ONLY = ("shardmesh_members", "shardmesh_gossip_", "shardmesh_shard_handoff", 'reason="no-owner"')


# Alerts the fault mix provokes: 5xx answers, shed load, open breakers, dead
# members, no-owner refusals, garbage gossip, and no operator running.
PROVOKED = ("ShardmeshHighErrorRatio", "ShardmeshLoadShedding", "ShardmeshCircuitBreakerOpen", "ShardmeshMemberDead",
            "ShardmeshShardsWithoutOwner", "ShardmeshGossipBadPackets", "ShardmeshOperatorDown")
GOSSIP_ALERTS = ("ShardmeshMemberDead", "ShardmeshShardsWithoutOwner", "ShardmeshGossipBadPackets")


def is_gossip_expr(expr):
    return any(g in expr for g in GOSSIP_ONLY)


def is_operator_expr(expr):
    return "shardmesh_reconcil" in expr or 'job="shardmesh-operator"' in expr


def openmetrics_backfill(start, end, step=15):
    """OpenMetrics text of an operator leader and standby from START to END (unix s)."""
    lines = []
    pods = [("shardmesh-operator-0", True), ("shardmesh-operator-1", False)]
    buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]

    def labels(pod, extra=""):
        base = f'job="shardmesh-operator",namespace="{OPERATOR_NS}",pod="{pod}",instance="{pod}:8080"'
        return "{" + base + (("," + extra) if extra else "") + "}"

    lines.append("# TYPE up gauge")
    for pod, _ in pods:
        for t in range(start, end + 1, step):
            lines.append(f"up{labels(pod)} 1 {t}")
    lines.append("# TYPE shardmesh_reconciliations counter")
    for pod, leader in pods:
        for i, t in enumerate(range(start, end + 1, step)):
            lines.append(f"shardmesh_reconciliations_total{labels(pod)} {3 * i if leader else 0} {t}")
    lines.append("# TYPE shardmesh_reconcile_errors counter")
    for error, every in (("conflict", 4), ("invalid-spec", 20)):
        # Only the leader reconciles, so only it has errors.
        series = "shardmesh_reconcile_errors_total" + labels(pods[0][0], 'error="' + error + '"')
        for i, t in enumerate(range(start, end + 1, step)):
            lines.append(f"{series} {i // every} {t}")
    lines.append("# TYPE shardmesh_reconcile_duration_seconds histogram")
    for pod, leader in pods:
        for i, t in enumerate(range(start, end + 1, step)):
            n = 3 * i if leader else 0
            # Most reconciles take 10-50 ms, a few up to 250 ms.
            shares = {0.005: 0.0, 0.01: 0.1, 0.025: 0.5, 0.05: 0.8, 0.1: 0.9, 0.25: 1.0}
            for le in buckets + ["+Inf"]:
                frac = 1.0 if le == "+Inf" else next((v for k, v in sorted(shares.items()) if le <= k), 1.0)
                le_label = 'le="' + str(le) + '"'
                lines.append(f"shardmesh_reconcile_duration_seconds_bucket{labels(pod, le_label)} {int(n * frac)} {t}")
            lines.append(f"shardmesh_reconcile_duration_seconds_count{labels(pod)} {n} {t}")
            lines.append(f"shardmesh_reconcile_duration_seconds_sum{labels(pod)} {n * 0.03:.3f} {t}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


class Prom:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path, **params):
        url = f"{self.base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"{path}: {body}")
        return body["data"]

    def query(self, expr, at=None):
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.get("/api/v1/query", **params)

    def ready(self):
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False


def has_data(data):
    """(ok, note): a result with at least one sample that is not NaN."""
    result = data.get("result")
    if data.get("resultType") == "scalar":
        return not math.isnan(float(result[1])), "scalar"
    if not result:
        return False, "empty result"
    values = [float(s["value"][1]) for s in result]
    if all(math.isnan(v) for v in values):
        return False, f"{len(values)} series, all NaN"
    return True, f"{len(values)} series"


def collect():
    """Every expression to evaluate: (kind, where, expr)."""
    items = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        d = json.loads(path.read_text())
        for v in d["templating"]["list"]:
            if v.get("type") == "query":
                q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
                items.append(("variable", f"{d['title']} / variable {v['name']}", q))

        def walk(panels):
            for p in panels:
                yield p
                yield from walk(p.get("panels", []))
        for p in walk(d["panels"]):
            for t in p.get("targets", []):
                items.append(("panel", f"{d['title']} / {p['title']} [{t['refId']}]", t["expr"]))
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            for i, sig in enumerate(promql.alert_signals(rule["expr"])):
                items.append(("alert", f"alert {rule.get('alert') or rule.get('record')} signal {i + 1}", sig))
    return items


def evaluate(prom, kind, expr, at):
    """(ok, note) for one expression at time AT."""
    if kind == "variable":
        # Grafana's label_values(SELECTOR, LABEL) as Prometheus's label values API.
        inner = expr[len("label_values("):-1]
        selector, _, label = inner.rpartition(",")
        vals = prom.get(f"/api/v1/label/{label.strip()}/values",
                        **{"match[]": promql.substitute_grafana(selector.strip()),
                           "start": f"{at - 600:.0f}", "end": f"{at:.0f}"})
        return bool(vals), f"values {vals[:4]}"
    return has_data(prom.query(promql.substitute_grafana(expr), at))


def _terminate(signum, _frame):
    # `timeout` sends SIGTERM: unwind so that `finally` stops every process.
    raise SystemExit(f"stopped by signal {signum}")


def main():
    signal.signal(signal.SIGTERM, _terminate)
    ap = argparse.ArgumentParser()
    ap.add_argument("sidecar_bin")
    ap.add_argument("workdir")
    ap.add_argument("--seconds", type=int, default=40, help="length of the load")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="prom-", dir=work))
    procs = live_mesh.Procs(work)
    mesh = None
    try:
        # 1. Backfill an hour of operator series ending 10 minutes ago.
        now = int(time.time())
        bf_start, bf_end = now - 4200, now - 600
        om = work / "operator-backfill.om.txt"
        om.write_text(openmetrics_backfill(bf_start, bf_end))
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", str(om), str(data_dir)],
                       check=True, timeout=60)
        print(f"backfilled operator series {time.strftime('%H:%M', time.gmtime(bf_start))}-"
              f"{time.strftime('%H:%M', time.gmtime(bf_end))} UTC into {data_dir.name}")

        # 2. The mesh: the local runner with the bank app when it is built;
        #    else sidecars started directly, by gossip when the sidecar has it.
        mode = os.environ.get("SHARDMESH_LIVE_MODE", "auto")
        release = Path(args.sidecar_bin).parent
        runner_bins = [release / b for b in ("shardmesh-operator", "bank", "bank-load")]
        if mode == "auto":
            missing = [b.name for b in runner_bins if not b.exists()]
            mode = "gossip" if missing else "runner"
            if missing:
                print(f"NOTE local runner not used ({', '.join(missing)} not built): starting sidecars directly")
        if mode == "runner":
            mesh = live_mesh.RunnerMesh(runner_bins[0], work, procs, sys.executable)
            mesh.start(time.monotonic() + 60)
        elif mode == "gossip":
            # A sidecar that exits here fails the test: only a sidecar that
            # runs but exports no gossip series at all falls back.
            mesh = live_mesh.SidecarMesh(args.sidecar_bin, work, procs, mode="gossip")
            mesh.start(time.monotonic() + 20)
            if not mesh.wait_converged(time.monotonic() + 15):
                text = mesh.metrics(mesh.pods[0])[1]
                if "shardmesh_gossip_probes_total{" in text or "shardmesh_members{" in text:
                    raise RuntimeError(f"gossip runs but {mesh.pods[0]['name']} never saw all "
                                       f"{len(mesh.pods)} members alive within 15 s")
                procs.stop_all()
                mesh.stop()
                mesh = None
                print("NOTE gossip membership unavailable (the sidecar exports no gossip series: gossip not "
                      "built in); using static members. Expressions only gossip can feed are exempted below.")
        if mesh is None:
            mesh = live_mesh.SidecarMesh(args.sidecar_bin, work, procs, mode="static")
            mesh.start(time.monotonic() + 20)
        print(f"mesh ({mesh.mode}): {len(mesh.pods)} sidecars ready ({', '.join(p['name'] for p in mesh.pods)})")

        # 3. Prometheus, scraping every 2 s and evaluating the alert rules.
        port = live_mesh.free_port()
        cfg = {
            "global": {"scrape_interval": "2s", "scrape_timeout": "1s", "evaluation_interval": "2s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "shardmesh-sidecar", "static_configs": mesh.scrape_targets()}],
        }
        (work / "prometheus.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        procs.start("prometheus", [
            "prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1d", "--log.level=warn"])
        prom = Prom(port)
        deadline = time.monotonic() + 30
        while not prom.ready():
            if "prometheus" in procs.dead() or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start:\n{procs.log_tail('prometheus')}")
            time.sleep(0.2)
        print(f"prometheus ready on 127.0.0.1:{port}")

        # 4. Load: healthy traffic throughout (bank-load drives the bank app
        #    under the runner); the fault mix in the middle.
        load = live_mesh.Load(mesh)
        t_load = time.monotonic()
        if mesh.mode == "runner":
            targets = [arg for p in mesh.alive("bank") for arg in ("--target", "http://%s:%d" % p["outbound"])]
            procs.start("bank-load", [str(runner_bins[2]), *targets, "--duration", str(args.seconds - 5),
                                      "--concurrency", "4", "--resolve-timeout", "5", "--resolve-attempts", "5",
                                      "--replay", "10", "--json", str(work / "bank-load.json")])
        threads = load.run(args.seconds, threads=3)
        time.sleep(args.seconds / 4)
        threads += load.run(args.seconds / 2, threads=4, make_request=load.faults, pause=0.01)
        # Two bursts of garbage gossip, more than a scrape apart: a counter
        # born at its first burst shows no increase to rate() until the next.
        load.garbage_gossip()
        time.sleep(3)
        load.garbage_gossip()
        # Two pods die without leaving (SIGKILL): bank-2, whose shards move to
        # the other two (suspicion, dead member, handoffs); then ledger-1,
        # after which ledger-0 alone cannot reach a majority of ledger and
        # refuses with no-owner (keep-majority; ledger's breaker never opens,
        # so callers keep reaching it).
        for victim in ("bank-2", "ledger-1"):
            time.sleep(args.seconds / 4 - (3 if victim == "bank-2" else 0))
            mesh.kill(victim)
            print(f"killed {victim} (SIGKILL) at {time.monotonic() - t_load:.0f}s of the load")
        for t in threads:
            t.join(timeout=args.seconds + 15)
        if "bank-load" in procs.procs:
            try:
                code = procs.procs["bank-load"].wait(timeout=15)
            except subprocess.TimeoutExpired:
                procs.kill("bank-load")
                code = "killed after 15 s more"
            procs.killed.add("bank-load")
            # Its money check is the e2e suite's business: here its resolve
            # phase gets 5 s, too little to settle every write made ambiguous
            # by the kills, so its verdict is printed, not judged.
            summary = [ln for ln in procs.log_tail("bank-load", 40).splitlines() if ln.startswith(("bank-load:",
                                                                                                   "failed requests"))]
            print(f"bank-load (load only, verdict not judged here) exited {code}: {' | '.join(summary)}")
        crashed = procs.crashed()
        if crashed:
            raise RuntimeError(f"process {crashed[0]} died under load:\n{procs.log_tail(crashed[0])}")
        print("load done: " + ", ".join(f"{k}: {v}" for k, v in sorted(load.counts.items())))
        time.sleep(3)  # one more scrape and rule evaluation after the load

        # 5. Evaluate.
        at_now = time.time()
        at_backfill = bf_end - 60
        failures, backfilled, exempt = [], [], []
        items = collect()
        for kind, where, expr in items:
            ok, note = evaluate(prom, kind, expr, at_now)
            if not ok and is_operator_expr(expr):
                ok, note = evaluate(prom, kind, expr, at_backfill)
                backfilled.append(where)
            if not ok and mesh.mode == "static" and is_gossip_expr(expr):
                exempt.append(where)
                print(f"EXEMPT {where}: {note}; only a gossiping mesh feeds it and this sidecar has no gossip")
                continue
            print(f"{'ok  ' if ok else 'FAIL'} {where}: {note}")
            if not ok:
                failures.append(f"{where}\n       {promql.substitute_grafana(expr)}")
        if backfilled:
            print(f"note: {len(backfilled)} operator expressions were evaluated against the backfilled "
                  f"operator series (no operator runs in this test)")

        # 6. Prometheus evaluated every alert rule itself, without errors.
        rules = [r for g in prom.get("/api/v1/rules")["groups"] for r in g["rules"]]
        for r in rules:
            if r.get("health") != "ok":
                failures.append(f"rule {r.get('name')}: health {r.get('health')}: {r.get('lastError')}")
        states = {r["name"]: r.get("state") for r in rules if r.get("type") == "alerting"}
        print("alert states now: " + ", ".join(f"{k}={v}" for k, v in sorted(states.items())))
        # The faults above must set these alerts off at some point (pending:
        # their `for` has not run out in a test this short).
        # Prometheus keeps an ALERTS series while an alert is pending or firing.
        for name in PROVOKED:
            if mesh.mode == "static" and name in GOSSIP_ALERTS:
                print(f"EXEMPT alert {name} cannot be provoked without gossip")
                continue
            seen = prom.query(f'max_over_time(ALERTS{{alertname="{name}"}}[{int(time.monotonic() - t_load) + 30}s])')
            if not seen.get("result"):
                failures.append(f"alert {name} never went pending during the faults that should set it off")
        if exempt:
            print(f"EXEMPT {len(exempt)} gossip-only expressions (static members: the sidecar has no gossip)")
        print(f"{len(items)} expressions and {len(rules)} rules evaluated; {len(failures)} failed, "
              f"{len(exempt)} exempted")
        for f in failures:
            print(f"FAIL {f}")
        return 1 if failures else 0
    finally:
        # The mesh first: the local runner needs its SIGTERM to stop its pods.
        if mesh:
            mesh.stop()
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
