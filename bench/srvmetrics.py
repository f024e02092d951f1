"""The server's own view of a scenario: its histograms from ``/metrics``.

The open-loop client measures from the scheduled send to the reply it read, so its figures
include its own stalls (1 000 sockets' worth of incoming frames in one process). The server
times each frame from its arrival to the end of its handling; the difference between the two
tells the server's share. Prometheus buckets make these upper bounds ("p99 <= 10 ms"), not
exact values. Only ours exposes it; for other servers the result is None.
"""

from __future__ import annotations

import http.client
import re

from .procs import Server

_BUCKET = re.compile(r'^messenger_socket_frame_seconds_bucket\{le="([^"]+)",type="([^"]+)"\} (\S+)$')
_ANY_BUCKET = re.compile(r"^(\w+)_bucket\{(.*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')

# What the stall diagnostics read during S1 (see docs/PERFORMANCE.md, "The S1 stalls").
DIAGNOSTICS = {
    "loop_lag": ("messenger_event_loop_lag_seconds", {}),
    "stmt_send": ("messenger_db_statement_seconds", {"statement": "send"}),
    "stmt_after_send": ("messenger_db_statement_seconds", {"statement": "after_send"}),
    "gc_gen2": ("messenger_gc_pause_seconds", {"generation": "2"}),
    "frame_send": ("messenger_socket_frame_seconds", {"type": "message.send"}),
    "fanout": ("messenger_fanout_latency_seconds", {}),
    # Statements per group commit (a size, not seconds: its "_le_ms" bounds are sizes x 1000).
    "group_commit": ("messenger_db_group_commit_size", {}),
}


def _scrape(server: Server) -> list[str] | None:
    lines: list[str] = []
    for port in server.ports:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            body = response.read().decode()
            conn.close()
        except OSError:
            return None
        if response.status != 200:
            return None
        lines += body.splitlines()
    return lines


def diagnostics(server: Server) -> dict[str, dict[float, float]] | None:
    """Cumulative buckets of every :data:`DIAGNOSTICS` histogram, summed over the processes."""
    lines = _scrape(server)
    if lines is None:
        return None
    out: dict[str, dict[float, float]] = {key: {} for key in DIAGNOSTICS}
    for line in lines:
        match = _ANY_BUCKET.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group(2)))
        le = float(labels.pop("le"))
        for key, (name, wanted) in DIAGNOSTICS.items():
            if match.group(1) == name and all(labels.get(k) == v for k, v in wanted.items()):
                out[key][le] = out[key].get(le, 0.0) + float(match.group(3))
    return out


def diagnostics_between(before: dict | None, after: dict | None) -> dict | None:
    """Per diagnostic histogram: count and p50/p99/max bucket bounds (ms) between two snapshots."""
    if not before or not after:
        return None
    return {key: quantile_bounds(before[key], after[key], qs=(0.5, 0.99, 1.0)) for key in after}


def frame_buckets(server: Server, frame_type: str) -> dict[float, float] | None:
    """Cumulative bucket counts (upper bound in s -> frames) over all of the server's processes."""
    lines = _scrape(server)
    if lines is None:
        return None
    total: dict[float, float] = {}
    for line in lines:
        match = _BUCKET.match(line)
        if match and match.group(2) == frame_type:
            le = float(match.group(1))
            total[le] = total.get(le, 0.0) + float(match.group(3))
    return total or None


def quantile_bounds(before: dict | None, after: dict | None, qs=(0.5, 0.99, 0.999)) -> dict | None:
    """For frames counted between two snapshots: their number and, per quantile, the bucket bound (ms)."""
    if not before or not after:
        return None
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    n = counts[-1]
    if n <= 0:
        return {"count": 0}
    out: dict = {"count": int(n)}
    for q in qs:
        bound = next(b for b, c in zip(bounds, counts, strict=True) if c >= q * n)
        out[f"p{q * 100:g}_le_ms"] = None if bound == float("inf") else round(bound * 1000, 3)
    return out
