"""The cache's Redis from the event loop, for the cache steps of plans (``runtime.plans``: the
send rate counter, the typing throttle, the logout check of a handshake) without a thread hop.

Keys are Django's own (``cache.make_and_validate_key``), so these calls and the sync
``django.core.cache.cache`` see the same entries. With an in-process cache (no ``REDIS_URL``)
:func:`client` is None and the plan executor uses ``cache`` directly: no I/O either way.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aredis
from django.conf import settings
from django.core.cache import cache

_client: tuple[asyncio.AbstractEventLoop, aredis.Redis] | None = None


def client() -> aredis.Redis | None:
    """An asyncio client to the cache's Redis for the running loop (None when the cache is in-process)."""
    global _client
    if "RedisCache" not in settings.CACHES["default"]["BACKEND"]:
        return None
    loop = asyncio.get_running_loop()
    if _client is None or _client[0] is not loop:
        _client = (loop, aredis.Redis.from_url(settings.CACHES["default"]["LOCATION"]))
    return _client[1]


def key(name: str) -> str:
    """The Redis key Django's cache uses for ``name``."""
    return cache.make_and_validate_key(name)
