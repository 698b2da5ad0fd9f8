"""Small PromQL helpers shared by the monitoring checks.

Not a parser: Prometheus itself (promtool, the HTTP API) judges syntax. These
helpers only find metric names and label names in an expression, substitute
Grafana variables, and split an alert expression into the signals it compares.
"""

import re

# The metrics contract of DESIGN.md: metric -> label names it carries itself.
# Target labels (namespace, pod, job, instance) come from the scrape.
SIDECAR_METRICS = {
    "shardmesh_requests_total": {"direction", "service", "code", "reason"},
    "shardmesh_request_duration_seconds": {"direction", "service"},
    "shardmesh_retries_total": {"service"},
    "shardmesh_retry_budget_exhausted_total": {"service"},
    "shardmesh_circuit_breaker_state": {"peer"},
    "shardmesh_circuit_breaker_transitions_total": {"peer", "to"},
    "shardmesh_load_shed_total": {"service"},
    "shardmesh_inflight_requests": {"direction", "service"},
    "shardmesh_members": {"state"},
    "shardmesh_gossip_probes_total": {"result"},
    "shardmesh_gossip_suspicions_total": set(),
    "shardmesh_gossip_refutations_total": set(),
    "shardmesh_gossip_bad_packets_total": {"reason"},
    "shardmesh_shards_owned": {"service"},
    "shardmesh_shard_handoffs_total": {"service"},
    "shardmesh_shard_terms_lost_total": {"service"},
    "shardmesh_shard_handoff_duration_seconds": set(),
}
OPERATOR_METRICS = {
    "shardmesh_reconciliations_total": set(),
    # error: Error::metric_label() of the operator (conflict, api, invalid-spec, ...).
    "shardmesh_reconcile_errors_total": {"error"},
    "shardmesh_reconcile_duration_seconds": set(),
}
HISTOGRAMS = {
    "shardmesh_request_duration_seconds",
    "shardmesh_shard_handoff_duration_seconds",
    "shardmesh_reconcile_duration_seconds",
}
TARGET_LABELS = {"namespace", "pod", "job", "instance", "__name__", "le"}
# Series Prometheus makes itself.
BUILTIN_METRICS = {"up": set(), "scrape_duration_seconds": set()}


def known_metrics():
    """Every metric name an expression may use, histogram series included."""
    out = {}
    for table in (SIDECAR_METRICS, OPERATOR_METRICS, BUILTIN_METRICS):
        for name, labels in table.items():
            out[name] = labels
            if name in HISTOGRAMS:
                for suffix in ("_bucket", "_sum", "_count"):
                    out[name + suffix] = labels
    return out


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_METRIC = re.compile(r"\b(shardmesh_[a-z0-9_]+|up|scrape_duration_seconds)\b(?!\s*\()")
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\")")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def metrics_in(expr):
    """Metric names used in EXPR (strings removed first)."""
    bare = _STRING.sub('""', expr)
    return sorted(set(_METRIC.findall(bare)))


def label_uses(expr):
    """(metric, label) pairs of selectors, and label names in grouping clauses."""
    pairs = []
    for metric, body in _SELECTOR.findall(expr):
        for label, _, _ in _MATCHER.findall(body):
            pairs.append((metric, label))
    grouping = set()
    for body in _GROUPING.findall(_STRING.sub('""', expr)):
        grouping.update(x.strip() for x in body.split(",") if x.strip())
    return pairs, grouping


def check_expr(expr):
    """Problems with metric and label names in EXPR (empty when fine)."""
    known = known_metrics()
    problems = []
    used = metrics_in(expr)
    for m in used:
        if m not in known:
            problems.append(f"unknown metric {m}")
    all_labels = set(TARGET_LABELS)
    for m in used:
        all_labels |= known.get(m, set())
    pairs, grouping = label_uses(expr)
    for metric, label in pairs:
        if metric in known and label not in known[metric] | TARGET_LABELS:
            problems.append(f"{metric} has no label {label}")
    for label in sorted(grouping):
        if label not in all_labels:
            problems.append(f"grouping label {label} is on none of {used}")
    return problems


def substitute_grafana(expr, values=None):
    """EXPR with Grafana's variables replaced so that Prometheus can run it.

    Multi-value variables default to `.+` (regex matchers use them); interval
    variables become 1m (the live test scrapes every 2s, so 1m holds plenty).
    """
    values = {"namespace": ".+", "service": ".+", "pod": ".+", "peer": ".+", **(values or {})}
    out = expr
    for key in ("__rate_interval", "__interval", "__range"):
        out = out.replace("$" + key, "1m").replace("${" + key + "}", "1m")
    for key, val in values.items():
        out = re.sub(r"\$\{" + key + r"(?::[a-z]+)?\}", val, out)
        out = re.sub(r"\$" + key + r"\b", val, out)
    return out


def _top_level_split(expr, words):
    """Splits EXPR at the binary operators WORDS that stand outside any bracket."""
    parts, depth, start, i = [], 0, 0, 0
    bare = _STRING.sub(lambda m: "_" * len(m.group(0)), expr)
    while i < len(bare):
        c = bare[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            for w in words:
                if bare.startswith(w, i) and (not w[0].isalpha() or _word_at(bare, i, w)):
                    parts.append((expr[start:i], w))
                    start = i + len(w)
                    i = start - 1
                    break
        i += 1
    parts.append((expr[start:], None))
    return parts


def _word_at(s, i, w):
    before = s[i - 1] if i > 0 else " "
    after = s[i + len(w)] if i + len(w) < len(s) else " "
    return not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_")


def alert_signals(expr):
    """The signals an alert expression compares, each of which must return data.

    `A > 1 and B > 2` gives [A, B]; `absent(X == 1)` gives [X]. The threshold
    side of each comparison is dropped: a healthy mesh does not fire alerts,
    but every series an alert watches must exist.
    """
    signals = []
    for part, _ in _top_level_split(expr.strip(), ["and", "or", "unless"]):
        part = part.strip()
        m = re.fullmatch(r"absent\((.*)\)", part, re.S)
        if m:
            part = m.group(1).strip()
        lhs = _top_level_split(part, ["==", "!=", ">=", "<=", ">", "<"])[0][0].strip()
        lhs = re.sub(r"^bool\s+", "", lhs)
        signals.append(lhs)
    return signals
