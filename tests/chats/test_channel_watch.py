"""Live posts for readers: a socket that watches a channel (``channel.watch``) gets its message
events like a member's, through the real ASGI stack and channel layer; staff are members and
get each event once; an unreadable channel is not found, a chat is not watchable."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chats import services
from tests.conftest import ws_connect

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async
LIKE = "❤️"


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    settings.SEND_RATE_LIMIT = 0
    settings.MESSAGE_CHANGE_RATE_LIMIT = 0
    settings.CHAT_CHANGE_RATE_LIMIT = 0
    settings.GROUP_CREATE_DAILY_LIMIT = 0


async def _watch(communicator, chat_id, ref="w"):
    await communicator.send_json_to({"type": "channel.watch", "chat_id": chat_id, "ref": ref})
    return await communicator.receive_json_from(timeout=5)


async def _barrier(communicator) -> None:
    """Nothing else was queued for this socket (a ping is answered in order)."""
    await communicator.send_json_to({"type": "ping", "ref": "barrier"})
    assert await communicator.receive_json_from(timeout=5) == {"type": "pong", "ref": "barrier"}
    assert await communicator.receive_nothing(timeout=0.2)


async def test_a_watching_reader_gets_posts_edits_likes_pins_and_deletes_live(make_user):
    owner, fan, passerby = [await db(make_user)() for _ in range(3)]
    channel = await db(services.create_channel)(user_id=owner.id, title="Live", handle="livenews")
    await db(services.subscribe)(user_id=fan.id, chat_id=channel.id)
    fan_socket, passerby_socket, owner_socket = [await ws_connect(u) for u in (fan, passerby, owner)]
    try:
        assert await _watch(fan_socket, channel.id) == {"type": "channel.watching", "chat_id": channel.id, "ref": "w"}
        # A public channel: a signed-in reader who has not subscribed may watch it too.
        assert (await _watch(passerby_socket, channel.id))["type"] == "channel.watching"
        # Its owner is a member: the watch is answered, and events still come once.
        assert (await _watch(owner_socket, channel.id))["type"] == "channel.watching"

        post = await db(services.send_message)(user_id=owner.id, chat_id=channel.id, client_id="p1", text="breaking")
        for socket in (fan_socket, passerby_socket, owner_socket):
            event = await socket.receive_json_from(timeout=5)
            assert event["type"] == "message.new" and event["message"]["text"] == "breaking"
            assert event["message"]["seq"] == post.message.seq
        await db(services.like_post)(user_id=fan.id, post_id=post.message.id, liked=True)
        await db(services.edit_message)(user_id=owner.id, chat_id=channel.id, seq=post.message.seq, text="breaking!")
        await db(services.set_pin)(user_id=owner.id, chat_id=channel.id, seq=post.message.seq, pinned=True)
        await db(services.delete_messages)(user_id=owner.id, chat_id=channel.id, seqs=[post.message.seq])
        for socket in (fan_socket, passerby_socket, owner_socket):
            got = []
            while not got or got[-1]["type"] != "message.deleted":
                event = await socket.receive_json_from(timeout=5)
                if event["type"] not in ("chat.read", "chat.read_all"):  # members' read state
                    got.append(event)
            assert [e["type"] for e in got] == [
                "message.reactions",
                "message.edited",
                "chat.pins",
                "message.new",  # the pin's system message
                "message.deleted",
            ]
            assert got[0]["reactions"] == [{"emoji": LIKE, "count": 1}]
            assert got[1]["message"]["text"] == "breaking!"
            assert got[4]["seqs"] == [post.message.seq]
            await _barrier(socket)  # exactly once each, the owner included

        # Watching stops with null; nothing more arrives.
        assert await _watch(fan_socket, None, "stop") == {"type": "channel.watching", "chat_id": None, "ref": "stop"}
        await db(services.send_message)(user_id=owner.id, chat_id=channel.id, client_id="p2", text="later")
        assert (await passerby_socket.receive_json_from(timeout=5))["message"]["text"] == "later"
        await _barrier(fan_socket)
    finally:
        for socket in (fan_socket, passerby_socket, owner_socket):
            await socket.disconnect()


async def test_a_new_watch_replaces_the_old_one(make_user):
    owner, fan = [await db(make_user)() for _ in range(2)]
    first = await db(services.create_channel)(user_id=owner.id, title="One", handle="channel_one")
    second = await db(services.create_channel)(user_id=owner.id, title="Two", handle="channel_two")
    socket = await ws_connect(fan)
    try:
        await _watch(socket, first.id)
        await _watch(socket, second.id)
        await db(services.send_message)(user_id=owner.id, chat_id=first.id, client_id="a", text="in one")
        await db(services.send_message)(user_id=owner.id, chat_id=second.id, client_id="b", text="in two")
        event = await socket.receive_json_from(timeout=5)
        assert (event["message"]["chat_id"], event["message"]["text"]) == (second.id, "in two")
        await _barrier(socket)
    finally:
        await socket.disconnect()


async def test_watch_refusals(make_user):
    owner, outsider, member = [await db(make_user)() for _ in range(3)]
    private = await db(services.create_channel)(user_id=owner.id, title="Private")
    group = await db(services.create_group)(user_id=owner.id, title="G", member_ids=[member.id])
    outsider_socket, member_socket = await ws_connect(outsider), await ws_connect(member)
    try:
        for chat_id in (private.id, 10**12):
            reply = await _watch(outsider_socket, chat_id)
            assert (reply["type"], reply["code"], reply["ref"]) == ("error", "not_found", "w")
        reply = await _watch(member_socket, group.id)
        assert (reply["type"], reply["code"]) == ("error", "validation_error")
        for bad in ("x", -1, True, {"id": 1}):
            reply = await _watch(outsider_socket, bad)
            assert reply["type"] == "error", (bad, reply)
        # The socket still works, and a refused watch joined nothing.
        await db(services.send_message)(user_id=owner.id, chat_id=private.id, client_id="s", text="secret")
        await _barrier(outsider_socket)
        # With the invite it can.
        await db(services.subscribe)(user_id=outsider.id, chat_id=private.id, invite=private.invite_token)
        assert (await _watch(outsider_socket, private.id))["type"] == "channel.watching"
        await db(services.send_message)(user_id=owner.id, chat_id=private.id, client_id="t", text="for readers")
        assert (await outsider_socket.receive_json_from(timeout=5))["message"]["text"] == "for readers"
    finally:
        await outsider_socket.disconnect()
        await member_socket.disconnect()
