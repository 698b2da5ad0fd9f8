"""A tiny in-memory Kubernetes API server, enough for `helm install` to run.

No kube-apiserver can be had on this machine, but the chart's templates
should be rendered the way a real install renders them: with the cluster's
API versions in `.Capabilities` (the Prometheus Operator's
monitoring.coreos.com/v1 present or not). This server answers discovery for a
fixed set of resources, stores whatever is created, and records every created
object so that the test can validate them. It binds 127.0.0.1 only and
implements no validation, watch, or admission: it is a recorder, not a cluster.
"""

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

# group/version -> [(resource, kind, namespaced)]
CORE = {
    "v1": [("namespaces", "Namespace", False), ("secrets", "Secret", True), ("configmaps", "ConfigMap", True),
           ("services", "Service", True), ("serviceaccounts", "ServiceAccount", True), ("pods", "Pod", True),
           ("events", "Event", True)],
    "apps/v1": [("deployments", "Deployment", True), ("statefulsets", "StatefulSet", True)],
    "rbac.authorization.k8s.io/v1": [("clusterroles", "ClusterRole", False),
                                     ("clusterrolebindings", "ClusterRoleBinding", False),
                                     ("roles", "Role", True), ("rolebindings", "RoleBinding", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "coordination.k8s.io/v1": [("leases", "Lease", True)],
    "apiextensions.k8s.io/v1": [("customresourcedefinitions", "CustomResourceDefinition", False)],
}
MONITORING = {
    "monitoring.coreos.com/v1": [("podmonitors", "PodMonitor", True), ("servicemonitors", "ServiceMonitor", True),
                                 ("prometheusrules", "PrometheusRule", True)],
}


class FakeKube:
    def __init__(self, with_monitoring):
        self.apis = dict(CORE)
        if with_monitoring:
            self.apis.update(MONITORING)
        self.objects = {}  # (path-without-name, name) -> object
        self.created = []  # every object created, in order
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, namespace, path):
        """Writes a kubeconfig for this server to PATH (JSON is YAML) and returns PATH."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
        }))
        return str(path)

    # === discovery ===

    def discovery(self, path):
        if path == "/version":
            return {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
        if path == "/apis":
            groups = []
            for gv in self.apis:
                if "/" not in gv:
                    continue
                g, v = gv.split("/")
                ver = {"groupVersion": gv, "version": v}
                groups.append({"name": g, "versions": [ver], "preferredVersion": ver})
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        gv = path[len("/api/"):] if path.startswith("/api/") else path[len("/apis/"):]
        if gv in self.apis:
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
                {"name": r, "singularName": "", "namespaced": ns, "kind": k,
                 "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
                for r, k, ns in self.apis[gv]]}
        return None

    # === objects ===

    def split(self, path):
        """(collection key, name) of an object path, or None."""
        parts = path.strip("/").split("/")
        if parts[0] == "api":
            gv, rest = parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            return None
        ns = None
        # /namespaces/NS/RESOURCE[/NAME]; /namespaces[/NAME] is the namespace itself.
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest:
            return None
        resource, name = rest[0], (rest[1] if len(rest) > 1 else None)
        return (gv, ns, resource), name

    def _handler(self):
        kube = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def status(self, code, reason, message):
                self.send(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                 "message": message, "reason": reason, "code": code})

            def body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}")

            def do_GET(self):
                url = urlparse(self.path)
                doc = kube.discovery(url.path)
                if doc is not None:
                    return self.send(200, doc)
                where = kube.split(url.path)
                if not where:
                    return self.status(404, "NotFound", f"no such path {url.path}")
                (gv, ns, resource), name = where
                with kube.lock:
                    if name:
                        obj = kube.objects.get(((gv, ns, resource), name))
                        if obj is None:
                            return self.status(404, "NotFound", f'{resource} "{name}" not found')
                        return self.send(200, obj)
                    selector = parse_qs(url.query).get("labelSelector", [""])[0]
                    want = dict(kv.split("=", 1) for kv in selector.split(",") if "=" in kv)
                    items = [o for (key, _), o in kube.objects.items() if key == (gv, ns, resource)
                             and all(o["metadata"].get("labels", {}).get(k) == v for k, v in want.items())]
                kind = next((k for r, k, _ in kube.apis.get(gv, []) if r == resource), "Unknown")
                return self.send(200, {"kind": f"{kind}List", "apiVersion": gv,
                                       "metadata": {"resourceVersion": "1"}, "items": items})

            def do_POST(self):
                where = kube.split(urlparse(self.path).path)
                if not where:
                    return self.status(404, "NotFound", self.path)
                (gv, ns, resource), _ = where
                obj = self.body()
                meta = obj.setdefault("metadata", {})
                if ns and not meta.get("namespace"):
                    meta["namespace"] = ns
                meta.update({"uid": str(uuid.uuid4()), "resourceVersion": str(time.monotonic_ns()),
                             "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
                key = ((gv, ns, resource), meta.get("name"))
                with kube.lock:
                    if key in kube.objects:
                        return self.status(409, "AlreadyExists", f'{resource} "{meta.get("name")}" already exists')
                    kube.objects[key] = obj
                    kube.created.append(obj)
                return self.send(201, obj)

            def do_PUT(self):
                where = kube.split(urlparse(self.path).path)
                if not where or not where[1]:
                    return self.status(404, "NotFound", self.path)
                obj = self.body()
                obj.setdefault("metadata", {})["resourceVersion"] = str(time.monotonic_ns())
                with kube.lock:
                    kube.objects[where] = obj
                return self.send(200, obj)

            def do_PATCH(self):
                where = kube.split(urlparse(self.path).path)
                with kube.lock:
                    obj = kube.objects.get(where) if where else None
                if obj is None:
                    return self.status(404, "NotFound", self.path)
                return self.send(200, obj)

            def do_DELETE(self):
                where = kube.split(urlparse(self.path).path)
                with kube.lock:
                    obj = kube.objects.pop(where, None) if where else None
                if obj is None:
                    return self.status(404, "NotFound", self.path)
                return self.send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

        return Handler
