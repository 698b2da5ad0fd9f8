"""A small local mesh for the live Prometheus test: upstream apps, sidecars, load.

Everything binds 127.0.0.1 only. The upstream is a tiny HTTP app (threads in
this process) standing in for the bank app: it answers /accounts/{key} and,
for fault injection, /accounts/{key}/slow (300 ms) and /accounts/{key}/fail
(503 from the app). Each sidecar runs as its own process from
target/release/shardmesh-sidecar with its own config file: members found by
gossip (static seeds, an encrypted keyring), or a static member list.
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

NAMESPACE = "shardmesh-live"


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


class Upstream(BaseHTTPRequestHandler):
    """The stand-in app: every request succeeds unless its path asks otherwise."""

    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        if "/slow" in self.path:
            time.sleep(0.3)
        status = 503 if "/fail" in self.path else 200
        body = json.dumps({"balance": 0, "pod": self.server.pod}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args):
        pass


class Procs:
    """Processes this test started; stopped by their own pid, never by name."""

    def __init__(self, logdir):
        self.logdir = Path(logdir)
        self.procs = {}
        self.killed = set()

    def start(self, name, argv, env=None):
        log = open(self.logdir / f"{name}.log", "ab")
        log.write(f"=== {' '.join(map(str, argv))}\n".encode())
        log.flush()
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                             start_new_session=True)
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

    def stop_all(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 5
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


class QuietServer(ThreadingHTTPServer):
    """The upstream's server: a caller that gave up (a timeout) is not an error."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


# The services of the test mesh. `bank` keeps the default breaker so that
# failing answers open it; `ledger`'s breaker never opens so that its failing
# answers are retried until the retry budget refuses.
SERVICES = {
    "bank": {"pods": 3, "shards": 12, "resilience": {
        # Small limits so the fault phase reaches them quickly.
        "backpressure": {"maxConcurrency": 2, "queueSize": 2, "maxQueueWaitMs": 50},
        "breaker": {"consecutiveFailures": 5, "openMs": 1000, "maxOpenMs": 5000},
    }},
    "ledger": {"pods": 2, "shards": 8, "resilience": {
        "breaker": {"consecutiveFailures": 1000000, "failurePercent": 100, "minRequests": 1000000},
        "retries": {"attempts": 3, "budgetPercent": 1, "budgetMinPerSecond": 1},
    }},
}


class Mesh:
    """Sidecars of the SERVICES, each in front of its own upstream.

    mode "static": every sidecar gets the full member list in its config.
    mode "gossip": members are discovered by gossip from static seeds.
    """

    def __init__(self, sidecar_bin, workdir, procs, mode="static"):
        self.bin = sidecar_bin
        self.dir = Path(workdir)
        self.procs = procs
        self.mode = mode
        self.pods = []
        for service, spec in SERVICES.items():
            for i in range(spec["pods"]):
                self.pods.append({
                    "name": f"{service}-{i}", "service": service,
                    "outbound": free_port(), "inbound": free_port(), "admin": free_port(),
                    "gossip": free_port(), "app": free_port(),
                })
        self.servers = []
        self.keyring = self.dir / "gossip.keyring"

    def config(self, pod):
        services = []
        for name, spec in SERVICES.items():
            members = [{"name": p["name"], "inbound": f"127.0.0.1:{p['inbound']}",
                        "admin": f"127.0.0.1:{p['admin']}"} for p in self.pods if p["service"] == name]
            entry = {"name": name, "shards": spec["shards"], "routing": {"keyFromPath": "/accounts/{key}"},
                     "resilience": spec["resilience"]}
            if self.mode == "static":
                entry["members"] = members
            services.append(entry)
        cfg = {
            "pod": {"name": pod["name"], "service": pod["service"]},
            "listeners": {k: f"127.0.0.1:{pod[k]}" for k in ("outbound", "inbound", "admin", "gossip")},
            "app": {"address": f"127.0.0.1:{pod['app']}"},
            "services": services,
            "log": {"level": "warn"},
            "shutdownGraceMs": 1000,
        }
        if self.mode == "gossip":
            cfg["membership"] = {
                "seeds": {"static": [f"127.0.0.1:{p['gossip']}" for p in self.pods]},
                "gossip": {"enabled": True, "probeIntervalMs": 200, "probeTimeoutMs": 100,
                           "pushPullIntervalMs": 2000, "keyringFile": str(self.keyring)},
            }
        return cfg

    def start(self):
        # Gossip is always encrypted: one base64 32-byte key, the primary.
        self.keyring.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
        for pod in self.pods:
            srv = QuietServer(("127.0.0.1", pod["app"]), Upstream)
            srv.pod = pod["name"]
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            self.servers.append(srv)
            path = self.dir / f"{pod['name']}.yaml"
            path.write_text(yaml.safe_dump(self.config(pod), sort_keys=False))
            self.procs.start(pod["name"], [str(self.bin), "--config", str(path)])

    def metrics(self, pod):
        c = http.client.HTTPConnection("127.0.0.1", pod["admin"], timeout=1)
        try:
            c.request("GET", "/metrics")
            r = c.getresponse()
            return r.status, r.read().decode(errors="replace")
        finally:
            c.close()

    def wait_ready(self, deadline):
        """Waits until every sidecar's admin /metrics answers, or raises."""
        pending = list(self.pods)
        while pending and time.monotonic() < deadline:
            dead = [p["name"] for p in pending if p["name"] in self.procs.dead()]
            if dead:
                raise RuntimeError(f"sidecar {dead[0]} exited:\n{self.procs.log_tail(dead[0])}")
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
        return [{"targets": [f"127.0.0.1:{p['admin']}"], "labels": {"namespace": NAMESPACE, "pod": p["name"]}}
                for p in self.pods]

    def stop(self):
        for s in self.servers:
            s.shutdown()
            s.server_close()


class Load:
    """Bounded request loops through the sidecars' outbound listeners."""

    def __init__(self, mesh):
        self.mesh = mesh
        self.counts = {}
        self.lock = threading.Lock()

    def _one(self, port, method, path, headers, timeout=5):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
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

    def alive_pod(self, rng):
        return rng.choice([p for p in self.mesh.pods if p["name"] not in self.mesh.procs.dead()])

    def healthy(self, rng):
        pod = self.alive_pod(rng)
        service = rng.choice(list(SERVICES))
        key = f"acct-{rng.randrange(200)}"
        method, path = ("POST", f"/accounts/{key}/deposit") if rng.random() < 0.3 else ("GET", f"/accounts/{key}")
        headers = {"x-shardmesh-service": service}
        if method == "POST":
            headers["x-shardmesh-idempotent"] = "true"
        return pod["outbound"], method, path, headers

    def faults(self, rng):
        """A mix that makes every mesh reason and resilience series appear."""
        pod = self.alive_pod(rng)
        key = f"acct-{rng.randrange(200)}"
        kind = rng.randrange(7)
        base = {"x-shardmesh-service": "bank"}
        if kind == 0:
            return pod["outbound"], "GET", f"/accounts/{key}", {"x-shardmesh-service": "no-such-service"}
        if kind == 1:
            return pod["outbound"], "GET", "/accounts", {}
        if kind == 2:
            return pod["outbound"], "GET", f"/accounts/{key}/slow", {**base, "x-shardmesh-timeout-ms": "100"}
        if kind == 3:
            return pod["outbound"], "GET", f"/accounts/{key}/slow", base
        if kind == 4:
            return pod["outbound"], "GET", f"/accounts/{key}/fail", base
        # Failing ledger answers, retried until the retry budget refuses.
        return pod["outbound"], "GET", f"/accounts/{key}/fail", {"x-shardmesh-service": "ledger"}

    def garbage_gossip(self, count=50):
        """Sends malformed UDP packets to every gossip port (counted as bad packets)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(count):
                for p in self.mesh.pods:
                    s.sendto(os.urandom(64), ("127.0.0.1", p["gossip"]))
