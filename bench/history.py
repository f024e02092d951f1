"""S4: ``/history`` by offset and the ``after_seq``/``before_seq`` cursors on a >= 1M-message chat.

Sequential requests over keep-alive ``http.client`` connections to 127.0.0.1 (one
per server process), each timed from request to the last body byte. Every response
is checked: status 200, a full page, and the seq numbers the query asked for.
"""

from __future__ import annotations

import http.client
import json
import time

from .hist import Histogram
from .procs import Server

PAGE = 50


def queries(chat_id: int, last_seq: int) -> list[tuple[str, str, int]]:
    """(name, path, first seq expected) for each query the scenario measures."""
    base = f"/api/chats/{chat_id}/messages"
    return [
        ("offset 0", f"/history/{chat_id}?offset=0&limit={PAGE}", 1),
        ("offset 100k", f"/history/{chat_id}?offset=100000&limit={PAGE}", 100_001),
        ("offset 990k", f"/history/{chat_id}?offset=990000&limit={PAGE}", 990_001),
        ("after_seq 990k", f"{base}?after_seq=990000&limit={PAGE}", 990_001),
        (
            "before_seq latest",
            f"{base}?before_seq={last_seq + 1}&limit={PAGE}",
            last_seq - PAGE + 1,
        ),
        ("before_seq 10k", f"{base}?before_seq=10001&limit={PAGE}", 10_001 - PAGE),
    ]


def run(
    server: Server,
    *,
    chat_id: int,
    last_seq: int,
    token: str,
    requests: int,
    max_s: float,
) -> dict:
    """``requests`` timed requests per query after 5 warm-up ones; at most ``max_s`` each."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for port in server.ports]
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    out: dict = {
        "chat_id": chat_id,
        "last_seq": last_seq,
        "requests_each": requests,
        "queries": {},
    }
    meter = server.meter()
    try:
        for name, path, first_seq in queries(chat_id, last_seq):
            hist = Histogram()
            bad: dict[str, int] = {}
            skipped = 0
            # Five warm-up requests (not recorded), then the timed ones; each phase is
            # bounded by max_s, and at least one timed request is always made.
            for phase, count in (("warm", 5), ("timed", requests)):
                deadline = time.perf_counter() + max_s
                for i in range(count):
                    if i and time.perf_counter() > deadline:
                        if phase == "timed":
                            skipped = count - i
                        break
                    conn = conns[i % len(conns)]
                    t0 = time.perf_counter()
                    conn.request("GET", path, headers=headers)
                    response = conn.getresponse()
                    body = response.read()
                    elapsed = time.perf_counter() - t0
                    problem = _check(response.status, body, first_seq)
                    if problem:
                        bad[problem] = bad.get(problem, 0) + 1
                    if phase == "timed":
                        hist.record_s(elapsed)
            out["queries"][name] = {
                "path": path,
                "latency": hist.summary(),
                "bad_responses": bad,
                "skipped_at_time_bound": skipped,
            }
    finally:
        for conn in conns:
            conn.close()
    out["server"] = meter.stop().as_dict()
    return out


def _check(status: int, body: bytes, first_seq: int) -> str | None:
    if status != 200:
        return f"HTTP {status}: {body[:120]!r}"
    try:
        results = json.loads(body)["results"]
    except (ValueError, KeyError, TypeError):
        return "not a page"
    if len(results) != PAGE:
        return f"{len(results)} results"
    seqs = [m["seq"] for m in results]
    if seqs != list(range(first_seq, first_seq + PAGE)):
        return f"seq {seqs[0]}..{seqs[-1]}, expected {first_seq}..{first_seq + PAGE - 1}"
    return None
