"""``/metrics``: our counters move where the events happen, and the endpoint is protected."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
import redis
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import OperationalError
from django.test import Client
from prometheus_client import REGISTRY

from chats import services
from tests.conftest import receive_until, ws_connect

db = database_sync_to_async


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def direct_chat(a, b):
    return services.open_direct_chat(user_id=a.id, other_user_id=b.id).chat


def post_message(api, user, chat_id: int, client_id: str, text: str = "hi"):
    return api(user).post(f"/api/chats/{chat_id}/messages", {"client_id": client_id, "text": text}, format="json")


# --- counters ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_stored_and_duplicate_counters_move_on_send_and_repeat(api, make_user, settings):
    """A new send counts one stored message; repeating its client_id counts one duplicate, no store."""
    settings.SEND_RATE_LIMIT = 0
    alice, bob = make_user(), make_user()
    chat = direct_chat(alice, bob)
    stored, duplicates = sample("messenger_messages_stored_total"), sample("messenger_duplicate_sends_total")

    assert post_message(api, alice, chat.id, "k-1").status_code == 201
    assert sample("messenger_messages_stored_total") == stored + 1
    assert sample("messenger_duplicate_sends_total") == duplicates

    assert post_message(api, alice, chat.id, "k-1").status_code == 200
    assert sample("messenger_messages_stored_total") == stored + 1
    assert sample("messenger_duplicate_sends_total") == duplicates + 1


@pytest.mark.django_db
def test_send_rate_limit_hit_is_counted(api, make_user, settings):
    """A send refused by the per-user limit counts under limit="send"."""
    settings.SEND_RATE_LIMIT = 1
    settings.SEND_RATE_WINDOW_SECONDS = 3600
    alice, bob = make_user(), make_user()
    chat = direct_chat(alice, bob)
    before = sample("messenger_rate_limited_total", limit="send")

    assert post_message(api, alice, chat.id, "a").status_code == 201
    assert post_message(api, alice, chat.id, "b").status_code == 429
    assert sample("messenger_rate_limited_total", limit="send") == before + 1


@pytest.mark.django_db
def test_rate_limited_retry_of_a_stored_message_counts_as_duplicate(api, make_user, settings):
    """Over the limit, a retry of a stored message is answered with the original: a duplicate,
    not a refusal."""
    settings.SEND_RATE_LIMIT = 1
    # A window of its own: rate-limit keys are per user id and bucket, and ids repeat across tests.
    settings.SEND_RATE_WINDOW_SECONDS = 3700
    alice, bob = make_user(), make_user()
    chat = direct_chat(alice, bob)
    assert post_message(api, alice, chat.id, "once").status_code == 201
    limited, duplicates = (
        sample("messenger_rate_limited_total", limit="send"),
        sample("messenger_duplicate_sends_total"),
    )

    assert post_message(api, alice, chat.id, "once").status_code == 200
    assert sample("messenger_rate_limited_total", limit="send") == limited
    assert sample("messenger_duplicate_sends_total") == duplicates + 1


@pytest.mark.django_db
def test_auth_throttle_hit_is_counted(make_user, settings):
    """A login refused by the DRF throttle counts under limit="auth"."""
    settings.AUTH_THROTTLE_RATE = "1/min"
    user = make_user()
    client = Client(REMOTE_ADDR=f"10.9.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}")
    before = sample("messenger_rate_limited_total", limit="auth")
    body = {"username": user.username, "password": "wrong-password-1"}

    assert client.post("/api/auth/token", body, content_type="application/json").status_code == 401
    assert client.post("/api/auth/token", body, content_type="application/json").status_code == 429
    assert sample("messenger_rate_limited_total", limit="auth") == before + 1


@pytest.mark.django_db
def test_database_error_on_rest_is_counted(api, make_user, monkeypatch):
    """A database outage seen by a REST view answers 503 and counts under source="http"."""
    alice, bob = make_user(), make_user()
    chat = direct_chat(alice, bob)

    def down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(services, "send_message", down)
    before = sample("messenger_db_errors_total", source="http")
    response = post_message(api, alice, chat.id, "x")
    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
    assert sample("messenger_db_errors_total", source="http") == before + 1


@pytest.mark.django_db
def test_channel_layer_failure_is_counted_as_send_failure_and_redis_error(
    api, make_user, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """A group send that raises a Redis error loses the wake-up (the message is stored) and counts
    one channel-layer send failure and one Redis error."""
    settings.SEND_RATE_LIMIT = 0
    alice, bob = make_user(), make_user()
    chat = direct_chat(alice, bob)
    layer = get_channel_layer()

    async def broken(*args, **kwargs):
        raise redis.exceptions.ConnectionError("redis is down")

    monkeypatch.setattr(layer, "group_send", broken)
    if hasattr(layer, "group_send_many"):
        monkeypatch.setattr(layer, "group_send_many", broken)
    failures = sample("messenger_channel_layer_send_failures_total")
    redis_errors = sample("messenger_redis_errors_total", source="channel_layer")

    with django_capture_on_commit_callbacks(execute=True):
        assert post_message(api, alice, chat.id, "lost-wakeup").status_code == 201
    assert sample("messenger_channel_layer_send_failures_total") == failures + 1
    assert sample("messenger_redis_errors_total", source="channel_layer") == redis_errors + 1


# --- sockets -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_open_socket_gauge_goes_up_and_down(make_user):
    """Each authenticated socket adds one to messenger_sockets_open while it is open."""
    user = await db(make_user)()
    before = sample("messenger_sockets_open")
    first = await ws_connect(user)
    second = await ws_connect(user)
    assert sample("messenger_sockets_open") == before + 2
    await first.disconnect()
    assert sample("messenger_sockets_open") == before + 1
    await second.disconnect()
    assert sample("messenger_sockets_open") == before


@pytest.mark.django_db(transaction=True)
async def test_rejected_socket_is_not_counted(make_user):
    """A socket without a valid token is closed at once and never counted as open."""
    from channels.testing import WebsocketCommunicator

    from messenger.asgi import application

    before = sample("messenger_sockets_open")
    communicator = WebsocketCommunicator(application, "/ws/?token=not-a-token")
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
    assert sample("messenger_sockets_open") == before
    await communicator.disconnect()
    assert sample("messenger_sockets_open") == before


@pytest.mark.django_db(transaction=True)
async def test_fanout_histogram_observes_each_delivered_event(make_user, settings):
    """A message sent on one socket and written to the recipient's socket is one observation;
    the client frame carries no timing field."""
    settings.SEND_RATE_LIMIT = 0
    alice, bob = await db(make_user)(), await db(make_user)()
    chat = await db(direct_chat)(alice, bob)
    sender, receiver = await ws_connect(alice), await ws_connect(bob)
    try:
        before = sample("messenger_fanout_latency_seconds_count")
        await sender.send_json_to(
            {"type": "message.send", "chat_id": chat.id, "client_id": "f-1", "text": "hi", "ref": "1"}
        )
        await receive_until(sender, "message.ack")
        frame, _ = await receive_until(receiver, "message.new")
        assert "committed_at" not in frame and "committed_at" not in frame["message"]
        for _ in range(100):  # the observation follows the write on the consumer's task
            if sample("messenger_fanout_latency_seconds_count") > before:
                break
            await asyncio.sleep(0.01)
        assert sample("messenger_fanout_latency_seconds_count") == before + 1
        assert sample("messenger_fanout_latency_seconds_sum") >= 0
    finally:
        await sender.disconnect()
        await receiver.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_database_error_on_socket_is_counted(make_user, monkeypatch):
    """A database outage during a socket command answers an error frame and counts under source="socket"."""
    user = await db(make_user)()

    def down(**kwargs):
        raise OperationalError("connection refused")

    async def pg_down(*args):
        raise psycopg.OperationalError("connection refused")

    # Reads run on the async pool (the error comes out as Django's).
    monkeypatch.setattr("chats.services.messages.mark_read", down)
    before = sample("messenger_db_errors_total", source="socket")
    communicator = await ws_connect(user)  # the handshake's own query runs on the pool too
    monkeypatch.setattr("runtime.async_db.Pool._execute", staticmethod(pg_down))
    try:
        await communicator.send_json_to({"type": "message.read", "chat_id": 1, "up_to_seq": 1, "ref": "r"})
        frame = await communicator.receive_json_from(timeout=5)
        assert frame["type"] == "error" and frame["code"] == "service_unavailable"
        assert sample("messenger_db_errors_total", source="socket") == before + 1
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_socket_frames_are_timed_by_type(make_user):
    """Every handled frame lands in messenger_socket_frame_seconds under its type; frames that are
    not a known type (bad JSON, unknown types) under "invalid", so the label set stays bounded."""
    user = await db(make_user)()

    def count(kind):
        return sample("messenger_socket_frame_seconds_count", type=kind)

    before = {kind: count(kind) for kind in ("ping", "invalid")}
    communicator = await ws_connect(user)
    try:
        await communicator.send_json_to({"type": "ping", "ref": "p"})
        assert (await communicator.receive_json_from(timeout=5))["type"] == "pong"
        await communicator.send_to(text_data="not json")
        assert (await communicator.receive_json_from(timeout=5))["code"] == "invalid_json"
        await communicator.send_json_to({"type": "no.such.type"})
        assert (await communicator.receive_json_from(timeout=5))["code"] == "unknown_type"
        await communicator.send_json_to({"type": "ping", "ref": "barrier"})
        await communicator.receive_json_from(timeout=5)
    finally:
        await communicator.disconnect()
    # Frames are handled in order: once the barrier's pong arrived, the frames before it were counted.
    assert before["ping"] + 1 <= count("ping") <= before["ping"] + 2
    assert count("invalid") == before["invalid"] + 2
    assert sample("messenger_socket_frame_seconds_count", type="no.such.type") == 0


# --- the endpoint ------------------------------------------------------------------------------

METRIC_NAMES = [
    "messenger_sockets_open",
    "messenger_messages_stored_total",
    "messenger_duplicate_sends_total",
    "messenger_fanout_latency_seconds",
    "messenger_socket_frame_seconds",
    "messenger_channel_layer_send_failures_total",
    "messenger_rate_limited_total",
    "messenger_db_errors_total",
    "messenger_redis_errors_total",
    "messenger_http_requests_total",
    "messenger_http_request_duration_seconds",
]


@pytest.mark.django_db
def test_metrics_exposes_every_metric_in_prometheus_text_format(settings):
    settings.DEBUG = True
    response = Client(REMOTE_ADDR="203.0.113.7").get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    body = response.content.decode()
    for name in METRIC_NAMES:
        assert f"# TYPE {name} " in body, name
    assert "process_resident_memory_bytes" in body


@pytest.mark.django_db
def test_http_requests_are_counted_by_route_not_raw_path(api, make_user):
    """The route label is the view name: ids in paths never multiply the series."""
    user = make_user()
    before = sample("messenger_http_requests_total", method="GET", route="chat-detail", status="404")
    api(user).get("/api/chats/987654321")
    api(user).get("/api/chats/987654322")
    assert sample("messenger_http_requests_total", method="GET", route="chat-detail", status="404") == before + 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("remote_addr", "headers", "allowed_ips", "expected"),
    [
        ("203.0.113.7", {}, ["127.0.0.1", "::1"], 404),
        ("127.0.0.1", {}, ["127.0.0.1", "::1"], 200),
        ("::1", {}, ["127.0.0.1", "::1"], 200),
        ("10.1.2.3", {}, ["10.0.0.0/8"], 200),
        ("203.0.113.7", {"HTTP_AUTHORIZATION": "Bearer s3cret-metrics-token"}, ["127.0.0.1"], 200),
        ("203.0.113.7", {"HTTP_AUTHORIZATION": "Bearer wrong-token"}, ["127.0.0.1"], 404),
        ("203.0.113.7", {"HTTP_AUTHORIZATION": "s3cret-metrics-token"}, ["127.0.0.1"], 404),
        # X-Forwarded-For is chosen by the client: it never grants access.
        ("203.0.113.7", {"HTTP_X_FORWARDED_FOR": "127.0.0.1"}, ["127.0.0.1"], 404),
    ],
    ids=["stranger", "loopback-v4", "loopback-v6", "cidr", "token", "wrong-token", "no-bearer", "spoofed-xff"],
)
def test_metrics_protection_in_production(settings, remote_addr, headers, allowed_ips, expected):
    """Without DEBUG: the token or an allowed client address, else a plain 404."""
    settings.DEBUG = False
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    settings.METRICS_ALLOWED_IPS = allowed_ips
    response = Client(REMOTE_ADDR=remote_addr).get("/metrics", **headers)
    assert response.status_code == expected
    if expected == 404:
        assert response.json() == {"code": "not_found", "detail": "Not found."}
    else:
        assert b"messenger_messages_stored_total" in response.content


@pytest.mark.django_db
def test_metrics_without_a_configured_token_refuses_any_bearer(settings):
    """An unset METRICS_TOKEN never matches, not even an empty bearer."""
    settings.DEBUG = False
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    assert Client(REMOTE_ADDR="203.0.113.7").get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.django_db
def test_metrics_open_in_debug(settings):
    settings.DEBUG = True
    settings.METRICS_TOKEN = ""
    assert Client(REMOTE_ADDR="203.0.113.7").get("/metrics").status_code == 200
