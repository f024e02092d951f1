"""REST and the socket run one implementation of send and read: every scenario, through both,
gives the same answer, the same database state and the same events to the other member."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chats import services
from chats.models import Membership, Message
from tests.conftest import access_token, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)

TRANSPORTS = ("rest", "socket")


class Rest:
    """The sender's calls over REST (APIClient with the user's real JWT)."""

    def __init__(self, user):
        from rest_framework.test import APIClient

        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(user)}")

    async def send(self, chat_id, client_id, text):
        body = {"client_id": client_id, "text": text}
        response = await database_sync_to_async(self.client.post)(f"/api/chats/{chat_id}/messages", body, format="json")
        data = response.json()
        if response.status_code in (200, 201):
            return {"duplicate": response.status_code == 200, "message": _message(data)}
        return _error(data)

    async def read(self, chat_id, up_to_seq):
        body = {"up_to_seq": up_to_seq}
        response = await database_sync_to_async(self.client.post)(f"/api/chats/{chat_id}/read", body, format="json")
        data = response.json()
        if response.status_code == 200:
            return {"last_read_seq": data["last_read_seq"], "read_all_seq": data["read_all_seq"]}
        return _error(data)

    async def close(self):
        pass


class Socket:
    """The sender's calls as frames on one socket."""

    def __init__(self, ws):
        self.ws = ws

    async def send(self, chat_id, client_id, text):
        await self.ws.send_json_to({"type": "message.send", "chat_id": chat_id, "client_id": client_id, "text": text})
        frame = await self.ws.receive_json_from(timeout=5)
        if frame["type"] == "message.ack":
            return {"duplicate": frame["duplicate"], "message": _message(frame["message"])}
        return _error(frame)

    async def read(self, chat_id, up_to_seq):
        await self.ws.send_json_to({"type": "message.read", "chat_id": chat_id, "up_to_seq": up_to_seq})
        frame = await self.ws.receive_json_from(timeout=5)
        if frame["type"] == "chat.read":
            return {"last_read_seq": frame["last_read_seq"], "read_all_seq": frame["read_all_seq"]}
        return _error(frame)

    async def close(self):
        await self.ws.disconnect()


def _message(payload: dict) -> dict:
    """A message payload without what differs between two runs (ids, times)."""
    return {k: v for k, v in payload.items() if k not in ("id", "chat_id", "sender_id", "created_at")}


def _error(body: dict) -> dict:
    return {"code": body["code"], "detail": body["detail"]}


async def _sender(transport, user):
    if transport == "rest":
        return Rest(user)
    return Socket(await ws_connect(user))


async def _events(ws) -> list[dict]:
    """Every frame the socket got within a short quiet period, normalized."""
    frames = []
    while not await ws.receive_nothing(timeout=0.3):
        frame = await ws.receive_json_from(timeout=5)
        if "message" in frame:
            frame = {**frame, "message": _message(frame["message"])}
        frames.append({k: v for k, v in frame.items() if k not in ("chat_id", "user_id")})
    return frames


@database_sync_to_async
def _world(make_user):
    """alice and bob in a direct chat, plus a group of carol's that alice is not in."""
    alice, bob, carol = make_user(), make_user(), make_user()
    direct = services.open_direct_chat(user_id=alice.id, other_user_id=bob.id).chat
    other = services.create_group(user_id=carol.id, title="not alice's", member_ids=[bob.id])
    group = services.create_group(user_id=alice.id, title="alice's", member_ids=[bob.id])
    return alice, bob, direct, other, group


@database_sync_to_async
def _state(direct, group):
    def chat_state(chat):
        return {
            # System messages name users, who differ between runs: their kind is enough.
            "messages": [
                (seq, kind, text if kind == Message.Kind.TEXT else None, client_id)
                for seq, kind, text, client_id in Message.objects.filter(chat=chat)
                .order_by("seq")
                .values_list("seq", "kind", "text", "client_id")
            ],
            "watermarks": sorted(Membership.objects.filter(chat=chat).values_list("role", "last_read_seq")),
            "chat": type(chat).objects.filter(id=chat.id).values_list("last_seq", "read_all_seq").get(),
        }

    return {"direct": chat_state(direct), "group": chat_state(group)}


async def _run(transport, scenario, make_user, settings):
    settings.SEND_RATE_LIMIT = 0
    alice, bob, direct, other, group = await _world(make_user)
    bob_socket = await ws_connect(bob)
    # The world's own events (chat.created of the groups) are published after their commits and
    # may still reach the new socket: they are not part of what the scenario makes bob see.
    await _events(bob_socket)
    sender = await _sender(transport, alice)
    try:
        answers = await scenario(
            sender, alice=alice, bob=bob, direct=direct, other=other, group=group, settings=settings
        )
        seen_by_bob = await _events(bob_socket)
        return answers, await _state(direct, group), seen_by_bob
    finally:
        await sender.close()
        await bob_socket.disconnect()


# --- scenarios -----------------------------------------------------------------------------


async def new_messages(s, *, direct, group, **_):
    return [
        await s.send(direct.id, "k1", "hello"),
        await s.send(direct.id, "k2", "  again  "),
        await s.send(group.id, "k3", "to the group"),
    ]


async def repeated_key(s, *, direct, **_):
    return [
        await s.send(direct.id, "k1", "hello"),
        await s.send(direct.id, "k1", "hello"),
        await s.send(direct.id, "k1", "other text, same key"),
    ]


async def key_used_in_another_chat(s, *, direct, group, **_):
    return [await s.send(direct.id, "k1", "hello"), await s.send(group.id, "k1", "hello")]


async def not_a_member(s, *, other, **_):
    return [await s.send(other.id, "k1", "hello"), await s.send(2**62, "k2", "hello"), await s.read(other.id, 1)]


async def deactivated_peer(s, *, bob, direct, **_):
    await s.send(direct.id, "k1", "before")
    await database_sync_to_async(type(bob).objects.filter(id=bob.id).update)(is_active=False)
    return [await s.send(direct.id, "k2", "after"), await s.send(direct.id, "k1", "before")]


async def rate_limited(s, *, direct, settings, **_):
    settings.SEND_RATE_LIMIT = 2
    settings.SEND_RATE_WINDOW_SECONDS = 3600
    return [
        await s.send(direct.id, "k1", "one"),
        await s.send(direct.id, "k2", "two"),
        await s.send(direct.id, "k3", "three"),
        await s.send(direct.id, "k1", "one"),
    ]


async def reads(s, *, direct, group, **_):
    for n in range(3):
        await s.send(group.id, f"g{n}", "text")
    return [
        await s.read(group.id, 1),
        await s.read(group.id, 0),
        await s.read(group.id, 99),
        await s.read(direct.id, 0),
    ]


async def invalid_input(s, *, direct, **_):
    # Only the codes are compared for these: DRF's serializer words REST's details.
    return [
        await s.send(direct.id, "k1", "   "),
        await s.send(direct.id, "x" * 65, "hello"),
        await s.send(direct.id, "k1", "x" * 5000),
    ]


SCENARIOS = [new_messages, repeated_key, key_used_in_another_chat, not_a_member, deactivated_peer, rate_limited, reads]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
async def test_rest_and_socket_give_the_same_result(scenario, make_user, settings):
    """The same calls through REST and through a socket: same answers, same rows, same events."""
    rest = await _run("rest", scenario, make_user, settings)
    socket = await _run("socket", scenario, make_user, settings)
    assert rest[0] == socket[0]
    assert rest[1] == socket[1]
    assert rest[2] == socket[2]


async def test_invalid_input_gets_the_same_codes(make_user, settings):
    """Invalid sends are refused with the same code through either transport, and store nothing."""
    rest = await _run("rest", invalid_input, make_user, settings)
    socket = await _run("socket", invalid_input, make_user, settings)
    assert [a["code"] for a in rest[0]] == [a["code"] for a in socket[0]] == ["validation_error"] * 3
    assert rest[1] == socket[1]
    assert rest[1]["direct"]["messages"] == []


async def test_scenarios_say_what_they_claim(make_user, settings):
    """The comparison above is not vacuous: the answers are the ones the protocol promises."""
    answers, state, seen_by_bob = await _run("socket", repeated_key, make_user, settings)
    assert [a["duplicate"] for a in answers] == [False, True, True]
    assert answers[2]["message"]["text"] == "hello"  # the original, not the retry's text
    assert [m[0] for m in state["direct"]["messages"]] == [1]
    assert [f["type"] for f in seen_by_bob] == ["message.new"]

    answers, _, _ = await _run("rest", rate_limited, make_user, settings)
    assert [a.get("code") for a in answers] == [None, None, "rate_limited", None]
    assert answers[3]["duplicate"] is True

    answers, _, _ = await _run("rest", not_a_member, make_user, settings)
    assert [a["code"] for a in answers] == ["not_found"] * 3

    answers, _, _ = await _run("socket", deactivated_peer, make_user, settings)
    assert answers[0]["code"] == "forbidden" and answers[1]["duplicate"] is True

    answers, _, _ = await _run("socket", key_used_in_another_chat, make_user, settings)
    assert answers[1]["code"] == "conflict"

    answers, state, seen_by_bob = await _run("rest", reads, make_user, settings)
    assert [a["last_read_seq"] for a in answers[:3]] == [4, 4, 4]  # the creation message and 3 sends
