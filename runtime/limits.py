"""Fixed-window counters shared by every process through the cache: one helper for every limit.

``over = yield from count_in_window("socket-user", str(user_id), limit=30, seconds=60)`` counts
one event of that identity in the current window (one pipelined round trip to Redis from the
event loop, ``cache.add`` + ``cache.incr`` in a request thread) and is answered with None while
the window holds at most ``limit`` events, else with the seconds until the window ends (the
``retry_after`` of the refusal). Outside a plan, :func:`count` runs the same steps synchronously.

:class:`RateLimit` is a per-user limit read from settings, with its refusal (``RateLimited``,
code ``rate_limited``); :func:`over` counts an attempt in a plan, :func:`check` from a request
thread. The apps define their limits with it (``chats/services/limits.py``, ``attachments``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings

from ops import metrics
from ops.errors import RateLimited

from .plans import CountInWindow, Plan, run_sync

DAY = 86_400


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


@dataclass(frozen=True)
class RateLimit:
    """``limit_setting`` actions per user per ``window_setting`` seconds (or ``window`` when fixed)."""

    name: str  # the cache key's and the metric label's part
    limit_setting: str
    detail: str  # "{limit}" and "{window}" are filled in
    window_setting: str | None = None
    window: int = DAY

    def limit(self) -> int:
        return getattr(settings, self.limit_setting)

    def seconds(self) -> int:
        return max(1, getattr(settings, self.window_setting) if self.window_setting else self.window)

    def refusal(self, retry_after: float) -> RateLimited:
        """The refusal of an attempt over the limit (``retry_after``: what :func:`over` answered)."""
        metrics.RATE_LIMITED.labels(limit=self.name).inc()
        return RateLimited(self.detail.format(limit=self.limit(), window=self.seconds()), retry_after=retry_after)


def over(rate: RateLimit, *, user_id: int, amount: int = 1) -> Plan[float | None]:
    """Count this attempt (``amount`` actions: a forward of N messages is N sends) in the user's
    current window of ``rate``: None while within the limit, else the seconds until the window
    ends. Counted once per call."""
    return (
        yield from count_in_window(rate.name, str(user_id), limit=rate.limit(), seconds=rate.seconds(), amount=amount)
    )


def check(rate: RateLimit, *, user_id: int) -> None:
    """Count this attempt (from a request thread) and raise RateLimited when it is over the limit."""
    wait = run_sync(over(rate, user_id=user_id))
    if wait is not None:
        raise rate.refusal(wait)
