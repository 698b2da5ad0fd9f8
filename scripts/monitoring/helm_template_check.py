"""`helm template` of the chart with the real Helm CLI (offline: no API
server), then checks of every rendered object.

Usage: helm_template_check.py HELM CHART ALL_ON_VALUES.yaml RULES.yaml

Scenarios (`.Capabilities` set with `--api-versions`, as a cluster would):
1. every toggle on but the identity endpoint, no Prometheus Operator;
2. default values, cluster without the Prometheus Operator;
3. every toggle on, cluster without monitoring.coreos.com/v1: the PodMonitor,
   ServiceMonitor and PrometheusRule must NOT be rendered (.Capabilities gate);
4. every toggle on, cluster with monitoring.coreos.com/v1: they must be.
Each rendered object of a Kubernetes kind is validated against the official
schemas of the Kubernetes version we run (PyPI kubernetes-validate, strict:
unknown fields fail); the manifest must have no duplicate keys; the
Deployment must be hardened as issue 7 asks; the ClusterRole must hold
exactly the rules of docs/rbac.md; the PrometheusRule must carry the rules
file's alerts; the PodMonitor must select mesh pods' `admin` port.

What needs a cluster (objects accepted and stored, the gate against a real
discovery, NOTES.txt's warning, upgrade and uninstall) is checked by
e2e/tests/kube_chart.rs against the real API server, in the same stage.
"""

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import kubernetes_validate
import yaml

K8S_VERSION = "1.37.0"  # the schemas of the API server scripts/kube/build pins (v1.37.2)
NAMESPACE = "shardmesh-system"
MONITORING_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}

RBAC_DOC = Path(__file__).resolve().parents[2] / "docs/rbac.md"


def rule_map(rules):
    """(group, resource) -> verbs of a list of ClusterRole rules."""
    out = {}
    for rule in rules:
        for g in rule.get("apiGroups", []):
            for r in rule.get("resources", []):
                out.setdefault((g, r), set()).update(rule.get("verbs", []))
    return out


def expected_rbac():
    """The least-privilege rules: the ClusterRole YAML block of docs/rbac.md."""
    text = RBAC_DOC.read_text()
    block = text.split("```yaml", 1)[1].split("```", 1)[0]
    return rule_map(yaml.safe_load(block)["rules"])


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that fails on duplicate mapping keys (yaml.safe_load keeps the last)."""


def _no_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def render(helm, chart, values, with_monitoring, workdir):
    """The objects `helm install` would send, rendered offline by `helm template`."""
    cmd = [helm, "template", "shardmesh", str(chart), "--namespace", NAMESPACE, "--kube-version", "v" + K8S_VERSION]
    if values is not None:
        path = Path(workdir) / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        cmd += ["-f", str(path)]
    if with_monitoring:
        cmd += ["--api-versions", "monitoring.coreos.com/v1"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return out.stdout


def check_deployment(d, problems, replicas, max_reconciles):
    spec = d["spec"]
    pod = spec["template"]["spec"]
    if spec.get("replicas") != replicas:
        problems.append(f"Deployment replicas {spec.get('replicas')}, want {replicas}")
    psc = pod.get("securityContext", {})
    if not psc.get("runAsNonRoot") or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("pod securityContext must set runAsNonRoot and seccompProfile RuntimeDefault")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        want = {
            "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
            "allowPrivilegeEscalation false": sc.get("allowPrivilegeEscalation") is False,
            "runAsNonRoot": sc.get("runAsNonRoot") is True,
            "capabilities drop ALL": sc.get("capabilities", {}).get("drop") == ["ALL"],
            "seccomp RuntimeDefault": sc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
            "liveness probe": "livenessProbe" in c,
            "readiness probe": "readinessProbe" in c,
            "resource requests": bool(c.get("resources", {}).get("requests")),
            "memory limit": bool(c.get("resources", {}).get("limits", {}).get("memory")),
            "args run": c.get("args", [None])[0] == "run",
        }
        for what, ok in want.items():
            if not ok:
                problems.append(f"container {c['name']}: {what} missing")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        for name in ("POD_NAME", "POD_NAMESPACE", "SHARDMESH_SIDECAR_IMAGE"):
            if name not in env:
                problems.append(f"container {c['name']}: env {name} missing (leader election / sidecar image)")
        if env.get("SHARDMESH_MAX_CONCURRENT_RECONCILES") != str(max_reconciles):
            problems.append(f"container {c['name']}: SHARDMESH_MAX_CONCURRENT_RECONCILES "
                            f"{env.get('SHARDMESH_MAX_CONCURRENT_RECONCILES')!r}, want {max_reconciles!r} "
                            f"(operator.maxConcurrentReconciles)")


def check_identity(kinds, problems, identity):
    """identity.enabled: the operator serves the endpoint on identity.port, pods
    are told a URL whose host is the chart's identity Service, and that Service
    exposes the port; disabled: none of it."""
    args = kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0].get("args", [])

    def flag(name):
        return args[args.index(name) + 1] if name in args[:-1] else None

    services = {s["metadata"]["name"]: s for s in kinds.get("Service", [])}
    if not identity["enabled"]:
        if "--identity-listen" in args or any(n.endswith("-identity") for n in services):
            problems.append("identity.enabled=false still renders the identity endpoint")
        return
    port = identity["port"]
    if flag("--identity-listen") != f"0.0.0.0:{port}":
        problems.append(f"operator args {args}: want --identity-listen 0.0.0.0:{port}")
    url = flag("--identity-url") or ""
    host = url.removeprefix("https://").rsplit(":", 1)[0]
    name, _, ns = host.partition(".")
    svc = services.get(name)
    if not url.startswith("https://") or svc is None or ns != f"{NAMESPACE}.svc":
        problems.append(f"--identity-url {url!r} does not name the chart's identity Service in {NAMESPACE}")
    elif [p["port"] for p in svc["spec"]["ports"]] != [port]:
        problems.append(f"Service {name} ports {svc['spec']['ports']}, want {port}")
    if flag("--identity-dns") != host:
        problems.append(f"--identity-dns {flag('--identity-dns')!r}, want {host!r} (the serving certificate)")


def check_lease(kinds, problems, want):
    """The chart renders the operator's leader-election Lease (so uninstall
    removes it): exactly one, in the release namespace, named as the operator
    names it (operator/src/leader.rs LEASE_NAME), with no spec of its own."""
    leases = kinds.get("Lease", [])
    if [(lease["metadata"]["name"], lease["metadata"]["namespace"]) for lease in leases] != [(want, NAMESPACE)]:
        problems.append(f"Leases {[lease['metadata'] for lease in leases]}: want one named {want!r} in {NAMESPACE}")
    elif leases[0].get("spec"):
        problems.append(f"Lease {want}: the chart must not write spec (the operator owns it): {leases[0]['spec']}")


def check_rbac(role, problems):
    got, want = rule_map(role["rules"]), expected_rbac()
    for key in sorted(set(got) | set(want)):
        if got.get(key) != want.get(key):
            problems.append(f"ClusterRole {key[0] or 'core'}/{key[1]}: verbs {sorted(got.get(key, []))}, "
                            f"but {RBAC_DOC.name} says {sorted(want.get(key, []))}")
    if any("*" in v for v in got.values()) or any("*" in k[1] for k in got):
        problems.append("ClusterRole uses a wildcard")


def check_monitoring(objs, rules_path, extra_labels, problems):
    rules = yaml.safe_load(Path(rules_path).read_text())
    want = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    pr = objs["PrometheusRule"][0]
    got = [r["alert"] for g in pr["spec"]["groups"] for r in g["rules"] if "alert" in r]
    if got != want:
        problems.append(f"PrometheusRule alerts {got} differ from the rules file {want}")
    for g in pr["spec"]["groups"]:
        for r in g["rules"]:
            if "alert" in r and any(r.get("labels", {}).get(k) != v for k, v in extra_labels.items()):
                problems.append(f"PrometheusRule {r['alert']}: additionalAlertLabels {extra_labels} not applied")
            if "alert" in r and "{{ $labels" not in str(r.get("annotations")) and "$value" not in str(
                    r.get("annotations")) and r["alert"] != "ShardmeshOperatorDown":
                problems.append(f"PrometheusRule {r['alert']}: alert templates lost in rendering")
    pm = objs["PodMonitor"][0]["spec"]
    if pm["selector"]["matchLabels"].get("shardmesh.io/mesh") != "true" or \
            pm["podMetricsEndpoints"][0].get("port") != "admin":
        problems.append("PodMonitor must select shardmesh.io/mesh=true pods on port admin")
    sm = objs["ServiceMonitor"][0]["spec"]
    if sm["endpoints"][0].get("port") != "metrics":
        problems.append("ServiceMonitor must scrape port metrics")
    for kind in ("PodMonitor", "ServiceMonitor"):
        spec = objs[kind][0]["spec"]
        eps = spec.get("podMetricsEndpoints") or spec.get("endpoints")
        jobs = [r.get("replacement") for r in eps[0].get("relabelings", []) if r.get("targetLabel") == "job"]
        want_job = "shardmesh-sidecar" if kind == "PodMonitor" else "shardmesh-operator"
        if jobs != [want_job]:
            problems.append(f"{kind} must set job={want_job} (the rules and dashboards rely on it), got {jobs}")


def main():
    helm, chart, all_on_path, rules_path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    all_on = yaml.safe_load(all_on_path.read_text())
    all_on["monitoring"]["assumeCRDs"] = False  # the real gate: .Capabilities
    work = tempfile.mkdtemp(prefix="helm-template-")
    default_values = yaml.safe_load((chart / "values.yaml").read_text())
    problems = []
    # The Lease name the operator contends for (operator/src/leader.rs), read once.
    leader = (Path(__file__).resolve().parents[2] / "operator/src/leader.rs").read_text()
    lease_name = re.search(r'pub const LEASE_NAME: &str = "([^"]+)";', leader).group(1)
    no_identity = dict(all_on, identity={"enabled": False})
    scenarios = [
        ("every toggle on but the identity endpoint, no Prometheus Operator", no_identity, False),
        ("default values, no Prometheus Operator", None, False),
        ("every toggle on, no Prometheus Operator", all_on, False),
        ("every toggle on, Prometheus Operator present", all_on, True),
    ]
    for label, values, with_mon in scenarios:
        before = len(problems)
        try:
            manifest = render(helm, chart, values, with_mon, work)
        except RuntimeError as e:
            problems.append(f"[{label}] helm template failed: {e}")
            continue
        try:
            created = [o for o in yaml.load_all(manifest, Loader=UniqueKeyLoader) if o]
        except yaml.YAMLError as e:
            problems.append(f"[{label}] rendered manifest: {e}")
            continue
        kinds = {}
        for o in created:
            kinds.setdefault(o["kind"], []).append(o)
        for o in created:
            if o["kind"] in MONITORING_KINDS:
                continue
            try:
                kubernetes_validate.validate(o, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                problems.append(f"[{label}] {o['kind']} {o['metadata']['name']}: {path}: {e.message}")
        mon = MONITORING_KINDS & set(kinds)
        if values is None or not with_mon:
            if mon:
                problems.append(f"[{label}] rendered {sorted(mon)} although the cluster lacks monitoring.coreos.com/v1")
        if values is not None and with_mon:
            if mon != MONITORING_KINDS:
                problems.append(f"[{label}] rendered {sorted(mon)}, want {sorted(MONITORING_KINDS)}")
            else:
                check_monitoring(kinds, rules_path, values["monitoring"]["prometheusRule"]["additionalAlertLabels"],
                                 problems)
            if len(kinds.get("ConfigMap", [])) < 6:
                problems.append(f"[{label}] want 5 dashboard ConfigMaps + sidecar defaults")
            for cm in kinds.get("ConfigMap", []):
                if "dashboard" in cm["metadata"]["name"] and cm["metadata"]["labels"].get("grafana_dashboard") != "1":
                    problems.append(f"[{label}] {cm['metadata']['name']} lacks label grafana_dashboard=1")
        for d in kinds.get("Deployment", []):
            operator = {**default_values["operator"], **(values or {}).get("operator", {})}
            check_deployment(d, problems, operator["replicas"], operator["maxConcurrentReconciles"])
        for role in kinds.get("ClusterRole", []):
            check_rbac(role, problems)
        check_identity(kinds, problems, {**default_values["identity"], **(values or {}).get("identity", {})})
        check_lease(kinds, problems, lease_name)
        if values is None and set(kinds) - {"ConfigMap"} != {"ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                                            "Service", "Deployment", "PodDisruptionBudget",
                                                            "Lease"}:
            problems.append(f"[{label}] unexpected kinds {sorted(kinds)}")
        print(f"helm template ({label}): {len(created)} objects "
              f"({', '.join(f'{k} {len(v)}' for k, v in sorted(kinds.items()))}); "
              f"validated against Kubernetes {K8S_VERSION} schemas (strict); {len(problems) - before} problems")
    shutil.rmtree(work, ignore_errors=True)
    for p in problems:
        print(f"FAIL {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
