"""Socket handshakes: connects bounded per user and per client address (shared through the
cache), ``Host`` checked against ``ALLOWED_HOSTS``, and a replayed refresh token revoking its
whole session, sockets included."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient

from tests.conftest import PASSWORD, access_token, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)


def from_address(address: str):
    """The ASGI application as a client at ``address`` reaches it (daphne fills ``client``)."""
    from messenger.asgi import application

    async def app(scope, receive, send):
        return await application({**scope, "client": [address, 40000]}, receive, send)

    return app


async def open_socket(address: str, token: str | None, headers=()):
    path = f"/ws/?token={token}" if token else "/ws/"
    communicator = WebsocketCommunicator(from_address(address), path, headers=list(headers))
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def assert_ready(communicator) -> None:
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["type"] == "session.ready", frame


async def assert_refused(communicator, code: str, close_code: int) -> dict:
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["type"] == "error" and frame["code"] == code and frame["ref"] is None, frame
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": close_code}
    return frame


async def test_connects_per_user_are_bounded(make_user, settings, clock):
    """Past SOCKET_CONNECTS_PER_USER in a window a user's handshake is accepted, told
    rate_limited with retry_after and closed with 4429, from any address; other users connect."""
    settings.SOCKET_CONNECTS_PER_USER = 3
    settings.SOCKET_CONNECT_WINDOW_SECONDS = 60
    alice, bob = await database_sync_to_async(make_user)(), await database_sync_to_async(make_user)()
    sockets = []
    for n in range(3):
        sockets.append(await open_socket(f"192.0.2.{n + 1}", access_token(alice)))
        await assert_ready(sockets[-1])
    refused = await open_socket("192.0.2.9", access_token(alice))
    frame = await assert_refused(refused, "rate_limited", 4429)
    assert frame["retry_after"] == 60  # the clock stands at the start of a window
    other = await open_socket("192.0.2.9", access_token(bob))
    await assert_ready(other)
    clock.advance(60)
    again = await open_socket("192.0.2.9", access_token(alice))
    await assert_ready(again)
    for communicator in [*sockets, other, again]:
        await communicator.disconnect()


async def test_connects_per_address_are_bounded_whatever_the_headers_say(make_user, settings, clock):
    """Every handshake from an address counts, with a token or not; past the limit even a valid
    one is refused, and a spoofed X-Forwarded-For (no trusted proxy) does not change the address."""
    settings.SOCKET_CONNECTS_PER_ADDRESS = 3
    settings.TRUSTED_PROXIES = []
    user = await database_sync_to_async(make_user)()
    first = await open_socket("198.51.100.5", None)
    assert await first.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    kept = []
    for n in range(2):
        kept.append(
            await open_socket("198.51.100.5", access_token(user), [(b"x-forwarded-for", f"10.9.9.{n}".encode())])
        )
        await assert_ready(kept[-1])
    spoofed = await open_socket("198.51.100.5", access_token(user), [(b"x-forwarded-for", b"203.0.113.1")])
    await assert_refused(spoofed, "rate_limited", 4429)
    elsewhere = await open_socket("198.51.100.6", access_token(user))
    await assert_ready(elsewhere)
    for communicator in [*kept, elsewhere]:
        await communicator.disconnect()


@pytest.mark.parametrize("host", [b"evil.example", b"evil.example:8000", b"127.0.0.1.evil.example", b"bad host"])
async def test_a_handshake_for_a_foreign_host_is_refused(make_user, settings, host):
    """A Host outside ALLOWED_HOSTS (DNS rebinding, a misrouted client) gets ``bad_host`` and
    4400 before its token is looked at, as REST refuses such a request."""
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    user = await database_sync_to_async(make_user)()
    communicator = await open_socket("192.0.2.50", access_token(user), [(b"host", host)])
    await assert_refused(communicator, "bad_host", 4400)


async def test_a_handshake_for_an_allowed_host_connects(make_user, settings):
    """Any port of an allowed host, and ``.example.com`` entries with their subdomains."""
    settings.ALLOWED_HOSTS = ["localhost", ".example.com"]
    user = await database_sync_to_async(make_user)()
    for host in (b"localhost:8000", b"chat.example.com", b"LOCALHOST"):
        communicator = await ws_connect(user, headers=[(b"host", host)])
        await communicator.disconnect()


async def test_bad_host_refusal_selects_the_offered_subprotocol(make_user, settings):
    """A browser authenticating by subprotocol sees the 4400 instead of a failed handshake."""
    settings.ALLOWED_HOSTS = ["localhost"]
    user = await database_sync_to_async(make_user)()
    communicator = WebsocketCommunicator(
        from_address("192.0.2.51"),
        "/ws/",
        headers=[(b"host", b"evil.example")],
        subprotocols=["messenger.v1", f"bearer.{access_token(user)}"],
    )
    connected, subprotocol = await communicator.connect(timeout=5)
    assert connected and subprotocol == "messenger.v1"
    await assert_refused(communicator, "bad_host", 4400)


def _login(user) -> dict:
    response = APIClient().post("/api/auth/token", {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def _refresh(token: str):
    return APIClient().post("/api/auth/token/refresh", {"refresh": token}, format="json")


async def test_refresh_token_reuse_revokes_the_whole_session(make_user, settings):
    """Presenting an already rotated refresh token ends its session: the newest refresh token
    and the access tokens of the session are refused, and its sockets close with
    session_revoked + 4401. The user's other sessions stay."""
    settings.REFRESH_REUSE_GRACE_SECONDS = 0
    user = await database_sync_to_async(make_user)()
    first = await database_sync_to_async(_login)(user)
    other = await database_sync_to_async(_login)(user)
    rotated = await database_sync_to_async(_refresh)(first["refresh"])
    assert rotated.status_code == 200
    second = rotated.json()
    socket = await ws_connect(user, token=second["access"])
    bystander = await ws_connect(user, token=other["access"])

    replay = await database_sync_to_async(_refresh)(first["refresh"])
    assert replay.status_code == 401 and replay.json()["code"] == "token_not_valid"
    frame = await socket.receive_json_from(timeout=5)
    assert frame["type"] == "error" and frame["code"] == "session_revoked"
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}

    assert (await database_sync_to_async(_refresh)(second["refresh"])).status_code == 401
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {second['access']}")
    assert (await database_sync_to_async(client.get)("/api/users/me")).status_code == 401
    late = await ws_connect(user, token=second["access"], expect_ready=False)
    assert await late.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}

    await bystander.send_json_to({"type": "ping", "ref": "still"})
    assert await bystander.receive_json_from(timeout=5) == {"type": "pong", "ref": "still"}
    assert (await database_sync_to_async(_refresh)(other["refresh"])).status_code == 200
    await bystander.disconnect()


def test_a_parallel_refresh_within_the_grace_is_refused_without_revoking(make_user, settings):
    """Two refreshes of one token by the same client at once: the loser gets 401, the winner's
    session lives on (the grace is what tells a race from a replay)."""
    settings.REFRESH_REUSE_GRACE_SECONDS = 60
    user = make_user()
    pair = _login(user)
    winner = _refresh(pair["refresh"])
    assert winner.status_code == 200
    assert _refresh(pair["refresh"]).status_code == 401
    assert _refresh(winner.json()["refresh"]).status_code == 200


def test_a_forged_replay_revokes_nothing(make_user, settings):
    """Only a well-signed token can revoke a session: a copy with a broken signature is just refused."""
    settings.REFRESH_REUSE_GRACE_SECONDS = 0
    user = make_user()
    pair = _login(user)
    rotated = _refresh(pair["refresh"])
    assert rotated.status_code == 200
    head, body, _signature = pair["refresh"].split(".")
    assert _refresh(f"{head}.{body}.AAAA").status_code == 401
    assert _refresh(rotated.json()["refresh"]).status_code == 200
