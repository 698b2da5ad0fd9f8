"""Summarises one run of scripts/bench/sidecar.sh as Markdown.

Usage: python3 scripts/bench/report.py target/bench/RUN

Reads RUN/results.tsv (one row per round and case), RUN/paced.tsv (the
half-saturation latency runs) and RUN/extra.tsv (the idle and
1,000-connection figures) and prints the tables
that docs/benchmarks/sidecar.md shows, with the issue's targets beside the
measured figures. Ratios are taken within a round (the machine is shared and
noisy, so a case is only compared with "direct" measured minutes apart).
"""

import csv
import statistics
import sys
from pathlib import Path

CASES = ["direct", "l4-relay", "nginx", "haproxy", "envoy", "sidecar-hop", "full-path"]
LABELS = {
    "direct": "direct (wrk → app)",
    "l4-relay": "L4 relay, no HTTP (the floor)",
    "nginx": "nginx 1.22 (proxy_pass, keepalive)",
    "haproxy": "HAProxy 2.6",
    "envoy": "Envoy 1.40 (retries + breakers)",
    "sidecar-hop": "shardmesh: one sidecar hop",
    "full-path": "shardmesh: full path (A out → h2c → B in)",
}


def load(run: Path):
    rows = list(csv.DictReader(open(run / "results.tsv"), delimiter="\t"))
    extra = {}
    for line in open(run / "extra.tsv"):
        key, _, value = line.rstrip("\n").partition("\t")
        extra[key] = value
    return rows, extra


def by_round(rows):
    out = {}
    for r in rows:
        out.setdefault(r["round"], {})[r["case"]] = r
    return out


def load_average(run: Path) -> str:
    """The machine's load averages recorded before the run, for the table's caption."""
    load_file = run / "load.txt"
    return load_file.read_text().strip().replace("load ", "").replace("\n", "; ") if load_file.exists() else "?"


def mib(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def ratio_range(values):
    lo, hi = min(values), max(values)
    return f"{lo:.2f}×" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}–{hi:.2f}×"


def main():
    run = Path(sys.argv[1])
    rows, extra = load(run)
    rounds = by_round(rows)
    # Runs from before the L4 relay was added have no such rows.
    cases = [case for case in CASES if any(r["case"] == case for r in rows)]
    med = lambda case, key: statistics.median(  # noqa: E731
        float(r[key]) for r in rows if r["case"] == case
    )
    ratios = {
        case: [float(rd[case]["req_s"]) / float(rd["direct"]["req_s"]) for rd in rounds.values()]
        for case in cases
    }

    print(
        f"Rounds: {len(rounds)}; medians over rounds, ratio ranges over rounds. "
        f"Load average (1, 5, 15 min) {load_average(run)}.\n"
    )
    print("| path | req/s | × direct | p50 | p99 | proxy CPU µs/req | app CPU µs/req | RSS after run (MiB) | peak RSS (MiB) | idle RSS (MiB) | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in cases:
        errors = sum(int(r["errors"]) for r in rows if r["case"] == case)
        proxy = "—" if case == "direct" else f"{med(case, 'proxy_cpu_us'):.1f}"
        rss = "—" if case == "direct" else mib(max(float(r["rss_kb"]) for r in rows if r["case"] == case))
        hwm = "—" if case == "direct" else mib(max(float(r["hwm_kb"]) for r in rows if r["case"] == case))
        idle = "—" if case == "direct" else mib(med(case, "idle_kb"))
        print(
            f"| {LABELS[case]} | {med(case, 'req_s'):,.0f} | {ratio_range(ratios[case])} "
            f"| {med(case, 'p50_us') / 1000:.2f} ms | {med(case, 'p99_us') / 1000:.2f} ms "
            f"| {proxy} | {med(case, 'app_cpu_us'):.1f} | {rss} | {hwm} | {idle} | {errors} |"
        )

    hop_vs_nginx = [float(rd["sidecar-hop"]["req_s"]) / float(rd["nginx"]["req_s"]) for rd in rounds.values()]
    hop_vs_envoy = [float(rd["sidecar-hop"]["req_s"]) / float(rd["envoy"]["req_s"]) for rd in rounds.values()]
    cpu = med("sidecar-hop", "proxy_cpu_us")
    paced = list(csv.DictReader(open(run / "paced.tsv"), delimiter="\t"))
    half_cases = [name for name in ("direct", "l4-relay", "nginx", "sidecar-hop") if any(r["case"] == name for r in paced)]
    half = {
        name: {
            key: statistics.median(float(r[key]) for r in paced if r["case"] == name)
            for key in ("p50_us", "p90_us", "p99_us", "p999_us", "achieved")
        }
        for name in half_cases
    }
    # Added tail per round (hop minus direct of the same round), median.
    added = lambda name: statistics.median(  # noqa: E731
        float(h["p99_us"]) - float(d["p99_us"])
        for h in paced
        for d in paced
        if h["round"] == d["round"] and h["case"] == name and d["case"] == "direct"
    ) / 1000
    added_p99, nginx_added = added("sidecar-hop"), added("nginx")
    nginx_vs_envoy = [float(rd["nginx"]["req_s"]) / float(rd["envoy"]["req_s"]) for rd in rounds.values()]
    idle = float(extra["idle_sidecar_rss_kb"])
    c1000 = max(float(extra["c1000_rss_mid_kb"]), float(extra["c1000_hwm_kb"]))
    verdict = lambda ok: "**meets**" if ok else "**misses**"  # noqa: E731

    print("\n| target (one sidecar hop, one worker thread) | measured | verdict |")
    print("| --- | --- | --- |")
    print(f"| throughput ≥ nginx's | {ratio_range(hop_vs_nginx)} nginx | {verdict(min(hop_vs_nginx) >= 1)} |")
    print(
        f"| throughput ≥ 3× Envoy's | {ratio_range(hop_vs_envoy)} Envoy (nginx: {ratio_range(nginx_vs_envoy)}) "
        f"| {verdict(min(hop_vs_envoy) >= 3)} |"
    )
    # The issue measured nginx at 9.3 µs per request on a quieter machine;
    # the hop's CPU relative to nginx's in the same round carries over.
    cpu_vs_nginx = [
        float(rd["sidecar-hop"]["proxy_cpu_us"]) / float(rd["nginx"]["proxy_cpu_us"]) for rd in rounds.values()
    ]
    print(
        f"| CPU per proxied request ≤ 10 µs | {cpu:.1f} µs; {ratio_range(cpu_vs_nginx)} nginx's per round "
        f"(≈ {statistics.median(cpu_vs_nginx) * 9.3:.1f} µs at the issue's 9.3 µs for nginx) | {verdict(cpu <= 10)} |"
    )
    print(
        f"| added p99 ≤ 0.5 ms at half of saturation | {added_p99:+.2f} ms (median over rounds of hop p99 "
        f"minus direct p99; nginx {nginx_added:+.2f} ms) at {half['sidecar-hop']['achieved']:,.0f} req/s, "
        f"paced | {verdict(added_p99 <= 0.5)} |"
    )
    if "l4-relay" in cases:
        # What each proxy spends above the floor, per round, then the median.
        above = lambda case: statistics.median(  # noqa: E731
            float(rd[case]["proxy_cpu_us"]) - float(rd["l4-relay"]["proxy_cpu_us"]) for rd in rounds.values()
        )
        relay_added = added("l4-relay") if "l4-relay" in half_cases else float("nan")
        print(
            f"| (the floor: an L4 relay with no HTTP) | {med('l4-relay', 'proxy_cpu_us'):.1f} µs per request, "
            f"{ratio_range([float(rd['l4-relay']['req_s']) / float(rd['envoy']['req_s']) for rd in rounds.values()])} Envoy, "
            f"added p99 {relay_added:+.2f} ms; above it: hop {above('sidecar-hop'):+.1f} µs, "
            f"nginx {above('nginx'):+.1f} µs, Envoy {above('envoy'):+.1f} µs | — |"
        )
    print(f"| idle RSS ≤ 10 MiB | {mib(idle)} MiB | {verdict(idle <= 10 * 1024)} |")
    held_kb, _, held_note = extra.get("c1000_idle_conns_kb", "0\t?").partition("\t")
    print(
        f"| RSS with 1,000 idle keep-alive connections open ≤ 64 MiB | {mib(float(held_kb))} MiB ({held_note}) "
        f"| {verdict(float(held_kb) <= 64 * 1024)} |"
    )
    print(
        f"| RSS under 1,000 busy connections ≤ 64 MiB | {mib(c1000)} MiB "
        f"(mid-run RSS {mib(float(extra['c1000_rss_mid_kb']))}, peak {mib(float(extra['c1000_hwm_kb']))}; "
        f"{extra['c1000_fds_mid']} fds, {extra['c1000_req_s']} req/s, {extra['c1000_errors']} errors) "
        f"| {verdict(c1000 <= 64 * 1024)} |"
    )
    print(
        f"\nHalf-saturation runs (paced-load, 16 connections, constant rate; medians over rounds): "
        f"target {extra['half_target_req_s']} req/s."
    )
    print("\n| path | achieved req/s | p50 | p90 | p99 | p99.9 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in half_cases:
        h = half[name]
        print(
            f"| {LABELS[name]} | {h['achieved']:,.0f} | {h['p50_us'] / 1000:.2f} ms | {h['p90_us'] / 1000:.2f} ms "
            f"| {h['p99_us'] / 1000:.2f} ms | {h['p999_us'] / 1000:.2f} ms |"
        )


if __name__ == "__main__":
    main()
