"""S8: catching up on 10 000 changes of the 1M-message history chat through ``/changes``.

Setup (``setup_django.ensure_history_changes``) made the changes once through the services:
S8_REACTIONS reactions on messages spread over the chat, and S8_EDITS edits of some of them
(changed twice, so they must come back once, at their edit's version). A client that holds
the version before them pages ``GET /api/chats/{id}/changes?after_version=V&limit=S8_PAGE``
until ``has_more`` is false, taking each response's ``version`` as the next ``after_version``:
sequential requests over keep-alive ``http.client`` connections (one per server process), each
timed from request to the last body byte. Every page is checked, and the pages together must
hold exactly the changed messages, once each, in ascending versions, ending at the chat's version.
"""

from __future__ import annotations

import http.client
import itertools
import json
import time

from . import db
from .hist import Histogram
from .procs import Server
from .profiles import S8_PAGE, Profile

EMOJI = "👍"


def run(server: Server, *, fixture: dict | None, profile: Profile, pg_base: str, bench_db: str) -> dict:
    """``profile.s8_passes`` timed catch-ups after one warm-up request (not recorded)."""
    if not fixture:
        return {"error": "no history changes in the fixture"}
    if fixture.get("error"):
        return {"error": fixture["error"]}
    chat_id, v0 = fixture["chat_id"], fixture["version_before"]
    expected, edited = fixture["seqs"], set(fixture["edited_seqs"])
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for port in server.ports]
    headers = {"Authorization": f"Bearer {fixture['token']}", "Accept": "application/json"}
    max_pages = 2 * (len(expected) // S8_PAGE + 1)
    out: dict = {
        "chat_id": chat_id,
        "database": fixture.get("database"),
        "version_before": v0,
        "changes": fixture["version"] - v0,
        "changed_messages": len(expected),
        "page_limit": S8_PAGE,
        "passes": [],
    }
    pages = Histogram()
    bad: dict[str, int] = {}
    requests = 0

    def get(after: int) -> tuple[int, bytes, float]:
        nonlocal requests
        conn = conns[requests % len(conns)]
        requests += 1
        t0 = time.perf_counter()
        conn.request("GET", f"/api/chats/{chat_id}/changes?after_version={after}&limit={S8_PAGE}", headers=headers)
        response = conn.getresponse()
        body = response.read()
        return response.status, body, time.perf_counter() - t0

    def problem(text: str) -> None:
        bad[text] = bad.get(text, 0) + 1

    meter = server.meter()
    try:
        get(v0)  # warm-up
        for _ in range(profile.s8_passes):
            hist = Histogram()
            seen: list[tuple[int, int]] = []  # (version, seq) in the order the pages gave them
            after, final = v0, None
            t_pass = time.perf_counter()
            for _page in range(max_pages):
                status, body, elapsed = get(after)
                hist.record_s(elapsed)
                pages.record_s(elapsed)
                if status != 200:
                    problem(f"HTTP {status}: {body[:120]!r}")
                    break
                try:
                    data = json.loads(body)
                    results, version, has_more = data["results"], data["version"], data["has_more"]
                except (ValueError, KeyError, TypeError):
                    problem("not a changes page")
                    break
                for m in results:
                    seen.append((m["version"], m["seq"]))
                    if m.get("reactions") != [{"emoji": EMOJI, "count": 1, "me": True}]:
                        problem("a message without exactly the reader's one reaction")
                    if (m.get("edited_at") is not None) != (m["seq"] in edited) or (
                        m["seq"] in edited and not m.get("text", "").endswith(", edited")
                    ):
                        problem("edited state not as made")
                if not has_more:
                    final = version
                    break
                if len(results) != S8_PAGE:
                    problem(f"a page with has_more of {len(results)} results, not {S8_PAGE}")
                if not results or version != results[-1]["version"] or version <= after:
                    problem("has_more with a version that is not the last result's (or does not advance)")
                    break
                after = version
            else:
                problem(f"still has_more after {max_pages} pages")
            total = time.perf_counter() - t_pass
            seqs = [seq for _, seq in seen]
            versions = [v for v, _ in seen]
            checks = {
                "each changed message once": len(seqs) == len(set(seqs)) == len(expected) and sorted(seqs) == expected,
                "versions ascending": all(a < b for a, b in itertools.pairwise(versions)),
                "versions after the one held": not versions or versions[0] > v0,
                "final version = the chat's version": final is not None
                and final == fixture["version"] == db.chat_version(pg_base, bench_db, chat_id),
            }
            out["passes"].append(
                {
                    "pages": hist.count,
                    "results": len(seen),
                    "distinct": len(set(seqs)),
                    "final_version": final,
                    "total_s": round(total, 3),
                    "page_latency": hist.summary(),
                    "checks": checks,
                }
            )
    finally:
        for conn in conns:
            conn.close()
    out["server"] = meter.stop().as_dict()
    out["page_latency"] = pages.summary()
    out["bad_responses"] = bad
    passes = out["passes"]
    out["pages"] = passes[0]["pages"] if passes else 0
    totals = sorted(p["total_s"] for p in passes)
    out["total_s"] = totals[len(totals) // 2] if totals else None  # the median pass
    failed = sorted({name for p in passes for name, ok in p["checks"].items() if not ok})
    out["exact"] = bool(passes) and not failed and not bad
    out["checks"] = {
        "/changes pages: each changed message once, versions ascending, final version = chat.version": (
            "ok"
            if passes and not failed and not bad
            else "VIOLATED: " + "; ".join(failed + [f"{n}x {text}" for text, n in bad.items()])
        )
    }
    return out
