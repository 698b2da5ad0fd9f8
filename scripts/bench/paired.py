"""Summarises a PAIRS=N run of scripts/bench/sidecar.sh as Markdown.

Usage: python3 scripts/bench/paired.py target/bench/RUN

Each short round measured the L4 relay, nginx, Envoy and the sidecar hop one
after another, in an order that rotates from round to round. A ratio is taken
within a round only, so the machine's slow drifts cancel; the many rounds
give its median and spread, and how often it met the issue's bar.
"""

import statistics
import sys
from pathlib import Path

# The run's files are read as report.py reads them (this directory is on
# sys.path when the script runs).
from report import by_round, load, load_average


def quartiles(values):
    values = sorted(values)
    if len(values) < 4:
        return values[0], statistics.median(values), values[-1]
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return q1, q2, q3


def main():
    run = Path(sys.argv[1])
    rows, _ = load(run)
    rounds = [rd for rd in by_round(rows).values() if len(rd) == 4]
    if not rounds:
        sys.exit("no complete round in results.tsv")

    def ratio(a, b, key="req_s"):
        return [float(rd[a][key]) / float(rd[b][key]) for rd in rounds]

    print(f"{len(rounds)} rounds. Load average (1, 5, 15 min) {load_average(run)}.\n")
    print("| ratio (within a round) | median | quartiles | min–max | rounds at or above the bar |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, values, bar in [
        ("hop ÷ nginx, req/s (bar 1)", ratio("sidecar-hop", "nginx"), 1.0),
        ("nginx ÷ hop, CPU per request (bar 1)", ratio("nginx", "sidecar-hop", "proxy_cpu_us"), 1.0),
        ("hop ÷ Envoy, req/s (bar 3)", ratio("sidecar-hop", "envoy"), 3.0),
        ("nginx ÷ Envoy, req/s (bar 3)", ratio("nginx", "envoy"), 3.0),
        ("L4 relay ÷ Envoy, req/s (bar 3)", ratio("l4-relay", "envoy"), 3.0),
        ("hop ÷ L4 relay, req/s", ratio("sidecar-hop", "l4-relay"), None),
        ("nginx ÷ L4 relay, req/s", ratio("nginx", "l4-relay"), None),
    ]:
        q1, q2, q3 = quartiles(values)
        met = "—" if bar is None else f"{sum(v >= bar for v in values)} of {len(values)}"
        print(f"| {label} | {q2:.2f}× | {q1:.2f}–{q3:.2f}× | {min(values):.2f}–{max(values):.2f}× | {met} |")

    print("\n| case | median req/s | median CPU µs/req | CPU above the L4 relay, µs (median over rounds) |")
    print("| --- | ---: | ---: | ---: |")
    for case in ("l4-relay", "nginx", "envoy", "sidecar-hop"):
        req_s = statistics.median(float(rd[case]["req_s"]) for rd in rounds)
        cpu = statistics.median(float(rd[case]["proxy_cpu_us"]) for rd in rounds)
        above = statistics.median(
            float(rd[case]["proxy_cpu_us"]) - float(rd["l4-relay"]["proxy_cpu_us"]) for rd in rounds
        )
        print(f"| {case} | {req_s:,.0f} | {cpu:.1f} | {above:+.1f} |")


if __name__ == "__main__":
    main()
