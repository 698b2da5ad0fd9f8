"""Holds N keep-alive HTTP/1.1 connections open to 127.0.0.1:PORT.

Usage: python3 scripts/bench/hold_connections.py PORT N SECONDS

Each connection sends one request (so the server has set up everything a
served connection keeps) and reads its answer; then all N stay open, idle,
for SECONDS and are closed. Prints how many connections got a 200. Used by
scripts/bench/sidecar.sh to read a sidecar's RSS with 1,000 open connections.
"""

import socket
import sys
import time

REQUEST = b"GET /bench HTTP/1.1\r\nHost: bench\r\nx-shardmesh-service: bench\r\n\r\n"


def main():
    port, n, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    conns, ok = [], 0
    deadline = time.monotonic() + 60
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(REQUEST)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
        ok += answer.startswith(b"HTTP/1.1 200")
        conns.append(s)
    print(f"holding {len(conns)} connections ({ok} answered 200)", flush=True)
    time.sleep(seconds)
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
