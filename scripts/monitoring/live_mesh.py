"""Local meshes for the live Prometheus test, their faults, and their load.

Everything binds loopback addresses only. Two ways to start a mesh:

- RunnerMesh: `shardmesh-operator local up` (the local runner) runs the
  sample bank app (examples/bank.yaml) plus two services of the stand-in app
  (standin_app.py): `ledger`, whose breaker never opens so that its failing
  answers are retried until the retry budget refuses, and `audit`, with tiny
  backpressure limits and the default breaker, for shedding, timeouts and open
  breakers. `bank-load` drives the bank.
- SidecarMesh: the sidecars started directly (target/release/shardmesh-sidecar)
  in front of in-process stand-in apps, bank and ledger only; members found by
  gossip (static seeds, an encrypted keyring) or from a static member list.

Pods are dicts: name, service, and (host, port) tuples for outbound, inbound,
admin and gossip.
"""

import base64
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import yaml

import standin_app

NAMESPACE = "shardmesh-live"
ROOT = Path(__file__).resolve().parents[2]

# Resilience of the stand-in services (camelCase fields of the sidecar config
# and of a ShardedService's spec.resilience).
NEVER_OPENS = {"consecutiveFailures": 1000000, "failurePercent": 100, "minRequests": 1000000}
LEDGER = {"breaker": NEVER_OPENS, "retries": {"attempts": 3, "budgetPercent": 1, "budgetMinPerSecond": 1}}
SMALL = {
    "backpressure": {"maxConcurrency": 2, "queueSize": 2, "maxQueueWaitMs": 50},
    "breaker": {"consecutiveFailures": 5, "openMs": 1000, "maxOpenMs": 5000},
}

_TAKEN = set()


def free_port():
    """A loopback port free for TCP and UDP now, never handed out twice."""
    for _ in range(100):
        with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in _TAKEN:
            _TAKEN.add(port)
            return port
    raise RuntimeError("no free loopback port")


def hostport(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def get(addr, path, timeout=1):
    """(status, body text) of GET http://addr/path."""
    c = http.client.HTTPConnection(*addr, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        c.close()


class Procs:
    """Processes this test started; stopped by their own pid, never by name."""

    def __init__(self, logdir):
        self.logdir = Path(logdir)
        self.procs = {}
        self.killed = set()

    def start(self, name, argv, env=None, cwd=None):
        with open(self.logdir / f"{name}.log", "ab") as log:
            log.write(f"=== {' '.join(map(str, argv))}\n".encode())
            log.flush()
            p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                 start_new_session=True, cwd=cwd)
        self.procs[name] = p
        return p

    def kill(self, name, sig=signal.SIGKILL):
        p = self.procs.get(name)
        self.killed.add(name)
        if p and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)

    def dead(self):
        """Names of processes that exited (killed ones included)."""
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def crashed(self):
        """Names of processes that exited on their own."""
        return [n for n in self.dead() if n not in self.killed]

    def log_tail(self, name, lines=20):
        path = self.logdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop_all(self, grace=5):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + grace
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        self.procs.clear()
        self.killed.clear()


class Mesh:
    """What both meshes share: pods, readiness, scrape targets, kills."""

    mode = "?"

    def __init__(self, procs):
        self.procs = procs
        self.pods = []
        self.down = set()

    def metrics(self, pod):
        return get(pod["admin"], "/metrics")

    def wait_ready(self, deadline):
        """Waits until every sidecar's admin /metrics answers, or raises."""
        pending = list(self.pods)
        while pending and time.monotonic() < deadline:
            crashed = self.procs.crashed()
            if crashed:
                raise RuntimeError(f"{crashed[0]} exited:\n{self.procs.log_tail(crashed[0])}")
            try:
                if self.metrics(pending[0])[0] == 200:
                    pending.pop(0)
                    continue
            except OSError:
                pass
            time.sleep(0.1)
        if pending:
            raise RuntimeError(f"sidecars not ready in time: {[p['name'] for p in pending]}")

    def wait_converged(self, deadline):
        """True once every sidecar reports all pods alive (shardmesh_members)."""
        want = f'shardmesh_members{{state="alive"}} {len(self.pods)}'
        while time.monotonic() < deadline:
            try:
                if all(want in self.metrics(p)[1] for p in self.pods):
                    return True
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def scrape_targets(self):
        return [{"targets": ["%s:%d" % p["admin"]], "labels": {"namespace": NAMESPACE, "pod": p["name"]}}
                for p in self.pods]

    def alive(self, service=None):
        return [p for p in self.pods if p["name"] not in self.down and service in (None, p["service"])]


class SidecarMesh(Mesh):
    """Sidecars started directly, each in front of an in-process stand-in app.

    mode "static": every sidecar gets the full member list in its config.
    mode "gossip": members are discovered by gossip from static seeds.
    """

    SERVICES = {"bank": (3, 12, SMALL), "ledger": (2, 8, LEDGER)}

    def __init__(self, sidecar_bin, workdir, procs, mode="static"):
        super().__init__(procs)
        self.bin = sidecar_bin
        self.dir = Path(workdir)
        self.mode = mode
        self.fault_service = "bank"
        for service, (count, _, _) in self.SERVICES.items():
            for i in range(count):
                pod = {"name": f"{service}-{i}", "service": service, "app": free_port()}
                for k in ("outbound", "inbound", "admin", "gossip"):
                    pod[k] = ("127.0.0.1", free_port())
                self.pods.append(pod)
        self.servers = []
        self.keyring = self.dir / "gossip.keyring"

    def config(self, pod):
        services = []
        for name, (_, shards, resilience) in self.SERVICES.items():
            entry = {"name": name, "shards": shards, "routing": {"keyFromPath": "/accounts/{key}"},
                     "resilience": resilience}
            if self.mode == "static":
                entry["members"] = [{"name": p["name"], "inbound": "%s:%d" % p["inbound"],
                                     "admin": "%s:%d" % p["admin"]} for p in self.pods if p["service"] == name]
            services.append(entry)
        cfg = {
            "pod": {"name": pod["name"], "service": pod["service"]},
            "listeners": {k: "%s:%d" % pod[k] for k in ("outbound", "inbound", "admin", "gossip")},
            "app": {"address": f"127.0.0.1:{pod['app']}"},
            "services": services,
            "log": {"level": "warn"},
            "shutdownGraceMs": 1000,
        }
        if self.mode == "gossip":
            cfg["membership"] = {
                "seeds": {"static": ["%s:%d" % p["gossip"] for p in self.pods]},
                "gossip": {"enabled": True, "probeIntervalMs": 200, "probeTimeoutMs": 100,
                           "pushPullIntervalMs": 2000, "keyringFile": str(self.keyring)},
            }
        return cfg

    def start(self, deadline):
        # Gossip is always encrypted: one base64 32-byte key, the primary.
        self.keyring.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
        for pod in self.pods:
            self.servers.append(standin_app.serve("127.0.0.1", pod["app"], pod["name"]))
            path = self.dir / f"{pod['name']}.yaml"
            path.write_text(yaml.safe_dump(self.config(pod), sort_keys=False))
            self.procs.start(pod["name"], [str(self.bin), "--config", str(path)])
        self.wait_ready(deadline)

    def kill(self, name):
        self.down.add(name)
        self.procs.kill(name)

    def stop(self):
        for s in self.servers:
            s.shutdown()
            s.server_close()


class RunnerMesh(Mesh):
    """`shardmesh-operator local up`: the bank app and two stand-in services."""

    mode = "runner"
    BLOCK = 107  # loopback block of the pod IPs (the e2e scenarios use 101-105)

    def __init__(self, operator_bin, workdir, procs, python):
        super().__init__(procs)
        self.bin = operator_bin
        self.dir = Path(workdir)
        self.python = python
        self.run_dir = self.dir / "runner"
        self.fault_service = "audit"
        self.state = {}

    def manifests(self):
        standin = f"{self.python} {ROOT / 'scripts/monitoring/standin_app.py'}"

        def service(name, replicas, shards, resilience):
            return {
                "apiVersion": "shardmesh.io/v1alpha1", "kind": "ShardedService",
                "metadata": {"name": name, "annotations": {"shardmesh.io/local-command": standin}},
                "spec": {"replicas": replicas, "shards": shards, "appPort": 8080,
                         "routing": {"keyFromPath": "/accounts/{key}"}, "resilience": resilience,
                         "template": {"spec": {"containers": [{"name": name, "image": "example.invalid/standin:0"}]}}},
            }
        path = self.dir / "standins.yaml"
        path.write_text(yaml.safe_dump_all([service("ledger", 2, 8, LEDGER), service("audit", 2, 8, SMALL)],
                                           sort_keys=False))
        return [str(ROOT / "examples/bank.yaml"), str(path)]

    def read_state(self):
        try:
            self.state = json.loads((self.run_dir / "state.json").read_text())
        except (OSError, ValueError):
            return None
        self.pods = []
        for svc in self.state.get("services", []):
            for p in svc["pods"]:
                self.pods.append({"name": p["name"], "service": svc["name"], "app_pid": p.get("app_pid"),
                                  "sidecar_pid": p.get("sidecar_pid"),
                                  **{k: hostport(p[k]) for k in ("outbound", "inbound", "admin", "gossip")}})
        return self.state

    def start(self, deadline):
        # A long restart backoff: a pod this test kills stays down for the run.
        self.procs.start("runner", [str(self.bin), "local", "up", *self.manifests(), "--run-dir", str(self.run_dir),
                                    "--loopback-block", str(self.BLOCK), "--restart-backoff-ms", "600000"],
                         cwd=str(ROOT))
        while time.monotonic() < deadline:
            if "runner" in self.procs.dead():
                raise RuntimeError(f"local runner exited:\n{self.procs.log_tail('runner')}")
            state = self.read_state()
            if state and state.get("ready"):
                self.wait_ready(deadline)
                return
            time.sleep(0.25)
        raise RuntimeError(f"local runner not ready in time:\n{self.procs.log_tail('runner')}")

    def kill(self, name):
        """SIGKILL of a pod's app and sidecar (a pod that dies without leaving)."""
        self.down.add(name)
        pod = next(p for p in self.pods if p["name"] == name)
        for pid in (pod["app_pid"], pod["sidecar_pid"]):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, TypeError):
                pass

    def stop(self):
        # SIGTERM to the runner stops every pod, bounded (docs/local.md).
        self.procs.stop_all(grace=15)


class Load:
    """Bounded request loops through the sidecars' outbound listeners."""

    def __init__(self, mesh):
        self.mesh = mesh
        self.counts = {}
        self.lock = threading.Lock()

    def _one(self, addr, method, path, headers, timeout=5):
        try:
            c = http.client.HTTPConnection(*addr, timeout=timeout)
            c.request(method, path, body=b"{}" if method == "POST" else None, headers=headers)
            r = c.getresponse()
            r.read()
            key = f"{r.status} {r.getheader('x-shardmesh-error') or '-'}"
            c.close()
        except (OSError, http.client.HTTPException) as e:
            key = f"io-error {type(e).__name__}"
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def _loop(self, until, max_requests, make_request, pause):
        rng = random.Random(threading.get_ident())
        for _ in range(max_requests):
            if time.monotonic() >= until:
                return
            self._one(*make_request(rng))
            time.sleep(pause)

    def run(self, seconds, threads=4, max_requests=20_000, make_request=None, pause=0.005):
        make_request = make_request or self.healthy
        until = time.monotonic() + seconds
        ts = [threading.Thread(target=self._loop, args=(until, max_requests, make_request, pause), daemon=True)
              for _ in range(threads)]
        for t in ts:
            t.start()
        return ts

    def healthy(self, rng):
        """Reads and idempotent writes to the stand-in services (bank-load drives a real bank)."""
        pod = rng.choice(self.mesh.alive())
        services = sorted({p["service"] for p in self.mesh.pods})
        if self.mesh.mode == "runner":
            services.remove("bank")
        service = rng.choice(services)
        key = f"acct-{rng.randrange(200)}"
        method, path = ("POST", f"/accounts/{key}/deposit") if rng.random() < 0.3 else ("GET", f"/accounts/{key}")
        headers = {"x-shardmesh-service": service}
        if method == "POST":
            headers["x-shardmesh-idempotent"] = "true"
        return pod["outbound"], method, path, headers

    def faults(self, rng):
        """A mix that makes every mesh reason and resilience series appear."""
        pod = rng.choice(self.mesh.alive())
        key = f"acct-{rng.randrange(200)}"
        kind = rng.randrange(7)
        target = {"x-shardmesh-service": self.mesh.fault_service}
        if kind == 0:
            return pod["outbound"], "GET", f"/accounts/{key}", {"x-shardmesh-service": "no-such-service"}
        if kind == 1:
            return pod["outbound"], "GET", "/accounts", {}
        if kind == 2:
            return pod["outbound"], "GET", f"/accounts/{key}/slow", {**target, "x-shardmesh-timeout-ms": "100"}
        if kind == 3:
            return pod["outbound"], "GET", f"/accounts/{key}/slow", target
        if kind == 4:
            return pod["outbound"], "GET", f"/accounts/{key}/fail", target
        # Failing ledger answers, retried until the retry budget refuses.
        return pod["outbound"], "GET", f"/accounts/{key}/fail", {"x-shardmesh-service": "ledger"}

    def garbage_gossip(self, count=50):
        """Sends malformed UDP packets to every gossip port (counted as bad packets)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(count):
                for p in self.mesh.alive():
                    s.sendto(os.urandom(64), p["gossip"])
