"""Shared fixtures. Every test runs on PostgreSQL and Redis: a missing one is an error, never a skip.

./test.sh provides both (the servers DATABASE_URL/REDIS_URL name, else embedded ones from
scripts/devservices.py); settings refuse to load without DATABASE_URL.
"""

from __future__ import annotations

import copy
import itertools
import os
import uuid

import pytest
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.db import connections
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from runtime import async_db

PASSWORD = "Correct-Horse-42"
# Channel-layer and cache prefix of this test run, so parallel runs on one Redis never cross-talk.
# Subprocesses (e.g. a second daphne) must get it as CHANNEL_PREFIX / CACHE_PREFIX.
RUN_PREFIX = f"test-{uuid.uuid4().hex[:10]}"

# Fixtures shared by several test packages (a real S3-compatible server, a real OpenID Connect provider).
pytest_plugins = ["tests.s3", "tests.oidc"]
_counter = itertools.count(1)


def pytest_configure(config):
    """Fail the run at once, with one readable line, when PostgreSQL or Redis is missing."""
    import psycopg
    import redis

    problems = []
    db = django_settings.DATABASES["default"]
    try:
        psycopg.connect(
            host=db.get("HOST") or None, port=db.get("PORT") or None, user=db.get("USER") or None,
            password=db.get("PASSWORD") or None, dbname="postgres", connect_timeout=5,
        ).close()  # fmt: skip
    except psycopg.Error as exc:
        problems.append(f"PostgreSQL (DATABASE_URL) is unreachable: {str(exc).strip()}")
    if not os.environ.get("REDIS_URL"):
        problems.append("REDIS_URL is not set")
    else:
        try:
            redis.Redis.from_url(os.environ["REDIS_URL"], socket_connect_timeout=3).ping()
        except Exception as exc:
            problems.append(f"Redis (REDIS_URL) is unreachable: {exc}")
    if problems:
        raise pytest.UsageError(
            "the tests need PostgreSQL and Redis (./test.sh starts embedded ones when DATABASE_URL/REDIS_URL "
            "are unset): " + "; ".join(problems)
        )


@pytest.fixture(scope="session", autouse=True)
def _remove_this_runs_redis_keys():
    """After the last test (and every server process the tests started), delete the keys this run
    left in the shared Redis: everything under RUN_PREFIX (cache entries such as rate-limit
    windows and logged-out sessions, channel-layer keys, the prefixes tests derive from it)."""
    yield
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        batch = []
        for key in client.scan_iter(match=f"{RUN_PREFIX}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


@pytest.fixture(scope="session", autouse=True)
def _release_test_database(django_db_setup, django_db_blocker):
    """After the last test, drop connections other threads still hold, so the test database can go."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(autouse=True)
def _fast_and_isolated(settings):
    """Cheap password hashing; a fresh channel layer per test (no state across event loops)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Request threads keep persistent connections in production; in tests they close after every
    # request, so no thread holds the test database open at teardown.
    connections.settings["default"]["CONN_MAX_AGE"] = 0
    settings.AUTH_THROTTLE_RATE = "100000/min"  # tests that check throttling set their own rate
    settings.SOCKET_CONNECTS_PER_USER = 0  # likewise the socket connect limits
    settings.SOCKET_CONNECTS_PER_ADDRESS = 0
    settings.CHAT_CHANGE_RATE_LIMIT = 0  # likewise the chat-change limits (tests/security/test_action_floods.py)
    settings.GROUP_CREATE_DAILY_LIMIT = 0
    # No inline outbox relay in the test process when a test calls the ASGI application: the
    # outbox tests run relays and workers they start themselves (tests/outbox).
    settings.OUTBOX_SERVER_RELAY = False
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    if "CONFIG" in layers["default"]:
        layers["default"]["CONFIG"]["prefix"] = RUN_PREFIX
    settings.CHANNEL_LAYERS = layers
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["KEY_PREFIX"] = RUN_PREFIX
    settings.CACHES = caches
    channel_layers.backends = {}
    yield
    channel_layers.backends = {}
    async_db.close_all()  # the async hot-path connections of this test's event loop


@pytest.fixture
def make_user(django_user_model):
    def _make(username: str | None = None, *, password: str = PASSWORD, **extra):
        n = next(_counter)
        username = username or f"user{n}_{uuid.uuid4().hex[:6]}"
        email = extra.pop("email", f"{username.lower()}@example.com")
        return django_user_model.objects.create_user(username=username, email=email, password=password, **extra)

    return _make


def access_token(user) -> str:
    return str(AccessToken.for_user(user))


def refresh_token(user) -> str:
    return str(RefreshToken.for_user(user))


@pytest.fixture
def api():
    """``api(user)`` -> an APIClient sending that user's real JWT; ``api()`` -> anonymous."""

    def _client(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(user)}")
        return client

    return _client


async def ws_connect(
    user=None, *, token: str | None = None, headers=None, path: str | None = None, expect_ready: bool = True
):
    """Open ``/ws/`` through the real ASGI stack (origin check + JWT + router)."""
    from messenger.asgi import application

    if token is None and user is not None:
        token = access_token(user)
    path = path or (f"/ws/?token={token}" if token else "/ws/")
    communicator = WebsocketCommunicator(application, path, headers=headers or [])
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    if expect_ready:
        ready = await communicator.receive_json_from(timeout=5)
        assert ready["type"] == "session.ready", ready
        assert ready["user"]["id"] == user.id
    return communicator


async def receive_until(communicator, type_: str, timeout: float = 5):
    """Frames up to and including the first of ``type_``; fails on timeout."""
    seen = []
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        seen.append(frame)
        if frame.get("type") == type_:
            return frame, seen
