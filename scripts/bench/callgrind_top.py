"""Per-request figures from one callgrind dump.

Usage: python3 scripts/bench/callgrind_top.py CALLGRIND_OUT REQUESTS [TOP]

Prints the user-space instructions per request (Ir / REQUESTS), the calls
per request to malloc, free and memcpy, and the TOP functions by self cost.
callgrind_annotate needs no help for most of this, but it attributes nothing
useful to tokio's worker threads when the dump is taken mid-run, so the
file is read directly: `fn=` starts a function, a cost line after `calls=`
is the inclusive cost of that call (skipped for self cost).
"""

import collections
import re
import sys


def parse(path):
    names = {}

    def name(text):
        m = re.match(r"\((\d+)\)(?: (.*))?", text)
        if not m:
            return text
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), text)

    self_cost = collections.Counter()
    calls = collections.Counter()
    fn = cfn = None
    after_calls = False
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("fn="):
            fn = name(line[3:])
        elif line.startswith("cfn="):
            cfn = name(line[4:])
        elif line.startswith("calls="):
            calls[cfn] += int(line[6:].split()[0])
            after_calls = True
        elif line and (line[0].isdigit() or line[0] in "+-*"):
            parts = line.split()
            if after_calls:
                after_calls = False
            elif len(parts) >= 2 and fn:
                self_cost[fn] += int(parts[1])
    return self_cost, calls


def main():
    path, requests = sys.argv[1], float(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
    self_cost, calls = parse(path)
    total = sum(self_cost.values())
    memcpy = sum(c for f, c in calls.items() if f and "memcpy" in f)
    print(f"instructions/request: {total / requests:,.0f}")
    print(f"malloc calls/request: {calls['malloc'] / requests:.1f}")
    print(f"free calls/request: {calls['free'] / requests:.1f}")
    print(f"memcpy calls/request: {memcpy / requests:.1f}")
    print(f"top {top} functions by self instructions:")
    for f, c in self_cost.most_common(top):
        print(f"  {c * 100 / total:5.1f}%  {c / requests:7,.0f}/req  {f[:160]}")


if __name__ == "__main__":
    main()
