"""Socket commands run on a pool of database threads with persistent connections."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.db import connection, connections

from chats import services
from tests.conftest import receive_until, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)


def _kill_pool_connections() -> int:
    """Terminate the database threads' connections, as a database restart would."""
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


@pytest.mark.skipif(connection.vendor != "postgresql", reason="terminating backends needs PostgreSQL")
async def test_dead_persistent_connection_is_replaced_before_the_next_command(make_user, settings, main_thread_pid):
    """A database thread whose kept connection died (restart, failover) reconnects instead of failing.

    The consumer skips Channels' per-message ``aclose_old_connections`` hop; this proves the
    pool's own close-before-use still catches a broken connection.
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
        for n in range(8):  # touch every pool thread so each holds a persistent connection
            await ws.send_json_to({"type": "message.send", "chat_id": chat.id, "client_id": f"warm-{n}", "text": "warm"})
            await receive_until(ws, "message.ack")
        killed = await database_sync_to_async(_kill_pool_connections)()
        assert killed >= 1
        for n in range(8):
            await ws.send_json_to({"type": "message.send", "chat_id": chat.id, "client_id": f"after-{n}", "text": "after"})
            ack, _ = await receive_until(ws, "message.ack")
            assert ack["duplicate"] is False, ack
        seqs = await database_sync_to_async(
            lambda: list(chat.messages.order_by("seq").values_list("seq", flat=True))
        )()
        assert seqs == list(range(1, 17))
    finally:
        connections.settings["default"]["CONN_MAX_AGE"] = 0
        await ws.disconnect()
        _protected_pids[:] = [main_thread_pid]  # leave no kept connection behind
        await database_sync_to_async(_kill_pool_connections)()
