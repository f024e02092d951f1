"""The feed's cache (Django's cache: Redis in production, in-process in development).

Two entries, both lists of post ids (a post's text, likes and files are always read fresh):
a user's first feed page, and a large channel's latest posts (the fan-out-on-read part of
every subscriber's feed). The feed's event handlers delete them after their change commits;
a TTL bounds what a lost delete can leave. Hits and misses are counted in ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from ops import metrics

CHANNEL_LATEST = 100  # post ids kept per large channel


def first_page_key(user_id: int) -> str:
    return f"feed:first:{int(user_id)}"


def channel_latest_key(channel_id: int) -> str:
    return f"feed:channel:{int(channel_id)}"


def cached(name: str, key: str, compute: Callable[[], list[int]]) -> list[int]:
    """The list at ``key``, or ``compute()`` stored there for FEED_CACHE_SECONDS."""
    value = cache.get(key)
    if value is not None:
        metrics.FEED_CACHE.labels(cache=name, result="hit").inc()
        return value
    metrics.FEED_CACHE.labels(cache=name, result="miss").inc()
    value = compute()
    cache.set(key, value, timeout=settings.FEED_CACHE_SECONDS)
    return value


def lookup(name: str, key: str, fresh: Callable[[object], bool]):
    """The entry at ``key`` if ``fresh(entry)`` says it still holds (a hit), else None (a miss)."""
    value = cache.get(key)
    hit = value is not None and fresh(value)
    metrics.FEED_CACHE.labels(cache=name, result="hit" if hit else "miss").inc()
    return value if hit else None


def store(key: str, value) -> None:
    cache.set(key, value, timeout=settings.FEED_CACHE_SECONDS)


def forget_after_commit(*, user_ids: Iterable[int] = (), channel_ids: Iterable[int] = ()) -> None:
    """Drop the first pages of ``user_ids`` and the latest posts of ``channel_ids`` once the
    current transaction commits (dropped earlier, a read could cache the old state again)."""
    keys = [first_page_key(u) for u in user_ids] + [channel_latest_key(c) for c in channel_ids]
    if keys:
        transaction.on_commit(lambda: cache.delete_many(keys))
