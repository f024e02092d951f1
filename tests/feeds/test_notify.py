"""``channel.post``: subscribers' sockets hear of a channel's new posts, at most once per channel
per CHANNEL_NOTIFY_SECONDS, through the real channel layer."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.db import transaction

from chats import services
from feeds import notify
from tests.conftest import ws_connect

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


@db
def _posted(channel_id: int) -> int:
    with transaction.atomic():  # as the event runner runs a handler
        return notify.channel_posted(channel_id=channel_id)


async def test_subscribers_hear_of_new_posts_once_per_window(make_user, settings, monkeypatch):
    settings.CHANNEL_NOTIFY_SECONDS = 60
    monkeypatch.setattr(notify, "CHUNK", 2)  # several envelopes
    owner, outsider, *readers = [await db(make_user)() for _ in range(5)]
    channel = await db(services.create_channel)(user_id=owner.id, title="Loud", handle="loudnews")
    for reader in readers:
        await db(services.subscribe)(user_id=reader.id, chat_id=channel.id)
    sockets = [await ws_connect(user) for user in (*readers, outsider)]
    try:
        await db(services.send_message)(user_id=owner.id, chat_id=channel.id, client_id="a", text="one")
        assert await _posted(channel.id) == 3
        for socket in sockets[:3]:
            assert await socket.receive_json_from(timeout=5) == {
                "type": "channel.post",
                "chat_id": channel.id,
                "last_seq": 2,
            }
        await db(services.send_message)(user_id=owner.id, chat_id=channel.id, client_id="b", text="two")
        assert await _posted(channel.id) == 0  # within the window: covered by the first
        for socket in sockets:
            assert await socket.receive_nothing(timeout=0.3)
    finally:
        for socket in sockets:
            await socket.disconnect()
