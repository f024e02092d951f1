"""Fixed-window counters shared by every process through the cache: one helper for every limit.

``over = yield from count_in_window("socket-user", str(user_id), limit=30, seconds=60)`` counts
one event of that identity in the current window (one pipelined round trip to Redis from the
event loop, ``cache.add`` + ``cache.incr`` in a request thread) and is answered with None while
the window holds at most ``limit`` events, else with the seconds until the window ends (the
``retry_after`` of the refusal). Outside a plan, :func:`count` runs the same steps synchronously.
"""

from __future__ import annotations

import time

from .plans import CountInWindow, Plan, run_sync


def window(name: str, ident: str, *, seconds: int, now: float | None = None) -> tuple[str, float]:
    """The cache key of ``ident``'s current window of ``name``, and the seconds left in it."""
    seconds = max(1, seconds)
    now = time.time() if now is None else now
    bucket = int(now // seconds)
    return f"rl:{name}:{ident}:{bucket}", (bucket + 1) * seconds - now


def count_in_window(
    name: str, ident: str, *, limit: int, seconds: int, now: float | None = None, amount: int = 1
) -> Plan[float | None]:
    """Count ``amount`` events (one attempt of a batch); None while within ``limit`` (or
    ``limit <= 0``: no limit), else the retry time."""
    if limit <= 0:
        return None
    key, left = window(name, ident, seconds=seconds, now=now)
    count = yield CountInWindow(key, ttl=max(1, seconds) * 2, amount=amount)
    return None if count <= limit else left


def count(name: str, ident: str, *, limit: int, seconds: int, now: float | None = None) -> float | None:
    """:func:`count_in_window` in this thread, on Django's cache."""
    return run_sync(count_in_window(name, ident, limit=limit, seconds=seconds, now=now))
