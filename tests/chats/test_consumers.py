"""The WebSocket endpoint ``/ws/`` over the real stack: origin check, JWT middleware, router, consumer.

Every test opens sockets with ``WebsocketCommunicator`` against ``messenger.asgi.application``
and disconnects them at the end. "Nothing more arrives" is checked with a ping barrier (the
very next frame must be the pong) followed by ``receive_nothing``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework_simplejwt.tokens import AccessToken

from chats import services
from chats.models import Chat, Membership, Message
from runtime import realtime
from tests.conftest import access_token, receive_until, refresh_token, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async
CLOSE_UNAUTHORIZED = 4401
MISSING_CHAT_ID = 2**62


# --- helpers -------------------------------------------------------------------------


def _app():
    from messenger.asgi import application

    return application


async def connect_subprotocols(subprotocols, headers=None):
    from messenger.asgi import application

    communicator = WebsocketCommunicator(application, "/ws/", headers=headers or [], subprotocols=subprotocols)
    connected, subprotocol = await communicator.connect(timeout=5)
    return communicator, connected, subprotocol


async def assert_closed_unauthorized(communicator) -> None:
    """The server accepted, then closed with 4401 and sent nothing else first."""
    output = await communicator.receive_output(timeout=5)
    assert output["type"] == "websocket.close", output
    assert output["code"] == CLOSE_UNAUTHORIZED


async def ping_barrier(communicator, ref: str = "barrier") -> None:
    """The socket is open and the very next frame is the pong: nothing else was queued before it."""
    await communicator.send_json_to({"type": "ping", "ref": ref})
    frame = await communicator.receive_json_from(timeout=5)
    assert frame == {"type": "pong", "ref": ref}


async def assert_silent(*communicators) -> None:
    """Nothing was queued for these sockets, and nothing arrives shortly after."""
    for communicator in communicators:
        await ping_barrier(communicator)
    for communicator in communicators:
        assert await communicator.receive_nothing(timeout=0.3)


async def receive_n(communicator, n: int) -> list[dict]:
    return [await communicator.receive_json_from(timeout=5) for _ in range(n)]


def by_type(frames: list[dict]) -> dict[str, dict]:
    """Frames keyed by type; each type must occur once."""
    keyed = {f["type"]: f for f in frames}
    assert len(keyed) == len(frames), frames
    return keyed


async def disconnect_all(*communicators) -> None:
    for communicator in communicators:
        await communicator.disconnect()


async def direct_chat(alice, bob) -> Chat:
    return (await db(services.open_direct_chat)(user_id=alice.id, other_user_id=bob.id)).chat


async def send_via_service(user, chat, client_id: str, text: str = "hello"):
    return await db(services.send_message)(user_id=user.id, chat_id=chat.id, client_id=client_id, text=text)


async def users(make_user, n: int):
    return [await db(make_user)() for _ in range(n)]


def history(api, user, chat_id: int) -> dict:
    response = api(user).get(f"/history/{chat_id}")
    assert response.status_code == 200, response.content
    return response.json()


# --- authentication ------------------------------------------------------------------


async def test_valid_token_first_frame_is_session_ready(make_user):
    """A valid ?token= is accepted and the first frame is session.ready with the user's id and username."""
    alice = await db(make_user)()
    communicator = WebsocketCommunicator(_app(), f"/ws/?token={access_token(alice)}")
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    first = await communicator.receive_json_from(timeout=5)
    assert first == {"type": "session.ready", "user": {"id": alice.id, "username": alice.username}}
    await ping_barrier(communicator)
    await communicator.disconnect()


async def test_missing_token_is_closed_4401():
    """Without a token the server accepts, then closes with 4401 (never a silent handshake failure)."""
    communicator = await ws_connect(None, expect_ready=False)
    await assert_closed_unauthorized(communicator)
    await communicator.disconnect()


@pytest.mark.parametrize("kind", ["garbage", "bad_signature", "refresh_token", "empty"])
async def test_invalid_token_is_closed_4401(make_user, kind):
    """A malformed token, a forged signature, a refresh token or an empty ?token= all close with 4401."""
    alice = await db(make_user)()
    good = access_token(alice)
    raw = {
        "garbage": "not-a-jwt",
        "bad_signature": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        "refresh_token": await db(refresh_token)(alice),
        "empty": "",
    }[kind]
    communicator = await ws_connect(None, path=f"/ws/?token={raw}", expect_ready=False)
    await assert_closed_unauthorized(communicator)
    await communicator.disconnect()


async def test_expired_token_is_closed_4401(make_user):
    """An access token whose exp is in the past closes with 4401."""
    alice = await db(make_user)()
    token = AccessToken.for_user(alice)
    token.set_exp(lifetime=timedelta(seconds=-60))
    communicator = await ws_connect(None, token=str(token), expect_ready=False)
    await assert_closed_unauthorized(communicator)
    await communicator.disconnect()


async def test_deactivated_user_is_closed_4401(make_user):
    """A valid token of a deactivated account closes with 4401."""
    alice = await db(make_user)()
    token = access_token(alice)
    await db(type(alice).objects.filter(id=alice.id).update)(is_active=False)
    communicator = await ws_connect(None, token=token, expect_ready=False)
    await assert_closed_unauthorized(communicator)
    await communicator.disconnect()


async def test_authorization_header_auth(make_user):
    """An ``Authorization: Bearer`` header authenticates like ?token=; a bad one closes with 4401."""
    alice = await db(make_user)()
    good = await ws_connect(alice, path="/ws/", headers=[(b"authorization", f"Bearer {access_token(alice)}".encode())])
    await ping_barrier(good)
    bad = await ws_connect(None, path="/ws/", headers=[(b"authorization", b"Bearer not-a-jwt")], expect_ready=False)
    await assert_closed_unauthorized(bad)
    await disconnect_all(good, bad)


async def test_subprotocol_auth_selects_messenger_v1_and_never_echoes_token(make_user):
    """Browsers pass ``bearer.<jwt>`` next to ``messenger.v1``; the server selects messenger.v1, not the token."""
    alice = await db(make_user)()
    token = access_token(alice)
    communicator, connected, subprotocol = await connect_subprotocols(["messenger.v1", f"bearer.{token}"])
    assert connected
    assert subprotocol == "messenger.v1"
    first = await communicator.receive_json_from(timeout=5)
    assert first == {"type": "session.ready", "user": {"id": alice.id, "username": alice.username}}
    await communicator.disconnect()

    bad, connected, subprotocol = await connect_subprotocols(["messenger.v1", "bearer.not-a-jwt"])
    assert connected
    assert subprotocol is None or "bearer" not in subprotocol
    await assert_closed_unauthorized(bad)
    await bad.disconnect()


@pytest.mark.parametrize(
    "origin, allowed",
    [
        (b"http://evil.example.com", False),
        (b"https://localhost.evil.example", False),
        (b"http://localhost:8000", True),
        (None, True),
    ],
)
async def test_origin_checked_against_allowed_hosts(make_user, origin, allowed):
    """A foreign Origin is refused at the handshake; an allowed one, or none (non-browser client), gets in."""
    alice = await db(make_user)()
    headers = [(b"origin", origin)] if origin is not None else []
    communicator = WebsocketCommunicator(_app(), f"/ws/?token={access_token(alice)}", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected is allowed
    if allowed:
        ready = await communicator.receive_json_from(timeout=5)
        assert ready["type"] == "session.ready"
    await communicator.disconnect()


# --- message.send ----------------------------------------------------------------------


async def test_send_acks_sender_and_fans_out_to_every_other_socket(make_user):
    """message.send: the sending socket gets message.ack (ref echoed); the recipient and the sender's
    other device get message.new; the sending socket does not get message.new."""
    alice, bob = await users(make_user, 2)
    chat = await direct_chat(alice, bob)
    a1, a2, b1 = await ws_connect(alice), await ws_connect(alice), await ws_connect(bob)

    await a1.send_json_to(
        {"type": "message.send", "chat_id": chat.id, "client_id": "c-1", "text": "  hello  ", "ref": "r-1"}
    )
    ack = await a1.receive_json_from(timeout=5)
    assert ack["type"] == "message.ack"
    assert ack["ref"] == "r-1"
    assert ack["client_id"] == "c-1"
    assert ack["duplicate"] is False
    message = ack["message"]
    assert set(message) >= {"id", "chat_id", "seq", "sender_id", "kind", "text", "client_id", "created_at", "is_read"}
    assert message["chat_id"] == chat.id
    assert message["seq"] == 1
    assert message["sender_id"] == alice.id
    assert message["kind"] == "text"
    assert message["text"] == "hello"
    assert message["client_id"] == "c-1"
    assert message["is_read"] is False

    for other in (b1, a2):
        new = await other.receive_json_from(timeout=5)
        assert new["type"] == "message.new"
        assert new["message"] == message
    await assert_silent(a1, a2, b1)

    stored = await db(lambda: list(Message.objects.filter(chat_id=chat.id).values("id", "seq", "text", "sender_id")))()
    assert stored == [{"id": message["id"], "seq": 1, "text": "hello", "sender_id": alice.id}]
    # Sending marks the chat read up to the sender's own message.
    read = await db(lambda: Membership.objects.get(chat_id=chat.id, user_id=alice.id).last_read_seq)()
    assert read == 1
    await disconnect_all(a1, a2, b1)


async def test_duplicate_send_returns_original_and_broadcasts_nothing(make_user, api):
    """A repeat of (sender, client_id) from the same socket, another device or REST stores nothing,
    gets duplicate:true with the original message, and nobody gets a second message.new."""
    alice, bob = await users(make_user, 2)
    chat = await direct_chat(alice, bob)
    a1, a2, b1 = await ws_connect(alice), await ws_connect(alice), await ws_connect(bob)
    frame = {"type": "message.send", "chat_id": chat.id, "client_id": "dup-1", "text": "once"}

    await a1.send_json_to({**frame, "ref": "first"})
    first = await a1.receive_json_from(timeout=5)
    assert first["type"] == "message.ack" and first["duplicate"] is False
    original = first["message"]
    assert (await b1.receive_json_from(timeout=5))["message"]["id"] == original["id"]
    assert (await a2.receive_json_from(timeout=5))["message"]["id"] == original["id"]

    await a1.send_json_to({**frame, "ref": "again", "text": "different text"})
    again = await a1.receive_json_from(timeout=5)
    assert again == {
        "type": "message.ack",
        "client_id": "dup-1",
        "duplicate": True,
        "message": original,
        "ref": "again",
    }

    await a2.send_json_to({**frame, "ref": "other-device"})
    other_device = await a2.receive_json_from(timeout=5)
    assert other_device["type"] == "message.ack" and other_device["duplicate"] is True
    assert other_device["message"] == original

    response = await db(
        lambda: api(alice).post(f"/api/chats/{chat.id}/messages", {"client_id": "dup-1", "text": "once"}, format="json")
    )()
    assert response.status_code == 200
    assert response.json()["id"] == original["id"]

    await assert_silent(a1, a2, b1)
    assert await db(Message.objects.filter(chat_id=chat.id).count)() == 1

    # A duplicate consumed no seq: the next new message is seq 2.
    await a1.send_json_to({**frame, "client_id": "dup-2"})
    next_ack = await a1.receive_json_from(timeout=5)
    assert next_ack["duplicate"] is False and next_ack["message"]["seq"] == 2
    await disconnect_all(a1, a2, b1)


async def test_repeat_carries_original_read_state_and_key_from_another_chat_is_a_conflict(make_user):
    """A repeat answered after the recipient read the original says is_read:true; the same
    client_id in another chat is an error frame with code conflict, stores nothing, and the socket
    stays open."""
    alice, bob, carol = await users(make_user, 3)
    chat = await direct_chat(alice, bob)
    other = await direct_chat(alice, carol)
    a1, b1 = await ws_connect(alice), await ws_connect(bob)
    frame = {"type": "message.send", "chat_id": chat.id, "client_id": "k-1", "text": "hi"}
    await a1.send_json_to({**frame, "ref": "first"})
    first = await a1.receive_json_from(timeout=5)
    assert first["duplicate"] is False and first["message"]["is_read"] is False
    assert (await b1.receive_json_from(timeout=5))["type"] == "message.new"

    await b1.send_json_to({"type": "message.read", "chat_id": chat.id, "up_to_seq": first["message"]["seq"]})
    await receive_until(a1, "chat.read_all")
    await a1.send_json_to({**frame, "ref": "again"})
    again = await a1.receive_json_from(timeout=5)
    assert again["duplicate"] is True and again["message"] == {**first["message"], "is_read": True}

    await a1.send_json_to({**frame, "chat_id": other.id, "ref": "elsewhere"})
    error = await a1.receive_json_from(timeout=5)
    assert error["type"] == "error" and error["code"] == "conflict" and error["ref"] == "elsewhere", error
    assert await db(Message.objects.filter(chat_id=other.id).count)() == 0
    assert await db(lambda: Chat.objects.get(id=other.id).last_seq)() == 0
    await ping_barrier(a1)
    await disconnect_all(a1, b1)


# --- message.read -----------------------------------------------------------------------


async def test_read_updates_reader_devices_and_broadcasts_read_all(make_user):
    """message.read: the reading socket and the reader's other device get chat.read; every member's
    sockets get chat.read_all when the watermark grows; up_to_seq is clamped to last_seq and never moves back."""
    alice, bob = await users(make_user, 2)
    chat = await direct_chat(alice, bob)
    await send_via_service(alice, chat, "m1")
    await send_via_service(alice, chat, "m2")
    a1, b1, b2 = await ws_connect(alice), await ws_connect(bob), await ws_connect(bob)

    await b1.send_json_to({"type": "message.read", "chat_id": chat.id, "up_to_seq": 99, "ref": "rd"})
    read_all = {"type": "chat.read_all", "chat_id": chat.id, "up_to_seq": 2}
    # Reply and broadcast travel different paths, so their order on the socket is not fixed.
    on_b1 = by_type(await receive_n(b1, 2))
    reply = on_b1["chat.read"]
    assert reply["chat_id"] == chat.id
    assert reply["user_id"] == bob.id
    assert reply["last_read_seq"] == 2  # clamped to last_seq
    assert reply["ref"] == "rd"
    assert on_b1["chat.read_all"] == read_all

    on_b2 = by_type(await receive_n(b2, 2))
    other_device = on_b2["chat.read"]
    assert {k: other_device[k] for k in ("chat_id", "user_id", "last_read_seq")} == {
        "chat_id": chat.id,
        "user_id": bob.id,
        "last_read_seq": 2,
    }
    assert on_b2["chat.read_all"] == read_all

    sender_sees = await a1.receive_json_from(timeout=5)
    assert sender_sees == {"type": "chat.read_all", "chat_id": chat.id, "up_to_seq": 2}
    await assert_silent(a1, b1, b2)

    # Reading an older seq never moves the watermark back, and broadcasts nothing.
    await b1.send_json_to({"type": "message.read", "chat_id": chat.id, "up_to_seq": 1, "ref": "old"})
    stale = await b1.receive_json_from(timeout=5)
    assert stale["type"] == "chat.read" and stale["last_read_seq"] == 2 and stale["ref"] == "old"
    await assert_silent(a1, b1, b2)
    assert await db(lambda: Membership.objects.get(chat_id=chat.id, user_id=bob.id).last_read_seq)() == 2
    await disconnect_all(a1, b1, b2)


# --- typing, ping, auth.refresh ---------------------------------------------------------


async def test_typing_reaches_other_members_once_per_window(make_user):
    """typing: other members' sockets get {typing, chat_id, user_id}; the typist's own sockets do not;
    a second typing within the 3 s window produces nothing."""
    alice, bob, carol = await users(make_user, 3)
    group = await db(services.create_group)(user_id=alice.id, title="typing", member_ids=[bob.id, carol.id])
    a1 = await ws_connect(alice)
    a2 = await ws_connect(alice)
    b1 = await ws_connect(bob)
    c1 = await ws_connect(carol)

    await a1.send_json_to({"type": "typing", "chat_id": group.id, "ref": "t1"})
    for other in (b1, c1):
        frame = await other.receive_json_from(timeout=5)
        assert frame == {"type": "typing", "chat_id": group.id, "user_id": alice.id}
    await assert_silent(a1, a2, b1, c1)

    await a2.send_json_to({"type": "typing", "chat_id": group.id})
    await a1.send_json_to({"type": "typing", "chat_id": group.id})
    await assert_silent(a1, a2, b1, c1)

    # The throttle is per user: bob typing in the same chat still goes through.
    await b1.send_json_to({"type": "typing", "chat_id": group.id})
    assert (await a1.receive_json_from(timeout=5)) == {"type": "typing", "chat_id": group.id, "user_id": bob.id}
    await disconnect_all(a1, a2, b1, c1)


async def test_ping_gets_pong_with_ref(make_user):
    """ping -> pong, echoing ref when given."""
    alice = await db(make_user)()
    communicator = await ws_connect(alice)
    await communicator.send_json_to({"type": "ping", "ref": "p-1"})
    assert (await communicator.receive_json_from(timeout=5)) == {"type": "pong", "ref": "p-1"}
    await communicator.send_json_to({"type": "ping"})
    pong = await communicator.receive_json_from(timeout=5)
    assert pong["type"] == "pong" and pong.get("ref") is None
    await communicator.disconnect()


async def test_auth_refresh_accepts_own_fresh_token_only(make_user):
    """auth.refresh with the user's fresh access token is confirmed; an invalid token or another user's
    token is an error and the socket stays open."""
    alice, bob = await users(make_user, 2)
    communicator = await ws_connect(alice)
    fresh = AccessToken.for_user(alice)
    await communicator.send_json_to({"type": "auth.refresh", "token": str(fresh), "ref": "rf"})
    refreshed = await communicator.receive_json_from(timeout=5)
    assert refreshed == {"type": "auth.refreshed", "exp": fresh["exp"], "ref": "rf"}

    for bad in ("not-a-jwt", access_token(bob), await db(refresh_token)(alice)):
        await communicator.send_json_to({"type": "auth.refresh", "token": bad, "ref": "bad"})
        error = await communicator.receive_json_from(timeout=5)
        assert error["type"] == "error" and error["ref"] == "bad"
        assert error["code"] == "token_not_valid"
        await ping_barrier(communicator)

    await communicator.send_json_to({"type": "auth.refresh", "ref": "none"})
    error = await communicator.receive_json_from(timeout=5)
    assert error["type"] == "error" and error["code"] == "validation_error" and error["ref"] == "none"
    await ping_barrier(communicator)
    await communicator.disconnect()


def _short_token(user, seconds: int = 2) -> AccessToken:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=seconds))
    return token


async def test_socket_is_closed_4401_when_its_token_expires(make_user):
    """A socket whose access token expires while open is closed with 4401."""
    alice = await db(make_user)()
    communicator = await ws_connect(alice, token=str(_short_token(alice)))
    await ping_barrier(communicator)
    frames = []
    while True:
        output = await communicator.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            break
        frames.append(output)
    assert output["code"] == CLOSE_UNAUTHORIZED
    # Anything sent before the close is an error frame telling the client why.
    assert all('"error"' in f.get("text", "") for f in frames), frames
    await communicator.disconnect()


async def test_auth_refresh_keeps_socket_open_past_old_expiry(make_user):
    """After auth.refresh with a fresh token, the old token's expiry no longer closes the socket."""
    alice = await db(make_user)()
    short = _short_token(alice)
    communicator = await ws_connect(alice, token=str(short))
    await communicator.send_json_to({"type": "auth.refresh", "token": access_token(alice), "ref": "rf"})
    refreshed = await communicator.receive_json_from(timeout=5)
    assert refreshed["type"] == "auth.refreshed"
    # Wait until the original token is well past its expiry.
    await asyncio.sleep(max(0.0, short["exp"] - time.time()) + 1.0)
    assert await communicator.receive_nothing(timeout=0.2)
    await ping_barrier(communicator)
    await communicator.disconnect()


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.receive", "text": "{not json"},
        {"type": "websocket.receive", "text": ""},
        {"type": "websocket.receive", "text": "   "},
        {"type": "websocket.receive", "bytes": b'{"type": "ping"}'},
    ],
    ids=["not-json", "empty-text", "whitespace", "binary"],
)
async def test_invalid_json_error_keeps_socket_open(make_user, message):
    """Non-JSON text, an empty text frame and a binary frame get error invalid_json; the socket stays open."""
    alice = await db(make_user)()
    communicator = await ws_connect(alice)
    await communicator.send_input(message)
    error = await communicator.receive_json_from(timeout=5)
    assert error["type"] == "error"
    assert error["code"] == "invalid_json"
    assert error["detail"]
    assert "ref" in error and error["ref"] is None
    await ping_barrier(communicator)
    await communicator.disconnect()


@pytest.mark.parametrize(
    "payload", ["[1, 2]", '"ping"', "42", "null", "true"], ids=["list", "string", "number", "null", "bool"]
)
async def test_non_object_frame_is_validation_error(make_user, payload):
    """Valid JSON that is not an object gets error validation_error; the socket stays open."""
    alice = await db(make_user)()
    communicator = await ws_connect(alice)
    await communicator.send_to(text_data=payload)
    error = await communicator.receive_json_from(timeout=5)
    assert error["type"] == "error"
    assert error["code"] == "validation_error"
    assert error["ref"] is None
    await ping_barrier(communicator)
    await communicator.disconnect()


def _send(chat_id="CHAT", **overrides):
    frame = {"type": "message.send", "chat_id": chat_id, "client_id": "cid-1", "text": "hello"}
    frame.update(overrides)
    return {k: v for k, v in frame.items() if v is not _DROP}


_DROP = object()

INVALID_FRAMES = {
    "send-missing-chat_id": _send(chat_id=_DROP),
    "send-chat_id-string": _send(chat_id="1"),
    "send-chat_id-zero": _send(chat_id=0),
    "send-chat_id-negative": _send(chat_id=-5),
    "send-chat_id-bool": _send(chat_id=True),
    "send-chat_id-float": _send(chat_id=1.5),
    "send-chat_id-huge": _send(chat_id=2**64),
    "send-missing-client_id": _send(client_id=_DROP),
    "send-client_id-empty": _send(client_id=""),
    "send-client_id-65": _send(client_id="x" * 65),
    "send-client_id-int": _send(client_id=7),
    "send-missing-text": _send(text=_DROP),
    "send-text-4097": _send(text="x" * 4097),
    "send-text-blank": _send(text="   \n\t "),
    "send-text-empty": _send(text=""),
    "send-text-not-string": _send(text=["hi"]),
    "read-missing-up_to_seq": {"type": "message.read", "chat_id": "CHAT"},
    "read-up_to_seq-negative": {"type": "message.read", "chat_id": "CHAT", "up_to_seq": -1},
    "read-up_to_seq-string": {"type": "message.read", "chat_id": "CHAT", "up_to_seq": "3"},
    "read-missing-chat_id": {"type": "message.read", "up_to_seq": 1},
    "typing-missing-chat_id": {"type": "typing"},
    "typing-chat_id-null": {"type": "typing", "chat_id": None},
}


@pytest.mark.parametrize("name", list(INVALID_FRAMES))
async def test_invalid_fields_are_validation_errors(make_user, name):
    """Missing or invalid fields (text 1..4096 after trimming, client_id 1..64) get validation_error
    with the ref echoed; nothing is stored and the socket stays open."""
    alice, bob = await users(make_user, 2)
    chat = await direct_chat(alice, bob)
    a1, b1 = await ws_connect(alice), await ws_connect(bob)
    frame = {k: (chat.id if v == "CHAT" else v) for k, v in INVALID_FRAMES[name].items()}
    frame["ref"] = f"ref-{name}"
    await a1.send_json_to(frame)
    error = await a1.receive_json_from(timeout=5)
    assert error["type"] == "error", error
    assert error["code"] == "validation_error", error
    assert error["detail"]
    assert error["ref"] == f"ref-{name}"
    await ping_barrier(a1)
    await assert_silent(b1)
    assert await db(Message.objects.filter(chat_id=chat.id).count)() == 0
    await disconnect_all(a1, b1)


async def test_invalid_ref_is_validation_error(make_user):
    """A ref that is not a string (or longer than 128) is a validation_error echoed with ref null."""
    alice = await db(make_user)()
    communicator = await ws_connect(alice)
    for ref in (5, {"a": 1}, "r" * 129):
        await communicator.send_json_to({"type": "ping", "ref": ref})
        error = await communicator.receive_json_from(timeout=5)
        assert error["type"] == "error" and error["code"] == "validation_error" and error["ref"] is None
        await ping_barrier(communicator)
    await communicator.disconnect()


async def test_boundary_values_are_accepted(make_user):
    """4096 characters of text (after trimming) and a 64-character client_id are accepted."""
    alice, bob = await users(make_user, 2)
    chat = await direct_chat(alice, bob)
    communicator = await ws_connect(alice)
    text = "y" * 4096
    await communicator.send_json_to(
        {"type": "message.send", "chat_id": chat.id, "client_id": "c" * 64, "text": f"  {text}\n"}
    )
    ack = await communicator.receive_json_from(timeout=5)
    assert ack["type"] == "message.ack", ack
    assert ack["message"]["text"] == text and ack["message"]["client_id"] == "c" * 64
    await communicator.disconnect()


@pytest.mark.parametrize("frame", [{"type": "nope"}, {"type": "MESSAGE.SEND"}, {}, {"type": 5}, {"type": None}])
async def test_unknown_type_keeps_socket_open(make_user, frame):
    """A frame without a known string type gets error unknown_type with the ref echoed."""
    alice = await db(make_user)()
    communicator = await ws_connect(alice)
    await communicator.send_json_to({**frame, "ref": "u"})
    error = await communicator.receive_json_from(timeout=5)
    assert error["type"] == "error"
    assert error["code"] == "unknown_type"
    assert error["ref"] == "u"
    await ping_barrier(communicator)
    await communicator.disconnect()


async def test_layer_only_type_is_not_reachable_from_client(make_user):
    """A client cannot invoke the channel-layer handler by naming it as a frame type."""
    alice = await db(make_user)()
    communicator = await ws_connect(alice)
    for kind in ("event.deliver", "event_deliver", "websocket.disconnect"):
        await communicator.send_json_to({"type": kind, "text": '{"type":"forged"}', "ref": "x"})
        error = await communicator.receive_json_from(timeout=5)
        assert error["type"] == "error" and error["code"] == "unknown_type"
        await ping_barrier(communicator)
    await communicator.disconnect()


async def test_foreign_and_missing_chat_are_the_same_not_found(make_user):
    """A chat the user is not in and a chat that does not exist give an identical not_found error,
    for message.send, message.read and typing; nothing is stored or broadcast."""
    alice, bob, carol = await users(make_user, 3)
    foreign = await direct_chat(bob, carol)
    a1, b1, c1 = await ws_connect(alice), await ws_connect(bob), await ws_connect(carol)
    frames = [
        {"type": "message.send", "client_id": "nf-1", "text": "hi"},
        {"type": "message.read", "up_to_seq": 1},
        {"type": "typing"},
    ]
    for frame in frames:
        errors = []
        for chat_id in (foreign.id, MISSING_CHAT_ID):
            await a1.send_json_to({**frame, "chat_id": chat_id, "ref": "nf"})
            error = await a1.receive_json_from(timeout=5)
            errors.append(error)
            await ping_barrier(a1)
        assert errors[0] == errors[1], frame
        assert errors[0]["type"] == "error" and errors[0]["code"] == "not_found" and errors[0]["ref"] == "nf"
    await assert_silent(b1, c1)
    assert await db(Message.objects.filter(chat_id=foreign.id).count)() == 0
    await disconnect_all(a1, b1, c1)


async def test_send_to_deactivated_peer_is_forbidden(make_user):
    """Sending in a direct chat whose peer is deactivated gets forbidden; nothing is stored."""
    alice, bob = await users(make_user, 2)
    chat = await direct_chat(alice, bob)
    communicator = await ws_connect(alice)
    await db(type(bob).objects.filter(id=bob.id).update)(is_active=False)
    await communicator.send_json_to(
        {"type": "message.send", "chat_id": chat.id, "client_id": "f-1", "text": "hi", "ref": "f"}
    )
    error = await communicator.receive_json_from(timeout=5)
    assert error["type"] == "error" and error["code"] == "forbidden" and error["ref"] == "f"
    await ping_barrier(communicator)
    assert await db(Message.objects.filter(chat_id=chat.id).count)() == 0
    assert await db(lambda: Chat.objects.get(id=chat.id).last_seq)() == 0
    await communicator.disconnect()


async def test_rate_limited_send_has_retry_after(make_user, settings):
    """Over SEND_RATE_LIMIT a send gets rate_limited with retry_after, stores nothing, and the socket stays open."""
    settings.SEND_RATE_LIMIT = 1
    settings.SEND_RATE_WINDOW_SECONDS = 60
    alice, bob = await users(make_user, 2)
    chat = await direct_chat(alice, bob)
    communicator = await ws_connect(alice)
    # With one send per window, of three quick sends at least two share a window: one is refused.
    replies = []
    for n in range(3):
        await communicator.send_json_to(
            {"type": "message.send", "chat_id": chat.id, "client_id": f"rl-{n}", "text": "x", "ref": f"r{n}"}
        )
        replies.append(await communicator.receive_json_from(timeout=5))
    limited = [r for r in replies if r["type"] == "error"]
    assert limited, replies
    for error in limited:
        assert error["code"] == "rate_limited"
        assert 0 < error["retry_after"] <= 60
        assert error["ref"].startswith("r")
    stored = await db(lambda: sorted(Message.objects.filter(chat_id=chat.id).values_list("client_id", flat=True)))()
    acked = sorted(r["client_id"] for r in replies if r["type"] == "message.ack")
    assert stored == acked and len(stored) == 3 - len(limited)
    await ping_barrier(communicator)
    await communicator.disconnect()


# --- many devices ----------------------------------------------------------------------------


async def test_two_devices_both_receive_and_reads_sync(make_user):
    """Both sockets of one user receive message.new; a read on one device reaches the other as chat.read."""
    alice, bob = await users(make_user, 2)
    chat = await direct_chat(alice, bob)
    a1, b_phone, b_laptop = await ws_connect(alice), await ws_connect(bob), await ws_connect(bob)

    await a1.send_json_to({"type": "message.send", "chat_id": chat.id, "client_id": "md-1", "text": "to both"})
    ack = await a1.receive_json_from(timeout=5)
    for device in (b_phone, b_laptop):
        new = await device.receive_json_from(timeout=5)
        assert new["type"] == "message.new" and new["message"]["id"] == ack["message"]["id"]

    await b_phone.send_json_to({"type": "message.read", "chat_id": chat.id, "up_to_seq": ack["message"]["seq"]})
    await receive_until(b_phone, "chat.read")
    synced, _ = await receive_until(b_laptop, "chat.read")
    assert synced["chat_id"] == chat.id
    assert synced["user_id"] == bob.id
    assert synced["last_read_seq"] == ack["message"]["seq"]
    await disconnect_all(a1, b_phone, b_laptop)


# --- membership ------------------------------------------------------------------------------


async def test_creating_chats_announces_them_at_once(make_user):
    """Creating a direct chat or a group sends chat.created to every member's sockets right away."""
    alice, bob, carol = await users(make_user, 3)
    a1, b1, c1 = await ws_connect(alice), await ws_connect(bob), await ws_connect(carol)

    direct = await direct_chat(alice, bob)
    for communicator in (a1, b1):
        created, _ = await receive_until(communicator, "chat.created")
        assert created["chat"]["id"] == direct.id and created["chat"]["kind"] == "direct"

    group = await db(services.create_group)(user_id=alice.id, title="Team", member_ids=[bob.id, carol.id])
    for communicator in (a1, b1, c1):
        created, _ = await receive_until(communicator, "chat.created")
        assert created["chat"]["id"] == group.id
        assert created["chat"]["kind"] == "group" and created["chat"]["title"] == "Team"
        assert {m["id"] for m in created["chat"]["members"]} == {alice.id, bob.id, carol.id}
    await disconnect_all(a1, b1, c1)


async def test_added_member_gets_chat_created_then_messages(make_user):
    """add_member: the new member's sockets get chat.created and then the chat's messages;
    the other members get chat.member_added."""
    alice, bob, carol = await users(make_user, 3)
    group = await db(services.create_group)(user_id=alice.id, title="Team", member_ids=[bob.id])
    a1, b1 = await ws_connect(alice), await ws_connect(bob)
    c1, c2 = await ws_connect(carol), await ws_connect(carol)

    await db(services.add_member)(actor_id=alice.id, chat_id=group.id, user_id=carol.id)
    for communicator in (c1, c2):
        created, _ = await receive_until(communicator, "chat.created")
        assert created["chat"]["id"] == group.id
        assert carol.id in {m["id"] for m in created["chat"]["members"]}
    for communicator in (a1, b1):
        added, _ = await receive_until(communicator, "chat.member_added")
        assert added["chat_id"] == group.id and added["user_id"] == carol.id

    await b1.send_json_to({"type": "message.send", "chat_id": group.id, "client_id": "after-add", "text": "welcome"})
    ack, _ = await receive_until(b1, "message.ack")
    for communicator in (c1, c2, a1):
        new, _ = await receive_until(communicator, "message.new")
        while new["message"]["id"] != ack["message"]["id"]:  # the system message "added" may come first
            assert new["message"]["kind"] == "system"
            new, _ = await receive_until(communicator, "message.new")
        assert new["message"]["text"] == "welcome"
    await disconnect_all(a1, b1, c1, c2)


async def test_removed_member_is_told_and_then_hears_nothing(make_user):
    """remove_member: remaining members and the removed user get chat.member_removed; the removed user
    gets nothing more from that chat and can no longer use it."""
    alice, bob, carol = await users(make_user, 3)
    group = await db(services.create_group)(user_id=alice.id, title="Team", member_ids=[bob.id, carol.id])
    a1, b1, c1 = await ws_connect(alice), await ws_connect(bob), await ws_connect(carol)

    await db(services.remove_member)(actor_id=alice.id, chat_id=group.id, user_id=carol.id)
    for communicator in (a1, b1, c1):
        removed, _ = await receive_until(communicator, "chat.member_removed")
        assert removed["chat_id"] == group.id and removed["user_id"] == carol.id
    await assert_silent(c1)

    await b1.send_json_to({"type": "message.send", "chat_id": group.id, "client_id": "after-rm", "text": "bye"})
    await receive_until(b1, "message.ack")
    new, _ = await receive_until(a1, "message.new")
    while new["message"]["client_id"] != "after-rm":
        new, _ = await receive_until(a1, "message.new")
    await b1.send_json_to({"type": "typing", "chat_id": group.id})
    await receive_until(a1, "typing")
    await b1.send_json_to({"type": "message.read", "chat_id": group.id, "up_to_seq": new["message"]["seq"]})
    await receive_until(b1, "chat.read")
    await assert_silent(c1)

    await c1.send_json_to({"type": "message.send", "chat_id": group.id, "client_id": "ghost", "text": "x", "ref": "g"})
    error = await c1.receive_json_from(timeout=5)
    assert error["type"] == "error" and error["code"] == "not_found"
    await disconnect_all(a1, b1, c1)


# --- read receipts ----------------------------------------------------------------------------


async def test_direct_chat_read_receipt(make_user, api):
    """Direct chat: the sender gets chat.read_all when the recipient reads, and is_read in /history flips then."""
    alice, bob = await users(make_user, 2)
    chat = await direct_chat(alice, bob)
    a1, b1 = await ws_connect(alice), await ws_connect(bob)
    await a1.send_json_to({"type": "message.send", "chat_id": chat.id, "client_id": "rr-1", "text": "read me"})
    ack = await a1.receive_json_from(timeout=5)
    seq = ack["message"]["seq"]
    await receive_until(b1, "message.new")
    assert [m["is_read"] for m in (await db(history)(api, alice, chat.id))["results"]] == [False]

    await b1.send_json_to({"type": "message.read", "chat_id": chat.id, "up_to_seq": seq})
    receipt = await a1.receive_json_from(timeout=5)
    assert receipt == {"type": "chat.read_all", "chat_id": chat.id, "up_to_seq": seq}
    for viewer in (alice, bob):
        assert [m["is_read"] for m in (await db(history)(api, viewer, chat.id))["results"]] == [True]
    await disconnect_all(a1, b1)


async def test_group_read_all_only_after_last_member_reads(make_user, api):
    """5-member group: chat.read_all reaches the members only when the LAST member reads, and is_read
    in /history stays false until then."""
    owner, *others = await users(make_user, 5)
    group = await db(services.create_group)(user_id=owner.id, title="Five", member_ids=[u.id for u in others])
    sockets = {u.id: await ws_connect(u) for u in (owner, *others)}
    sender = sockets[owner.id]
    await sender.send_json_to({"type": "message.send", "chat_id": group.id, "client_id": "g-1", "text": "all read?"})
    ack = await sender.receive_json_from(timeout=5)
    message = ack["message"]
    assert message["is_read"] is False
    for u in others:
        await receive_until(sockets[u.id], "message.new")

    def is_read_now(viewer) -> bool:
        results = history(api, viewer, group.id)["results"]
        return next(m for m in results if m["id"] == message["id"])["is_read"]

    for reader in others[:-1]:
        await sockets[reader.id].send_json_to(
            {"type": "message.read", "chat_id": group.id, "up_to_seq": message["seq"]}
        )
        reply, seen = await receive_until(sockets[reader.id], "chat.read")
        assert reply["last_read_seq"] == message["seq"]
        assert not any(f["type"] == "chat.read_all" for f in seen)
        await assert_silent(*sockets.values())
        assert await db(is_read_now)(owner) is False

    last = others[-1]
    await sockets[last.id].send_json_to({"type": "message.read", "chat_id": group.id, "up_to_seq": message["seq"]})
    for communicator in sockets.values():
        receipt, _ = await receive_until(communicator, "chat.read_all")
        assert receipt == {"type": "chat.read_all", "chat_id": group.id, "up_to_seq": message["seq"]}
    assert await db(is_read_now)(owner) is True
    assert await db(lambda: Chat.objects.get(id=group.id).read_all_seq)() == message["seq"]
    await disconnect_all(*sockets.values())


async def test_big_group_message_reaches_every_member_device(make_user):
    """A group big enough for the layer's direct delivery (runtime/layers.py): every other
    member's socket gets message.new once, the sender only its ack, and a later logout still
    closes a member's socket (that message type keeps the consumer's queue)."""
    from runtime.layers import DIRECT_MIN_GROUPS

    users = [await db(make_user)() for _ in range(DIRECT_MIN_GROUPS + 2)]
    owner, members = users[0], users[1:]
    group = await db(services.create_group)(user_id=owner.id, title="Big", member_ids=[u.id for u in members])
    sockets = [await ws_connect(user) for user in users]
    try:
        await sockets[0].send_json_to(
            {"type": "message.send", "chat_id": group.id, "client_id": "big-1", "text": "hello all"}
        )
        ack, _ = await receive_until(sockets[0], "message.ack")
        seq = ack["message"]["seq"]
        for ws in sockets[1:]:
            frame, _ = await receive_until(ws, "message.new")
            assert (frame["message"]["seq"], frame["message"]["text"]) == (seq, "hello all")
        assert await sockets[0].receive_nothing(timeout=0.2)  # no message.new echo to the sender
        await db(close_sockets_of)(members[0].id)
        frame, _ = await receive_until(sockets[1], "error")
        assert frame["code"] == "session_revoked"
    finally:
        for ws in sockets:
            await ws.disconnect()


def close_sockets_of(user_id: int) -> None:

    realtime.close_user_sockets(user_id=user_id, sid=None)
