"""No token and no password in any log line.

Two sources are captured while a user registers, fails to log in, logs in, refreshes (and
replays a used refresh token), calls the API, opens sockets with the token in the query string,
in the ``Authorization`` header and in the ``Sec-WebSocket-Protocol`` bearer form, refreshes a
socket's token, and logs out:

* every log record of this process, with every logger at DEBUG, in production mode and with
  ``DEBUG=True`` (where Django's SQL log is live);
* the whole output of real server processes with the access log on: ``python -m runtime.serve
  --access-log - -v 2`` with ``LOG_LEVEL=DEBUG`` (the most talkative setting there is), and plain
  ``daphne --access-log - messenger.asgi:application``.

Then every raw token, every token's signature alone, and both passwords are searched for: 0 hits.
"""

from __future__ import annotations

import json
import logging
import traceback
from contextlib import ExitStack

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

PASSWORD = "Gr33n-Lantern-Oath-7"
WRONG_PASSWORD = "Wr0ng-Guess-Marmalade-3"

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async


def needles(secrets: list[str]) -> list[str]:
    """What must not appear: each secret, and each JWT's signature on its own."""
    found = set()
    for secret in secrets:
        found.add(secret)
        if secret.count(".") == 2:
            found.add(secret.rsplit(".", 1)[1])
    return sorted(found)


def hits(text: str, secrets: list[str]) -> list[str]:
    return [needle[:24] + "..." for needle in needles(secrets) if needle in text]


def tamper(token: str) -> str:
    return token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")


# --- this process: every logger at DEBUG --------------------------------------------------


@pytest.fixture
def every_logger_at_debug(caplog):
    """Root and every logger that exists at DEBUG (restored afterwards); records go to caplog."""
    caplog.set_level(logging.DEBUG)
    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    yield caplog
    for logger, level, disabled in saved:
        logger.setLevel(level)
        logger.disabled = disabled


def record_text(record: logging.LogRecord) -> str:
    """Everything a handler could write: the message, the traceback, and every attribute."""
    parts = [record.getMessage()]
    if record.exc_info:
        parts.append("".join(traceback.format_exception(*record.exc_info)))
    if record.stack_info:
        parts.append(record.stack_info)
    parts.extend(repr(value) for value in vars(record).values())
    return "\n".join(parts)


async def _socket(path: str, headers=(), subprotocols=None) -> WebsocketCommunicator:
    from messenger.asgi import application

    communicator = WebsocketCommunicator(application, path, headers=list(headers), subprotocols=subprotocols)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
async def test_no_secret_in_this_process_logs(every_logger_at_debug, settings, debug):
    """Every record of every logger at DEBUG, while the whole auth life cycle runs: 0 secrets."""
    settings.DEBUG = debug
    client = APIClient()

    def call(method, *args, **kwargs):
        return db(getattr(client, method))(*args, format="json", **kwargs)

    username = f"logcheck{'d' if debug else 'p'}"
    response = await call(
        "post", "/api/auth/register", {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
    )
    assert response.status_code == 201
    response = await call("post", "/api/auth/token", {"username": username, "password": WRONG_PASSWORD})
    assert response.status_code == 401
    response = await call("post", "/api/auth/token", {"username": "nobody-" + username, "password": PASSWORD})
    assert response.status_code == 401
    first = (await call("post", "/api/auth/token", {"username": username, "password": PASSWORD})).json()
    second = (await call("post", "/api/auth/token/refresh", {"refresh": first["refresh"]})).json()
    assert "access" in second
    replay = await call("post", "/api/auth/token/refresh", {"refresh": first["refresh"]})
    assert replay.status_code == 401
    bad_access = tamper(second["access"])
    secrets = [
        PASSWORD,
        WRONG_PASSWORD,
        first["access"],
        first["refresh"],
        second["access"],
        second["refresh"],
        bad_access,
    ]

    authed = APIClient()
    authed.credentials(HTTP_AUTHORIZATION=f"Bearer {second['access']}")
    assert (await db(authed.get)("/api/users/me")).status_code == 200
    forged = APIClient()
    forged.credentials(HTTP_AUTHORIZATION=f"Bearer {bad_access}")
    assert (await db(forged.get)("/api/users/me")).status_code == 401

    sockets = [
        await _socket(f"/ws/?token={second['access']}"),
        await _socket("/ws/", headers=[(b"authorization", f"Bearer {second['access']}".encode())]),
        await _socket("/ws/", subprotocols=["messenger.v1", f"bearer.{second['access']}"]),
    ]
    for communicator in sockets:
        assert (await communicator.receive_json_from(timeout=5))["type"] == "session.ready"
    await sockets[0].send_json_to({"type": "auth.refresh", "token": first["access"], "ref": "r1"})
    assert (await sockets[0].receive_json_from(timeout=5))["type"] == "auth.refreshed"
    await sockets[0].send_json_to({"type": "auth.refresh", "token": bad_access, "ref": "r2"})
    assert (await sockets[0].receive_json_from(timeout=5))["code"] == "token_not_valid"
    rejected = await _socket(f"/ws/?token={bad_access}")
    assert (await rejected.receive_output(timeout=5))["type"] == "websocket.close"

    assert (await call("post", "/api/auth/logout", {"refresh": second["refresh"]})).status_code == 204
    assert (await call("post", "/api/auth/logout", {"refresh": second["refresh"]})).status_code == 401
    for communicator in sockets:
        await communicator.disconnect()

    records = every_logger_at_debug.records
    assert records, "nothing was logged: the capture is not working"
    leaking = [(r.name, r.levelname, hits(record_text(r), secrets)) for r in records if hits(record_text(r), secrets)]
    assert leaking == []


# --- real server processes: the whole output ---------------------------------------------


def _exercise_server(server, *, plain_http_token: bool) -> list[str]:
    """The auth life cycle against a live server; returns the secrets used."""
    user = server.register(password=PASSWORD)
    status, _ = server.http("POST", "/api/auth/token", {"username": user["username"], "password": WRONG_PASSWORD})
    assert status == 401
    first = server.login(user)
    status, second = server.http("POST", "/api/auth/token/refresh", {"refresh": first["refresh"]})
    assert status == 200
    status, _ = server.http("POST", "/api/auth/token/refresh", {"refresh": first["refresh"]})
    assert status == 401
    bad_access = tamper(second["access"])
    assert server.http("GET", "/api/users/me", token=second["access"])[0] == 200
    assert server.http("GET", "/api/users/me", token=bad_access)[0] == 401

    with ExitStack() as stack:
        opened = [
            stack.enter_context(connect(server.ws_url(second["access"]), open_timeout=10, proxy=None)),
            stack.enter_context(
                connect(
                    server.ws_url(),
                    additional_headers={"Authorization": f"Bearer {second['access']}"},
                    open_timeout=10,
                    proxy=None,
                )
            ),
            stack.enter_context(
                connect(
                    server.ws_url(),
                    subprotocols=["messenger.v1", f"bearer.{second['access']}"],
                    open_timeout=10,
                    proxy=None,
                )
            ),
        ]
        for connection in opened:
            assert '"session.ready"' in connection.recv(timeout=10)
        opened[0].send(json.dumps({"type": "auth.refresh", "token": first["access"]}))
        assert '"auth.refreshed"' in opened[0].recv(timeout=10)
    with connect(server.ws_url(bad_access), open_timeout=10, proxy=None) as connection, pytest.raises(ConnectionClosed):
        connection.recv(timeout=10)
    if plain_http_token:
        # A token in the query string of plain HTTP requests: a failed upgrade, a confused client.
        assert server.http("GET", f"/ws/?token={second['access']}")[0] == 404
        assert server.http("GET", f"/api/users/me?token={second['access']}")[0] == 401
    status, _ = server.http("POST", "/api/auth/logout", {"refresh": second["refresh"]})
    assert status == 204
    return [
        PASSWORD,
        WRONG_PASSWORD,
        first["access"],
        first["refresh"],
        second["access"],
        second["refresh"],
        bad_access,
    ]


def test_no_secret_in_messenger_serve_output_at_full_verbosity(start_server):
    """``python -m runtime.serve --access-log - -v 2`` with LOG_LEVEL=DEBUG: the access log (query
    strings cut), daphne's and Twisted's debug logs, the app's logs -- 0 secrets."""
    server = start_server("serve-verbose", serve=True, args=("--access-log", "-", "-v", "2"), LOG_LEVEL="DEBUG")
    secrets = _exercise_server(server, plain_http_token=True)
    server.stop()
    output = server.log()
    assert "WSCONNECT /ws/" in output and "POST /api/auth/token" in output, "the access log is not on"
    assert "GET /ws/ " in output.replace('"', " "), "the plain HTTP request was not logged"
    assert hits(output, secrets) == []


def test_no_secret_in_messenger_uvserve_output_at_full_verbosity(start_server):
    """``python -m runtime.uvserve -v 2`` with LOG_LEVEL=DEBUG: uvicorn's access log and its
    WebSocket lines (both print the query string upstream; cut here), the app's logs -- 0 secrets."""
    server = start_server("uvserve-verbose", serve="runtime.uvserve", args=("-v", "2"), LOG_LEVEL="DEBUG")
    secrets = _exercise_server(server, plain_http_token=True)
    server.stop()
    output = server.log()
    assert '"WebSocket /ws/" [accepted]' in output and '"POST /api/auth/token HTTP/1.1"' in output, (
        "the access log is not on"
    )
    assert '"GET /ws/ HTTP/1.1"' in output, "the plain HTTP request was not logged"
    assert hits(output, secrets) == []


def test_no_secret_in_plain_daphne_output(start_server):
    """``daphne --access-log - messenger.asgi:application`` (the run.sh form): 0 secrets for every
    client that uses the API as documented (headers for REST, any of the three socket forms)."""
    server = start_server("daphne-access-log", args=("--access-log", "-"))
    secrets = _exercise_server(server, plain_http_token=False)
    server.stop()
    output = server.log()
    assert "WSCONNECT /ws/" in output, "the access log is not on"
    assert hits(output, secrets) == []


def test_plain_daphne_access_log_would_print_a_query_token(start_server):
    """Why ``runtime.serve`` exists: plain daphne's access log prints an HTTP query string whole.

    Pins the daphne behaviour the docs warn about; if daphne stops doing it, this test fails
    and the warning (docs/RELIABILITY.md, Security) can go.
    """
    server = start_server("daphne-query", args=("--access-log", "-"))
    user = server.register(password=PASSWORD)
    token = server.login(user)["access"]
    assert server.http("GET", f"/api/users/me?token={token}")[0] == 401
    server.stop()
    assert token in server.log()
