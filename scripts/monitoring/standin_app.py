"""A stand-in app for the live monitoring test: answers every request, except
/…/slow (300 ms late) and /…/fail (503 from the app), so that the test can
provoke timeouts, load shedding, open breakers and retries on purpose.

Run by the local runner as a ShardedService's `shardmesh.io/local-command`
(it listens on SHARDMESH_APP_LISTEN), or in-process by live_mesh.py.
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Upstream(BaseHTTPRequestHandler):
    """Every request succeeds unless its path asks otherwise."""

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


class QuietServer(ThreadingHTTPServer):
    """A caller that gave up (a timeout) is not an error worth a traceback."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


def serve(host, port, pod):
    """Starts a server on a thread; returns it (call shutdown() to stop)."""
    srv = QuietServer((host, port), Upstream)
    srv.pod = pod
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    host, _, port = os.environ["SHARDMESH_APP_LISTEN"].rpartition(":")
    srv = QuietServer((host, int(port)), Upstream)
    srv.pod = os.environ.get("SHARDMESH_POD_NAME", "standin")
    print(f"stand-in app {srv.pod} listening on {host}:{port}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
