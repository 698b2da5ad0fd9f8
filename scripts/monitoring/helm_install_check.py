"""`helm install` of the chart, through the real Helm library, into an in-memory
API server (fake_kube_api.py), then checks of what was created.

Usage: helm_install_check.py CHART ALL_ON_VALUES.yaml RULES.yaml

Scenarios (the release is stored with HELM_DRIVER=memory):
1. default values, cluster without the Prometheus Operator;
2. every toggle on, cluster without monitoring.coreos.com/v1: the PodMonitor,
   ServiceMonitor and PrometheusRule must NOT be created (.Capabilities gate)
   and NOTES.txt must say so;
3. every toggle on, cluster with monitoring.coreos.com/v1: they must be.
Each created object of a Kubernetes kind is validated against the official
schemas (PyPI kubernetes-validate, strict: unknown fields fail); the rendered
manifest must have no duplicate keys; the Deployment must be hardened as
issue 7 asks; the ClusterRole must hold exactly the rules of docs/rbac.md; the
PrometheusRule must carry the rules file's alerts; the PodMonitor must select
mesh pods' `admin` port.
"""

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Release records in memory, not in Secrets (client-go would send those as
# protobuf, which the fake does not speak). The Go library reads the
# environment the process started with, so set it and start again.
if os.environ.get("HELM_DRIVER") != "memory":
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "HELM_DRIVER": "memory"})

import helm_sdkpy as helm  # noqa: E402
import kubernetes_validate  # noqa: E402
import yaml  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import fake_kube_api  # noqa: E402

K8S_VERSION = "1.31.0"
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


def install(chart, values, with_monitoring, workdir):
    kube = fake_kube_api.FakeKube(with_monitoring).start()
    try:
        config = helm.Configuration(namespace=NAMESPACE,
                                    kubeconfig=kube.kubeconfig(NAMESPACE, Path(workdir) / "kubeconfig"))
        release = asyncio.run(helm.Install(config).run("shardmesh", str(chart), values=values, wait=False,
                                                       timeout=60))
        return release, list(kube.created)
    finally:
        kube.stop()


def check_deployment(d, problems, replicas):
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
        env = {e["name"] for e in c.get("env", [])}
        for name in ("POD_NAME", "POD_NAMESPACE", "SHARDMESH_SIDECAR_IMAGE"):
            if name not in env:
                problems.append(f"container {c['name']}: env {name} missing (leader election / sidecar image)")


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
    chart, all_on_path, rules_path = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    all_on = yaml.safe_load(all_on_path.read_text())
    all_on["monitoring"]["assumeCRDs"] = False  # the real gate: .Capabilities
    work = tempfile.mkdtemp(prefix="helm-install-")
    # CRDs are installed and checked separately (crds/, drift check); the fake
    # server has no watch to report them established.
    copy = Path(work) / chart.name
    shutil.copytree(chart, copy, ignore=shutil.ignore_patterns("crds", "ci"))
    default_values = yaml.safe_load((chart / "values.yaml").read_text())
    problems = []
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
            release, created = install(copy, values, with_mon, work)
        except helm.HelmError as e:
            problems.append(f"[{label}] helm install failed: {e}")
            continue
        kinds = {}
        for o in created:
            kinds.setdefault(o["kind"], []).append(o)
        try:
            list(yaml.load_all(release["manifest"], Loader=UniqueKeyLoader))
        except yaml.YAMLError as e:
            problems.append(f"[{label}] rendered manifest: {e}")
        for o in created:
            if o["kind"] in MONITORING_KINDS:
                continue
            try:
                kubernetes_validate.validate(o, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                problems.append(f"[{label}] {o['kind']} {o['metadata']['name']}: {path}: {e.message}")
        mon = MONITORING_KINDS & set(kinds)
        notes = release.get("info", {}).get("notes", "")
        if values is None or not with_mon:
            if mon:
                problems.append(f"[{label}] created {sorted(mon)} although the cluster lacks monitoring.coreos.com/v1")
        if values is not None and not with_mon and "were NOT" not in notes:
            problems.append(f"[{label}] NOTES.txt does not warn that the monitors were skipped")
        if values is not None and with_mon:
            if mon != MONITORING_KINDS:
                problems.append(f"[{label}] created {sorted(mon)}, want {sorted(MONITORING_KINDS)}")
            else:
                check_monitoring(kinds, rules_path, values["monitoring"]["prometheusRule"]["additionalAlertLabels"],
                                 problems)
            if len(kinds.get("ConfigMap", [])) < 6:
                problems.append(f"[{label}] want 5 dashboard ConfigMaps + sidecar defaults")
            for cm in kinds.get("ConfigMap", []):
                if "dashboard" in cm["metadata"]["name"] and cm["metadata"]["labels"].get("grafana_dashboard") != "1":
                    problems.append(f"[{label}] {cm['metadata']['name']} lacks label grafana_dashboard=1")
        for d in kinds.get("Deployment", []):
            check_deployment(d, problems, 2 if values is None else values["operator"]["replicas"])
        for role in kinds.get("ClusterRole", []):
            check_rbac(role, problems)
        check_identity(kinds, problems, {**default_values["identity"], **(values or {}).get("identity", {})})
        if values is None and set(kinds) - {"ConfigMap"} != {"ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                                            "Service", "Deployment", "PodDisruptionBudget"}:
            problems.append(f"[{label}] unexpected kinds {sorted(kinds)}")
        print(f"helm install ({label}): {len(created)} objects "
              f"({', '.join(f'{k} {len(v)}' for k, v in sorted(kinds.items()))}); "
              f"validated against Kubernetes {K8S_VERSION} schemas (strict); {len(problems) - before} problems")
    shutil.rmtree(work, ignore_errors=True)
    for p in problems:
        print(f"FAIL {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
