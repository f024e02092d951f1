"""Socket commands keep their database connections between commands and survive losing them.

Socket commands run on the async pool (``runtime/async_db.py``), which keeps persistent
connections and must replace one that died instead of failing a command.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import connection, connections

from chats import services
from tests.conftest import receive_until, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)


def _kill_pool_connections() -> int:
    """Terminate the pool's connections, as a database restart would."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle'"
            " AND backend_type = 'client backend' AND pid <> ALL(%s)",
            [_protected_pids],
        )
        return cursor.fetchone()[0]


_protected_pids: list[int] = []


@pytest.fixture
def main_thread_pid() -> int:
    """Backend pid of the main thread's connection (pytest-django flushes through it)."""
    with connection.cursor() as cursor:
        return cursor.connection.info.backend_pid


async def test_dead_persistent_connection_is_replaced_before_the_next_command(make_user, settings, main_thread_pid):
    """A kept connection that died (restart, failover) is replaced instead of failing the command.

    The consumer skips Channels' per-message ``aclose_old_connections`` hop, and the async
    pool never goes through Django's connection handling at all; this proves the pool's own
    retry catches a broken connection.
    """
    settings.SEND_RATE_LIMIT = 0
    alice = await database_sync_to_async(make_user)()
    bob = await database_sync_to_async(make_user)()
    chat = (await database_sync_to_async(services.open_direct_chat)(user_id=alice.id, other_user_id=bob.id)).chat
    # The test's own connections (main thread, sync helper thread) must survive.
    _protected_pids[:] = [main_thread_pid]
    _protected_pids.append(await database_sync_to_async(lambda: connection.cursor().connection.info.backend_pid)())
    connections.settings["default"]["CONN_MAX_AGE"] = 300
    ws = await ws_connect(alice)
    try:
        for n in range(8):  # the pool keeps its connections between commands
            await ws.send_json_to(
                {"type": "message.send", "chat_id": chat.id, "client_id": f"warm-{n}", "text": "warm"}
            )
            await receive_until(ws, "message.ack")
        killed = await database_sync_to_async(_kill_pool_connections)()
        assert killed >= 1
        for n in range(8):
            await ws.send_json_to(
                {"type": "message.send", "chat_id": chat.id, "client_id": f"after-{n}", "text": "after"}
            )
            ack, _ = await receive_until(ws, "message.ack")
            assert ack["duplicate"] is False, ack
        seqs = await database_sync_to_async(lambda: list(chat.messages.order_by("seq").values_list("seq", flat=True)))()
        assert seqs == list(range(1, 17))
    finally:
        connections.settings["default"]["CONN_MAX_AGE"] = 0
        await ws.disconnect()
        _protected_pids[:] = [main_thread_pid]  # leave no kept connection behind
        await database_sync_to_async(_kill_pool_connections)()


async def test_async_pool_reuses_connections_and_retires_old_ones(settings):
    """Statements share a kept connection; one older than CONN_MAX_AGE is closed on its way back."""
    from runtime import async_db

    pid = "SELECT pg_backend_pid()"
    first = (await async_db.fetch_one(pid, {}))[0]
    assert (await async_db.fetch_one(pid, {}))[0] == first  # kept and reused
    async_db.pool().max_age = 0.05
    await asyncio.sleep(0.1)
    assert (await async_db.fetch_one(pid, {}))[0] == first  # too old: used once more, then closed
    assert (await async_db.fetch_one(pid, {}))[0] != first


async def test_async_pool_errors_are_djangos_and_leave_the_pool_usable():
    """A failing statement raises Django's exception class; the connection stays in service."""
    from django.db import DataError, IntegrityError, ProgrammingError

    from runtime import async_db

    with pytest.raises(ProgrammingError):
        await async_db.fetch("SELECT no_such_column FROM chats_chat", {})
    with pytest.raises(DataError):
        await async_db.fetch("SELECT 1 / 0", {})
    with pytest.raises(IntegrityError):
        await async_db.fetch("INSERT INTO chats_chat (kind, title) VALUES ('group', NULL)", {})
    assert await async_db.fetch_one("SELECT 41 + 1", {}) == (42,)
    assert len(async_db.pool()._idle) == 1
