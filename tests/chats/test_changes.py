"""Messages that change (issue 12): each operation through REST and through a socket, the same
service underneath, with its events to the other member and the change log they converge on."""

from __future__ import annotations

import itertools
import urllib.parse
import uuid

import pytest
from channels.db import database_sync_to_async

from chats import services
from chats.models import Chat, Membership, Message, MessageEdit, Reaction
from tests.conftest import access_token, receive_until, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)

TRANSPORTS = ("rest", "socket")


def _key() -> str:
    return uuid.uuid4().hex


class Rest:
    def __init__(self, user):
        from rest_framework.test import APIClient

        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(user)}")

    async def _call(self, method, path, body=None):
        response = await database_sync_to_async(getattr(self.client, method))(path, body, format="json")
        data = response.json()
        if response.status_code >= 400:
            return {"error": data["code"], "status": response.status_code}
        return data

    async def edit(self, chat_id, seq, text):
        data = await self._call("patch", f"/api/chats/{chat_id}/messages/{seq}", {"text": text})
        return data if "error" in data else {"message": data}

    async def delete(self, chat_id, seqs):
        if len(seqs) == 1:
            return await self._call("delete", f"/api/chats/{chat_id}/messages/{seqs[0]}")
        return await self._call("post", f"/api/chats/{chat_id}/messages/delete", {"seqs": seqs})

    async def react(self, chat_id, seq, emoji, add=True):
        path = f"/api/chats/{chat_id}/messages/{seq}/reactions/{urllib.parse.quote(emoji)}"
        return await self._call("put" if add else "delete", path)

    async def pin(self, chat_id, seq, pinned=True):
        return await self._call("put" if pinned else "delete", f"/api/chats/{chat_id}/pins/{seq}")

    async def forward(self, from_chat_id, seqs, to_chat_id, client_ids):
        body = {"from_chat_id": from_chat_id, "seqs": seqs, "client_ids": client_ids}
        return await self._call("post", f"/api/chats/{to_chat_id}/forward", body)

    async def send(self, chat_id, text, reply_to_seq=None):
        body = {"client_id": _key(), "text": text, "reply_to_seq": reply_to_seq}
        data = await self._call("post", f"/api/chats/{chat_id}/messages", body)
        return data if "error" in data else {"message": data}

    async def close(self):
        pass


class Socket:
    def __init__(self, ws):
        self.ws = ws

    async def _call(self, frame, reply_type):
        await self.ws.send_json_to({**frame, "ref": "r"})
        while True:
            answer = await self.ws.receive_json_from(timeout=5)
            if answer.get("ref") == "r":
                break
        if answer["type"] == "error":
            return {"error": answer["code"]}
        assert answer["type"] == reply_type, answer
        return answer

    async def edit(self, chat_id, seq, text):
        return await self._call(
            {"type": "message.edit", "chat_id": chat_id, "seq": seq, "text": text}, "message.edited"
        )

    async def delete(self, chat_id, seqs):
        return await self._call({"type": "message.delete", "chat_id": chat_id, "seqs": seqs}, "message.deleted")

    async def react(self, chat_id, seq, emoji, add=True):
        kind = "reaction.add" if add else "reaction.remove"
        return await self._call({"type": kind, "chat_id": chat_id, "seq": seq, "emoji": emoji}, "message.reactions")

    async def pin(self, chat_id, seq, pinned=True):
        return await self._call({"type": "message.pin", "chat_id": chat_id, "seq": seq, "pinned": pinned}, "chat.pins")

    async def forward(self, from_chat_id, seqs, to_chat_id, client_ids):
        frame = {
            "type": "message.forward",
            "from_chat_id": from_chat_id,
            "seqs": seqs,
            "to_chat_id": to_chat_id,
            "client_ids": client_ids,
        }
        return await self._call(frame, "message.forwarded")

    async def send(self, chat_id, text, reply_to_seq=None):
        frame = {"type": "message.send", "chat_id": chat_id, "client_id": _key(), "text": text}
        if reply_to_seq is not None:
            frame["reply_to_seq"] = reply_to_seq
        return await self._call(frame, "message.ack")

    async def close(self):
        await self.ws.disconnect()


async def _caller(transport, user):
    if transport == "rest":
        return Rest(user)
    return Socket(await ws_connect(user))


@database_sync_to_async
def _direct(alice, bob):
    return services.open_direct_chat(user_id=alice.id, other_user_id=bob.id).chat


@database_sync_to_async
def _send(user, chat, text, **extra):
    return services.send_message(user_id=user.id, chat_id=chat.id, client_id=_key(), text=text, **extra).message


@database_sync_to_async
def _chat(chat_id):
    return Chat.objects.get(id=chat_id)


@database_sync_to_async
def _state(chat_id, reader):
    """What REST shows: every message as ``reader`` sees it."""
    from chats.selectors import history_page

    chat = Chat.objects.get(id=chat_id)
    return chat.version, {m.seq: m for m in history_page(chat=chat, reader=reader.id, offset=0, limit=200)}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_edit_reaches_the_other_member_and_keeps_the_history(transport, make_user):
    alice, bob = await database_sync_to_async(make_user)(), await database_sync_to_async(make_user)()
    chat = await _direct(alice, bob)
    sent = await _send(alice, chat, "helo")
    bob_ws = await ws_connect(bob)
    caller = await _caller(transport, alice)
    try:
        answer = await caller.edit(chat.id, sent.seq, "hello")
        assert answer["message"]["text"] == "hello" and answer["message"]["edited_at"]
        assert answer["message"]["version"] == sent.version + 1
        event, _ = await receive_until(bob_ws, "message.edited")
        assert event["message"]["text"] == "hello" and event["message"]["version"] == sent.version + 1
        again = await caller.edit(chat.id, sent.seq, "hello")
        assert again["message"]["version"] == sent.version + 1  # the same text changes nothing
        assert (await _chat(chat.id)).version == sent.version + 1
        edits = await database_sync_to_async(list)(MessageEdit.objects.values_list("text", flat=True))
        assert edits == ["helo"]
        # Refusals: not the sender, bad seq, blank text.
        bob_caller = await _caller(transport, bob)
        assert (await bob_caller.edit(chat.id, sent.seq, "mine now"))["error"] == "forbidden"
        assert (await bob_caller.edit(chat.id, 999, "x"))["error"] == "not_found"
        assert (await caller.edit(chat.id, sent.seq, "   "))["error"] == "validation_error"
        await bob_caller.close()
    finally:
        await caller.close()
        await bob_ws.disconnect()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_delete_leaves_a_tombstone_and_erases_the_text(transport, make_user):
    alice, bob = await database_sync_to_async(make_user)(), await database_sync_to_async(make_user)()
    chat = await _direct(alice, bob)
    first = await _send(alice, chat, "secret")
    second = await _send(alice, chat, "also secret")
    await database_sync_to_async(services.edit_message)(user_id=alice.id, chat_id=chat.id, seq=first.seq, text="x1")
    reply = await _send(bob, chat, "what?", reply_to_seq=first.seq)
    bob_ws = await ws_connect(bob)
    caller = await _caller(transport, alice)
    try:
        bob_caller = await _caller(transport, bob)
        # All or nothing: bob's own message with alice's is refused whole.
        assert (await bob_caller.delete(chat.id, [reply.seq, first.seq]))["error"] == "forbidden"
        await bob_caller.close()
        answer = await caller.delete(chat.id, [first.seq, second.seq])
        assert answer["seqs"] == [first.seq, second.seq] and answer["changed"] is True
        event, _ = await receive_until(bob_ws, "message.deleted")
        assert event["seqs"] == [first.seq, second.seq] and event["version"] == answer["version"]
        assert (await caller.delete(chat.id, [first.seq]))["changed"] is False
        rows = await database_sync_to_async(list)(Message.objects.filter(chat=chat).order_by("seq"))
        assert [m.text for m in rows[:2]] == ["", ""] and all(m.deleted_at for m in rows[:2])
        assert not await database_sync_to_async(MessageEdit.objects.exists)()
        version, state = await _state(chat.id, bob)
        assert version == answer["version"]
        assert state[reply.seq].reply_to.deleted is True
        assert (await caller.edit(chat.id, first.seq, "back"))["error"] == "gone"
        assert (await caller.react(chat.id, first.seq, "👍"))["error"] == "gone"
        assert (await caller.send(chat.id, "re", reply_to_seq=first.seq))["error"] == "gone"
        assert (await caller.send(chat.id, "re", reply_to_seq=999))["error"] == "validation_error"
    finally:
        await caller.close()
        await bob_ws.disconnect()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reactions_are_idempotent_and_counted(transport, make_user):
    alice, bob = await database_sync_to_async(make_user)(), await database_sync_to_async(make_user)()
    chat = await _direct(alice, bob)
    sent = await _send(bob, chat, "react to me")
    bob_ws = await ws_connect(bob)
    caller = await _caller(transport, alice)
    try:
        answer = await caller.react(chat.id, sent.seq, "❤")  # normalized to ❤️
        assert answer["reactions"] == [{"emoji": "❤️", "count": 1, "me": True}] and answer["changed"]
        event, _ = await receive_until(bob_ws, "message.reactions")
        assert event["reactions"] == [{"emoji": "❤️", "count": 1}] and event["user_id"] == alice.id
        assert (await caller.react(chat.id, sent.seq, "❤️"))["changed"] is False
        await database_sync_to_async(services.set_reaction)(
            user_id=bob.id, chat_id=chat.id, seq=sent.seq, emoji="❤️", add=True
        )
        for emoji in ("👍", "😂"):
            assert (await caller.react(chat.id, sent.seq, emoji))["changed"] is True
        assert (await caller.react(chat.id, sent.seq, "🔥"))["error"] == "too_many_reactions"
        assert (await caller.react(chat.id, sent.seq, "hi"))["error"] == "validation_error"
        assert (await caller.react(chat.id, sent.seq, "👍👍"))["error"] == "validation_error"
        removed = await caller.react(chat.id, sent.seq, "😂", add=False)
        assert removed["reactions"] == [
            {"emoji": "❤️", "count": 2, "me": True},
            {"emoji": "👍", "count": 1, "me": True},
        ]
        assert (await caller.react(chat.id, sent.seq, "😂", add=False))["changed"] is False
        assert await database_sync_to_async(Reaction.objects.count)() == 3
    finally:
        await caller.close()
        await bob_ws.disconnect()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_pins_in_a_group_need_an_admin_and_write_a_system_message(transport, make_user):
    owner, member = await database_sync_to_async(make_user)("owner"), await database_sync_to_async(make_user)()
    group = await database_sync_to_async(services.create_group)(user_id=owner.id, title="G", member_ids=[member.id])
    sent = await _send(member, group, "pin this one please, it is important")
    member_ws = await ws_connect(member)
    caller = await _caller(transport, owner)
    try:
        member_caller = await _caller(transport, member)
        assert (await member_caller.pin(group.id, sent.seq))["error"] == "forbidden"
        await member_caller.close()
        answer = await caller.pin(group.id, sent.seq)
        assert answer["pinned_seqs"] == [sent.seq] and answer["changed"] is True
        pins, _ = await receive_until(member_ws, "chat.pins")
        assert pins["pinned_seqs"] == [sent.seq] and pins["version"] == answer["version"]
        system, _ = await receive_until(member_ws, "message.new")
        assert system["message"]["kind"] == "system" and system["message"]["version"] == answer["version"] + 1
        assert system["message"]["text"].startswith("owner pinned «pin this one please")
        assert (await caller.pin(group.id, sent.seq))["changed"] is False
        assert (await caller.pin(group.id, system["message"]["seq"]))["error"] == "forbidden"
        unpinned = await caller.pin(group.id, sent.seq, pinned=False)
        assert unpinned["pinned_seqs"] == [] and unpinned["version"] == answer["version"] + 2
    finally:
        await caller.close()
        await member_ws.disconnect()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_forward_is_stored_once_per_client_id(transport, make_user):
    alice, bob, carol = [await database_sync_to_async(make_user)() for _ in range(3)]
    source = await _direct(alice, bob)
    target = await _direct(alice, carol)
    one = await _send(bob, source, "from bob")
    two = await _send(alice, source, "from alice")
    carol_ws = await ws_connect(carol)
    caller = await _caller(transport, alice)
    keys = [_key(), _key()]
    try:
        answer = await caller.forward(source.id, [one.seq, two.seq], target.id, keys)
        assert answer["duplicate"] is False
        forwarded = answer["messages"]
        assert [m["text"] for m in forwarded] == ["from bob", "from alice"]
        assert forwarded[0]["forwarded_from"]["sender_id"] == bob.id
        assert forwarded[0]["forwarded_from"]["chat_id"] == source.id  # alice is a member of the source
        for expected in ("from bob", "from alice"):
            event, _ = await receive_until(carol_ws, "message.new")
            assert event["message"]["text"] == expected
            # carol is not a member of the source chat: no chat_id/seq for her
            assert event["message"]["forwarded_from"]["chat_id"] is None
            assert event["message"]["forwarded_from"]["sender_username"] == (
                bob.username if expected == "from bob" else alice.username
            )
        again = await caller.forward(source.id, [one.seq, two.seq], target.id, keys)
        assert again["duplicate"] is True and [m["seq"] for m in again["messages"]] == [m["seq"] for m in forwarded]
        assert await database_sync_to_async(Message.objects.filter(chat=target).count)() == 2
        outsider = await _caller(transport, carol)
        assert (await outsider.forward(source.id, [one.seq], target.id, [_key()]))["error"] == "not_found"
        await outsider.close()
    finally:
        await caller.close()
        await carol_ws.disconnect()


async def test_changes_returns_the_current_state_of_what_changed(make_user, api):
    alice, bob = await database_sync_to_async(make_user)(), await database_sync_to_async(make_user)()
    chat = await _direct(alice, bob)
    sent = [await _send(alice, chat, f"m{i}") for i in range(5)]
    held = (await _chat(chat.id)).version
    await database_sync_to_async(services.edit_message)(user_id=alice.id, chat_id=chat.id, seq=sent[0].seq, text="e1")
    await database_sync_to_async(services.edit_message)(user_id=alice.id, chat_id=chat.id, seq=sent[0].seq, text="e2")
    await database_sync_to_async(services.set_reaction)(
        user_id=bob.id, chat_id=chat.id, seq=sent[1].seq, emoji="👍", add=True
    )
    await database_sync_to_async(services.delete_messages)(
        user_id=alice.id, chat_id=chat.id, seqs=[sent[2].seq, sent[3].seq]
    )
    client = api(bob)
    pages, after = [], held
    while True:
        body = (
            await database_sync_to_async(client.get)(f"/api/chats/{chat.id}/changes?after_version={after}&limit=1")
        ).json()
        pages.append(body)
        after = body["version"]
        if not body["has_more"]:
            break
    results = [m for page in pages for m in page["results"]]
    assert [m["seq"] for m in results] == [sent[0].seq, sent[1].seq, sent[2].seq, sent[3].seq]
    assert results[0]["text"] == "e2" and results[1]["reactions"] == [{"emoji": "👍", "count": 1, "me": True}]
    assert results[2]["deleted"] and results[3]["deleted"]
    # The delete batch shares one version and was never split across pages.
    assert results[2]["version"] == results[3]["version"]
    assert after == (await _chat(chat.id)).version == held + 4


async def test_created_at_never_decreases_along_seq(make_user):
    import asyncio

    users = [await database_sync_to_async(make_user)() for _ in range(5)]
    group = await database_sync_to_async(services.create_group)(
        user_id=users[0].id, title="race", member_ids=[u.id for u in users[1:]]
    )

    async def burst(user):
        for i in range(20):
            await services.send_message.run_async(user_id=user.id, chat_id=group.id, client_id=_key(), text=f"{i}")

    await asyncio.gather(*(burst(u) for u in users))
    rows = await database_sync_to_async(list)(
        Message.objects.filter(chat=group).order_by("seq").values_list("created_at", flat=True)
    )
    assert len(rows) == 101
    assert all(a <= b for a, b in itertools.pairwise(rows))
    memberships = await database_sync_to_async(Membership.objects.filter(chat=group).count)()
    assert memberships == 5
