"""Running sync database work from async code (consumers, socket middleware).

Channels' default, ``database_sync_to_async``, is *thread-sensitive*: every call in a
process goes through one shared thread, so one slow commit stalls every socket of the
process and PostgreSQL never sees more than one transaction from it. Socket commands
here run on a dedicated pool of ``DB_THREADS`` threads instead; each thread keeps its
own persistent connection (``CONN_MAX_AGE``), and ``DatabaseSyncToAsync`` still closes
stale or broken connections before and after every call.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=settings.DB_THREADS, thread_name_prefix="db")
    return _executor


def _with_reconnect(fn, args, kwargs):
    """Run ``fn``; if the kept connection turns out dead, run it once more on a fresh one.

    A connection kept between commands dies silently when the database restarts or
    fails over. Rather than probe it before every command (a round trip each time),
    a failure is retried once when the connection is indeed unusable. Every socket
    command is idempotent -- sends by (sender, client_id), reads by max() -- so a retry
    after an unknown commit outcome stores nothing twice.
    """
    kept = connection.connection
    # Dead kept connections are handled below; skip Django's per-use SELECT 1 health check.
    connection.health_check_done = True
    try:
        return fn(*args, **kwargs)
    except (OperationalError, InterfaceError):
        if kept is None or connection.in_atomic_block:
            raise  # a fresh connection failed: the database is down, not our kept connection
        if connection.connection is kept and connection.is_usable():
            raise  # the connection is fine; the error was real
        connection.close()
        return fn(*args, **kwargs)


async def run_in_db(fn, /, *args, **kwargs):
    """Run ``fn`` in a database thread: one hop, one connection, stale connections closed."""
    return await DatabaseSyncToAsync(_with_reconnect, thread_sensitive=False, executor=_pool())(fn, args, kwargs)
