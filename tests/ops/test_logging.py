"""Structured logs: one line per HTTP request and per socket open/close, JSON in production."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.test import Client

import messenger.asgi  # noqa: F401 - its django.setup() reconfigures logging: before caplog attaches, not during a test
from ops.logs import build_formatter, request_id_from
from tests.conftest import access_token, ws_connect

ROOT = Path(__file__).resolve().parents[2]
db = database_sync_to_async


def lines(caplog, event: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage() == event]


# --- HTTP requests ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_one_line_per_request_with_its_fields(caplog, api, make_user):
    """Method, path without the query string, status, duration, user id, chat id and request id;
    the request id also goes back in the X-Request-ID header."""
    caplog.set_level(logging.INFO, logger="messenger.request")
    user = make_user()
    response = api(user).get("/api/chats/424242?token=should-not-appear&x=1")
    assert response.status_code == 404

    [record] = lines(caplog, "http.request")
    assert record.method == "GET"
    assert record.path == "/api/chats/424242"
    assert record.status == 404
    assert record.user_id == user.id
    assert record.chat_id == 424242
    assert isinstance(record.duration_ms, float) and record.duration_ms >= 0
    assert record.request_id == response["X-Request-ID"]
    assert len(record.request_id) == 32
    assert "should-not-appear" not in caplog.text


@pytest.mark.django_db
def test_anonymous_request_logs_no_user(caplog):
    caplog.set_level(logging.INFO, logger="messenger.request")
    Client().post("/api/auth/token", {"username": "nobody", "password": "x"}, content_type="application/json")
    [record] = lines(caplog, "http.request")
    assert record.user_id is None and record.status == 401 and record.path == "/api/auth/token"


@pytest.mark.django_db
def test_a_sane_incoming_request_id_is_kept(caplog):
    caplog.set_level(logging.INFO, logger="messenger.request")
    response = Client().get("/api/users/me", HTTP_X_REQUEST_ID="edge-7f3a.42")
    assert response["X-Request-ID"] == "edge-7f3a.42"
    assert lines(caplog, "http.request")[0].request_id == "edge-7f3a.42"


@pytest.mark.parametrize("incoming", ["", "has space", "x" * 200, 'quote"d', "line\nbreak", "-leading-dash"])
def test_an_insane_request_id_is_replaced(incoming):
    replaced = request_id_from(incoming)
    assert replaced != incoming and len(replaced) == 32 and replaced.isalnum()


@pytest.mark.django_db
def test_records_logged_during_a_request_carry_its_id(caplog, api, make_user, monkeypatch):
    """A warning written inside a request (here: the database is down) carries that request's id,
    stamped by the handler's RequestIdFilter; records outside a request get none."""
    from django.db import OperationalError

    from chats import services
    from ops.logs import RequestIdFilter

    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RequestIdFilter())

    def down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(services, "mark_read", down)
    response = api(make_user()).post("/api/chats/1/read", {"up_to_seq": 1}, format="json")
    assert response.status_code == 503
    [warning] = [r for r in caplog.records if r.name == "ops.errors"]
    assert warning.request_id == response["X-Request-ID"]
    logging.getLogger("messenger.test").warning("outside")
    assert not hasattr(caplog.records[-1], "request_id")


@pytest.mark.django_db
def test_probes_log_at_debug_only(caplog):
    caplog.set_level(logging.INFO, logger="messenger.request")
    Client().get("/healthz")
    assert lines(caplog, "http.request") == []


# --- sockets ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_one_line_per_socket_open_and_close(caplog, make_user):
    """socket.open and socket.close with user id and request id; the close adds code and duration."""
    caplog.set_level(logging.INFO, logger="chats.consumers")
    user = await db(make_user)()
    token = access_token(user)
    communicator = await ws_connect(user, headers=[(b"x-request-id", b"nginx-abc123")])
    await communicator.disconnect(code=4000)

    [opened] = lines(caplog, "socket.open")
    [closed] = lines(caplog, "socket.close")
    assert opened.user_id == closed.user_id == user.id
    assert opened.request_id == closed.request_id == "nginx-abc123"
    assert closed.code == 4000
    assert isinstance(closed.duration_ms, float) and closed.duration_ms >= 0
    assert token not in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_rejected_socket_logs_a_rejection_and_no_close(caplog):
    from channels.testing import WebsocketCommunicator

    from messenger.asgi import application

    caplog.set_level(logging.INFO, logger="chats.consumers")
    communicator = WebsocketCommunicator(application, "/ws/?token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl")
    await communicator.connect(timeout=5)
    await communicator.receive_output(timeout=5)
    await communicator.disconnect()
    assert len(lines(caplog, "socket.rejected")) == 1
    assert lines(caplog, "socket.close") == []
    assert "c2lnbmF0dXJl" not in caplog.text


# --- rendering -------------------------------------------------------------------------------------


def _record(msg="http.request", args=(), exc_info=None, **extra) -> logging.LogRecord:
    record = logging.LogRecord("messenger.request", logging.INFO, __file__, 1, msg, args, exc_info)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_renders_one_object_per_line_with_the_extra_fields():
    line = build_formatter("json").format(
        _record(method="GET", path="/api/chats", status=200, duration_ms=1.5, user_id=7)
    )
    assert "\n" not in line
    payload = json.loads(line)
    assert list(payload)[:4] == ["timestamp", "level", "logger", "event"]
    assert payload["event"] == "http.request" and payload["level"] == "info"
    assert payload["logger"] == "messenger.request"
    assert payload["timestamp"].endswith("Z")
    assert (payload["method"], payload["path"], payload["status"], payload["duration_ms"], payload["user_id"]) == (
        "GET",
        "/api/chats",
        200,
        1.5,
        7,
    )


def test_json_drops_object_extras_and_redacts_tokens_and_tracebacks():
    """Django attaches the request object (its repr holds the query string): objects are dropped;
    a JWT anywhere, even in a traceback, is redacted; the traceback stays on the one line."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNlY3JldA"

    class Request:
        def __repr__(self):
            return f"<ASGIRequest: GET '/api/users/me?token={jwt}'>"

    try:
        raise ValueError(f"bad token {jwt}")
    except ValueError:
        exc_info = sys.exc_info()
    line = build_formatter("json").format(
        _record("Unauthorized: %s", ("/api/users/me",), exc_info, request=Request(), status_code=401)
    )
    payload = json.loads(line)
    assert "request" not in payload and payload["status_code"] == 401
    assert "ValueError" in payload["exception"]
    assert "c2lnbmF0dXJlLXNlY3JldA" not in line


def test_console_renders_a_readable_line():
    line = build_formatter("console").format(_record(method="GET", path="/api/chats", status=200))
    assert not line.startswith("{")
    assert "http.request" in line and "status=200" in line and "path=/api/chats" in line


def _settings_in_subprocess(env: dict[str, str], code: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "LOG_FORMAT", "REDIS_URL")}
    base.update(DJANGO_SETTINGS_MODULE="messenger.settings", **env)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + code],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "x" * 60,
    "ALLOWED_HOSTS": "example.com",
    "DATABASE_URL": "postgres://user:pass@127.0.0.1:1/none",
}


def test_production_logs_json_lines_and_development_readable_lines():
    code = "import logging; logging.getLogger('messenger.test').warning('hello', extra={'user_id': 5})"
    production = _settings_in_subprocess(PRODUCTION, code).stderr.strip().splitlines()
    assert json.loads(production[-1])["user_id"] == 5
    development = _settings_in_subprocess({}, code).stderr.strip().splitlines()
    assert "hello" in development[-1] and "user_id=5" in development[-1]
    assert not development[-1].startswith("{")
    forced = _settings_in_subprocess({"LOG_FORMAT": "json"}, code).stderr.strip().splitlines()
    assert json.loads(forced[-1])["event"] == "hello"
