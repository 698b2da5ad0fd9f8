"""Waits for and reports the phases of scripts/kube/bench-operator.

Reads the API server's audit log incrementally (Metadata level, stage
ResponseComplete) and groups requests by verb, resource and response code.
Every wait is bounded; a phase that does not finish in time fails the run.
"""

import collections
import json
import os
import subprocess
import sys
import time
from datetime import datetime

WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
OPERATOR = "bench-operator"


class Audit:
    """The audit log read from where the last read stopped. The API server
    rotates it at 100 MB (to audit-TIME.log beside it): the rest of the
    rotated file is read before the new one."""

    def __init__(self, path, namespace):
        self.path = path
        self.namespace = namespace
        self.inode = None
        self.offset = 0
        self.events = []

    def read(self):
        inode = os.stat(self.path).st_ino
        if self.inode is not None and inode != self.inode:
            folder = os.path.dirname(self.path)
            for name in os.listdir(folder):
                old = os.path.join(folder, name)
                if name.startswith("audit-") and name.endswith(".log") and os.stat(old).st_ino == self.inode:
                    self._read_from(old)
            self.offset = 0
        self.inode = inode
        self._read_from(self.path)

    def _read_from(self, path):
        with open(path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a half-written last line waits for the next read
        self.offset += end
        for line in data[:end].splitlines():
            e = json.loads(line)
            if e.get("stage") != "ResponseComplete":
                continue
            ref = e.get("objectRef", {})
            user = e["user"].get("username")
            if user != OPERATOR and not (ref.get("namespace") == self.namespace and e["verb"] in WRITE_VERBS):
                continue  # kept: what the report counts (the log is large)
            self.events.append({
                "_t": datetime.fromisoformat(e["requestReceivedTimestamp"]).timestamp(),
                "user": {"username": user},
                "verb": e["verb"],
                "objectRef": {k: ref[k] for k in ("resource", "subresource", "namespace") if k in ref},
                "responseStatus": {"code": e.get("responseStatus", {}).get("code", 0)},
            })

    def operator(self, t0=None, t1=None):
        return [
            e
            for e in self.events
            if e["user"].get("username") == OPERATOR
            and (t0 is None or e["_t"] >= t0)
            and (t1 is None or e["_t"] < t1)
        ]


def key(e):
    ref = e.get("objectRef", {})
    res = ref.get("resource", "?")
    if ref.get("subresource"):
        res += "/" + ref["subresource"]
    return f"{e['verb']} {res} {e.get('responseStatus', {}).get('code', '?')}"


def groups(events, writes_only=False):
    c = collections.Counter(key(e) for e in events if not writes_only or e["verb"] in WRITE_VERBS)
    return ", ".join(f"{k} ×{v}" for k, v in c.most_common()) or "none"


def writes(events):
    return sum(e["verb"] in WRITE_VERBS for e in events)


def main():
    kubectl, ns, n, start, pid, path = sys.argv[1:7]
    n, start = int(n), float(start)
    quiet, window = float(os.environ["QUIET"]), float(os.environ["WINDOW"])
    audit = Audit(path, ns)
    audit.read()

    def reconciled():
        out = subprocess.run([kubectl, "-n", ns, "get", "shsvc", "-o", "json"], capture_output=True, check=True).stdout
        items = json.loads(out)["items"]
        return sum(1 for s in items if s.get("status", {}).get("observedGeneration") == s["metadata"]["generation"])

    def alive():
        if not os.path.exists(f"/proc/{pid}"):
            sys.exit("the operator exited; see its log")

    deadline = time.time() + 1800
    while (k := reconciled()) < n:
        alive()
        audit.read()  # as it goes: the log may rotate meanwhile
        if time.time() > deadline:
            sys.exit(f"only {k}/{n} reconciled in 30 min")
        time.sleep(1)
    t_all = time.time()
    time.sleep(3)  # the audit log's batch flush (1 s)
    audit.read()
    first = audit.operator(t1=t_all)
    failed = [e for e in first if e.get("responseStatus", {}).get("code", 200) >= 400]
    print(f"ShardedServices: {n}")
    print(f"time to all reconciled (status for their generation): {t_all - start:.1f} s")
    print(f"operator requests until then: {len(first)} ({len(first) / n:.1f} per service), "
          f"writes {writes(first)} ({writes(first) / n:.1f} per service)")
    print(f"  writes: {groups(first, writes_only=True)}")
    print(f"  failed: {groups(failed)}")

    # The old benchmark's window: the 30 s right after the last status.
    while time.time() < t_all + 33:
        time.sleep(0.5)
    audit.read()
    right_after = audit.operator(t_all, t_all + 30)
    print(f"30 s right after: {writes(right_after)} writes ({groups(right_after, writes_only=True)}), "
          f"{len(right_after)} requests")

    # Settling: nothing but Events written into the namespace for `quiet` s.
    deadline = time.time() + 900
    while True:
        alive()
        audit.read()
        in_ns = [e for e in audit.events if e.get("objectRef", {}).get("namespace") == ns
                 and e["verb"] in WRITE_VERBS and e.get("objectRef", {}).get("resource") != "events"]
        last = max((e["_t"] for e in in_ns), default=start)
        if time.time() - last >= quiet + 2:  # +2: the audit batch flush
            break
        if time.time() > deadline:
            sys.exit(f"the namespace did not settle in 15 min: last write {time.time() - last:.0f} s ago")
        time.sleep(1)
    t_settled = last + quiet
    settle = audit.operator(t_all, t_settled)
    who = collections.Counter(e["user"].get("username") for e in in_ns if e["_t"] >= t_all)
    print(f"settled {t_settled - start:.1f} s after start ({quiet:.0f} s without a write in the namespace); "
          f"operator writes while settling: {writes(settle)} ({groups(settle, writes_only=True)})")
    print(f"  writers in the namespace while settling: {', '.join(f'{u} ×{c}' for u, c in who.most_common())}")

    t0 = time.time()
    while time.time() < t0 + window + 3:
        alive()
        time.sleep(0.5)
    audit.read()
    steady = audit.operator(t0, t0 + window)
    print(f"steady state, {window:.0f} s window: {writes(steady)} writes ({groups(steady, writes_only=True)}), "
          f"{len(steady)} requests ({groups(steady)})")

    status = open(f"/proc/{pid}/status").read().splitlines()
    hwm = next(l.split()[1] for l in status if l.startswith("VmHWM"))
    rss = next(l.split()[1] for l in status if l.startswith("VmRSS"))
    print(f"operator RSS: peak {int(hwm) / 1024:.1f} MiB, now {int(rss) / 1024:.1f} MiB")
    pods = json.loads(subprocess.run([kubectl, "-n", ns, "get", "pods", "-o", "json"], capture_output=True,
                                     check=True).stdout)["items"]
    print(f"pods in the namespace: {len(pods)}")


if __name__ == "__main__":
    main()
