"""Login sessions: rotation under races, logout and deactivation reaching open sockets, throttling."""

from __future__ import annotations

import threading

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from rest_framework.test import APIClient

from accounts import services as account_services
from tests.conftest import PASSWORD, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)


def login(user) -> dict:
    response = APIClient().post("/api/auth/token", {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_exactly_one_of_parallel_refreshes_wins(make_user):
    """N parallel refreshes of one refresh token: exactly one gets a new pair, the rest get 401."""
    user = make_user()
    refresh = login(user)["refresh"]
    n = 12
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker():
        try:
            client = APIClient()
            barrier.wait()
            response = client.post("/api/auth/token/refresh", {"refresh": refresh}, format="json")
            with lock:
                statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [200] + [401] * (n - 1)


async def test_logout_closes_that_sessions_sockets_only(make_user):
    """Logout closes the sockets of that login session with 4401 and leaves other sessions open."""
    user = await database_sync_to_async(make_user)()
    first = await database_sync_to_async(login)(user)
    second = await database_sync_to_async(login)(user)
    ws_first = await ws_connect(user, token=first["access"])
    ws_second = await ws_connect(user, token=second["access"])

    response = await database_sync_to_async(
        lambda: APIClient().post("/api/auth/logout", {"refresh": first["refresh"]}, format="json")
    )()
    assert response.status_code == 204

    frame = await ws_first.receive_json_from(timeout=5)
    assert frame["type"] == "error" and frame["code"] == "session_revoked"
    closed = await ws_first.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4401}

    await ws_second.send_json_to({"type": "ping", "ref": "still-here"})
    assert await ws_second.receive_json_from(timeout=5) == {"type": "pong", "ref": "still-here"}
    await ws_second.disconnect()


def test_logged_out_access_token_is_refused(make_user):
    """After logout the session's access token is refused on REST, and its refresh token too."""
    user = make_user()
    pair = login(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
    assert client.get("/api/users/me").status_code == 200
    assert APIClient().post("/api/auth/logout", {"refresh": pair["refresh"]}, format="json").status_code == 204
    response = client.get("/api/users/me")
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"
    again = APIClient().post("/api/auth/token/refresh", {"refresh": pair["refresh"]}, format="json")
    assert again.status_code == 401


async def test_logged_out_access_token_cannot_open_a_socket(make_user):
    """A socket handshake with an access token of a logged-out session is closed with 4401."""
    user = await database_sync_to_async(make_user)()
    pair = await database_sync_to_async(login)(user)
    await database_sync_to_async(account_services.logout)(refresh=pair["refresh"])
    ws = await ws_connect(user, token=pair["access"], expect_ready=False)
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}


async def test_deactivation_closes_every_socket_of_the_user(make_user):
    """Deactivating a user closes all of their sockets at once."""
    user = await database_sync_to_async(make_user)()
    sockets = [await ws_connect(user), await ws_connect(user)]
    await database_sync_to_async(account_services.set_active)(user=user, active=False)
    for ws in sockets:
        frame = await ws.receive_json_from(timeout=5)
        assert frame["code"] == "session_revoked"
        assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    assert not await database_sync_to_async(lambda: type(user).objects.get(id=user.id).is_active)()


def test_login_is_throttled_with_retry_after(make_user, settings):
    """Login attempts beyond the rate answer 429 rate_limited with a retry hint."""
    settings.AUTH_THROTTLE_RATE = "3/min"
    user = make_user()
    client = APIClient(REMOTE_ADDR="10.1.2.3")
    codes = [
        client.post("/api/auth/token", {"username": user.username, "password": "wrong"}, format="json").status_code
        for _ in range(3)
    ]
    assert codes == [401, 401, 401]
    response = client.post("/api/auth/token", {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "rate_limited" and body["retry_after"] > 0
    assert int(response["Retry-After"]) >= 1


async def test_oversized_frame_closes_with_1009(make_user):
    """A frame above 64 KiB closes the socket with 1009 instead of being parsed."""
    user = await database_sync_to_async(make_user)()
    ws = await ws_connect(user)
    await ws.send_to(text_data='{"type":"ping","pad":"' + "x" * (70 * 1024) + '"}')
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 1009}
