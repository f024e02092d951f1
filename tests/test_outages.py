"""Backing-service outages: clear ``service_unavailable`` answers, and a resync after Redis returns.

The end-to-end versions (real PostgreSQL and Redis restarts under load) are in tests/faults.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from accounts.tokens import start_session
from runtime.layers import RESYNC, FanoutChannelLayer
from tests.conftest import RUN_PREFIX, ws_connect


async def _drop_pubsub_connection(layer) -> None:
    """Cut the layer's pub/sub connection, as a Redis restart does."""
    shard = layer._get_layer()._shards[0]
    await shard._pubsub.connection.disconnect()


async def test_layer_resubscribes_and_asks_group_members_to_resync_after_reconnecting():
    """After the pub/sub connection comes back, group members get ``layer.resync`` (events sent
    meanwhile are lost) and live group messages flow again; channels in no group are left alone."""
    layer = FanoutChannelLayer(hosts=[os.environ["REDIS_URL"]], prefix=f"{RUN_PREFIX}-resync")
    try:
        member = await layer.new_channel()
        await layer.group_add("user.1", member)
        loner = await layer.new_channel()
        await _drop_pubsub_connection(layer)

        assert await asyncio.wait_for(layer.receive(member), 10) == {"type": RESYNC}
        await layer.group_send("user.1", {"type": "event.deliver", "text": "after"})
        assert await asyncio.wait_for(layer.receive(member), 5) == {"type": "event.deliver", "text": "after"}
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(loner), 0.3)
    finally:
        await layer.flush()


@pytest.mark.django_db(transaction=True)
async def test_socket_is_closed_with_4503_when_the_layer_reconnected(make_user):
    """A socket whose process lost Redis gets ``resync_required`` and a 4503 close, so the client
    reconnects and catches up instead of silently missing what was sent meanwhile."""
    from channels.db import database_sync_to_async

    user = await database_sync_to_async(make_user)()
    ws = await ws_connect(user)
    try:
        await _drop_pubsub_connection(get_channel_layer())
        frame = await ws.receive_json_from(timeout=10)
        assert frame["type"] == "error" and frame["code"] == "resync_required", frame
        assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4503}
    finally:
        await ws.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "target, error",
    [
        # The handshake's checks run on the event loop: the user row on runtime/async_db.py,
        # the logout mark on the cache's Redis (runtime/async_cache.py).
        ("runtime.async_db.fetch", OperationalError("database down")),
        ("redis.asyncio.client.Redis.exists", RedisConnectionError("redis down")),
    ],
)
async def test_handshake_during_an_outage_gets_service_unavailable_and_4503(make_user, monkeypatch, target, error):
    """A new socket while the database or Redis is down: an ``error`` frame and a 4503 close,
    not an unhandled exception (HTTP 500 handshake and a traceback per attempt)."""
    from channels.db import database_sync_to_async

    from messenger.asgi import application

    user = await database_sync_to_async(make_user)()

    async def unavailable(*args, **kwargs):
        raise error

    monkeypatch.setattr(target, unavailable)
    # A login session's token: its sid is what the handshake looks up in the cache.
    token = await database_sync_to_async(lambda: str(start_session(user).access_token))()
    ws = WebsocketCommunicator(application, f"/ws/?token={token}")
    connected, _ = await ws.connect(timeout=5)
    try:
        assert connected
        frame = await ws.receive_json_from(timeout=5)
        assert frame == {"type": "error", "code": "service_unavailable", "detail": frame["detail"], "ref": None}
        assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4503}
    finally:
        await ws.disconnect()


@pytest.mark.django_db
def test_rest_answers_503_when_redis_is_down(make_user, api, monkeypatch):
    """A Redis error behind a REST call (the cache: revoked sessions, rate limits) is a 503
    ``service_unavailable`` like a database outage, not a 500."""

    def unavailable(**kwargs):
        raise RedisConnectionError("redis down")

    monkeypatch.setattr("chats.selectors.chat_views_for_user", unavailable)
    response = api(make_user()).get("/api/chats")
    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
