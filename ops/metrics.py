"""Prometheus metrics: what we count, and the protected ``/metrics`` endpoint that exposes them.

Every metric lives in prometheus_client's default registry, which also carries the
``process_*`` (CPU, memory, open file descriptors) and ``python_*`` collectors. Each daphne
process is one Python process with its own registry, so each process answers ``/metrics`` with
its own numbers: scrape every replica (not the load balancer) and sum in PromQL.

Instrumentation points, so the numbers mean one thing:

* ``messenger_sockets_open`` -- authenticated sockets of this process (``ChatConsumer``).
* ``messenger_messages_stored_total`` / ``messenger_duplicate_sends_total`` -- ``send_message``
  outcomes (REST and socket alike); a duplicate is a repeated ``(sender, client_id)``.
* ``messenger_fanout_latency_seconds`` -- from the commit of the transaction that produced an
  event to the write of that event on a receiving socket (possibly in another process; wall
  clocks, so hosts must be NTP-synced).
* ``messenger_channel_layer_send_failures_total`` -- group sends that raised (events lost;
  clients catch up by ``seq``).
* ``messenger_layer_events_published_total`` / ``messenger_layer_envelopes_published_total`` --
  ``group_send_many`` calls that published, and the envelopes (PUBLISHes) they took: one per
  target process (runtime/layers.py). ``messenger_layer_envelopes_received_total`` /
  ``messenger_layer_envelopes_unrouted_total`` -- envelopes this process received, and those
  naming no group with a local socket (≈ 0 with per-process routing).
* ``messenger_rate_limited_total{limit}`` -- ``send``: the per-user send limit; ``chat_change``:
  the per-user limit on chat and member changes; ``group_create``: the daily cap on new groups;
  ``auth``: the throttles on login, refresh and registration (per address, and failed logins per
  account); ``connect``: socket handshakes over the per-user or per-address connect limit.
* ``messenger_feed_cache_total{cache,result}`` -- ``first_page`` (a user's first feed page) and
  ``channel_latest`` (a large channel's latest posts), ``hit`` or ``miss``; the hit ratio is
  hits / (hits + misses). ``messenger_feed_fanout_rows_total`` -- rows written to ``user_feed``.
* ``messenger_db_errors_total{source}`` / ``messenger_redis_errors_total{source}`` -- failures of
  the backing services seen by HTTP views, socket commands and the channel layer.
* ``messenger_http_requests_total`` / ``messenger_http_request_duration_seconds`` -- per route
  template (``api/chats/<pk>/messages``, never the raw path, so the label set stays small).
* ``messenger_outbox_*`` / ``messenger_worker_*`` -- the outbox, its relays and the worker; defined
  and described in ``outbox/metrics.py`` (same registry: a server's ``/metrics`` shows its inline
  relay's, ``run_worker`` serves its own on ``WORKER_METRICS_PORT``).
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from ops.client_ip import address_allowed

# No "<name>_created" timestamp series beside every counter and histogram: they double the
# output and Prometheus does not need them.
disable_created_metrics()

SOCKETS_OPEN = Gauge("messenger_sockets_open", "Authenticated WebSocket connections open in this process.")
MESSAGES_STORED = Counter("messenger_messages_stored_total", "Messages stored by send_message (duplicates excluded).")
DUPLICATE_SENDS = Counter(
    "messenger_duplicate_sends_total", "Sends refused as a repeat of an earlier (sender, client_id); nothing stored."
)
FANOUT_LATENCY = Histogram(
    "messenger_fanout_latency_seconds",
    "Time from the commit that produced an event to its write on a receiving socket.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SOCKET_FRAME_SECONDS = Histogram(
    "messenger_socket_frame_seconds",
    "Time from a client frame's arrival to the end of its handling (reply written), by frame type.",
    ["type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
EVENT_LOOP_LAG = Histogram(
    "messenger_event_loop_lag_seconds",
    "How late a 10 ms timer on the server's event loop fires: time every socket of the process waited.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
EVENT_LOOP_LAG_MAX = Gauge(
    "messenger_event_loop_lag_max_seconds", "The largest event-loop lag seen in the last 10 s window."
)
GC_PAUSE = Histogram(
    "messenger_gc_pause_seconds",
    "Cyclic garbage collections of the server process (each stops the event loop), by generation.",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
DB_GROUP_COMMIT_SIZE = Histogram(
    "messenger_db_group_commit_size",
    "Statements committed together by group commit (runtime/async_db.py, fetch_grouped).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
DB_STATEMENT_SECONDS = Histogram(
    "messenger_db_statement_seconds",
    "One statement of a plan on the async pool, from asking for a connection to its rows, by statement.",
    ["statement"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
CHANNEL_LAYER_SEND_FAILURES = Counter(
    "messenger_channel_layer_send_failures_total", "Channel-layer sends that failed (the events were dropped)."
)
LAYER_EVENTS_PUBLISHED = Counter(
    "messenger_layer_events_published_total",
    "Channel-layer sends (group_send_many) that published at least one envelope.",
)
LAYER_ENVELOPES_PUBLISHED = Counter(
    "messenger_layer_envelopes_published_total", "Channel-layer envelopes published (one PUBLISH per target process)."
)
LAYER_ENVELOPES_RECEIVED = Counter(
    "messenger_layer_envelopes_received_total", "Channel-layer envelopes this process received."
)
LAYER_ENVELOPES_UNROUTED = Counter(
    "messenger_layer_envelopes_unrouted_total", "Received channel-layer envelopes naming no group with a local socket."
)
RATE_LIMITED = Counter(
    "messenger_rate_limited_total",
    "Requests refused by a rate limit (send, chat_change, group_create: per user; auth: login/refresh/register; connect: socket handshakes).",
    ["limit"],
)
UPLOADS_STORED = Counter("messenger_uploads_stored_total", "Uploads accepted, by kind.", ["kind"])
BLOBS_REMOVED = Counter("messenger_blobs_removed_total", "Stored files removed after their last reference went.")
FEED_CACHE = Counter(
    "messenger_feed_cache_total",
    "Feed cache lookups: first feed pages and large channels' latest posts, by cache and result.",
    ["cache", "result"],
)
FEED_FANOUT_ROWS = Counter("messenger_feed_fanout_rows_total", "user_feed rows written by post fan-out.")
DB_ERRORS = Counter("messenger_db_errors_total", "Database errors answered as service_unavailable.", ["source"])
REDIS_ERRORS = Counter("messenger_redis_errors_total", "Redis errors (channel layer or cache).", ["source"])
HTTP_REQUESTS = Counter("messenger_http_requests_total", "HTTP requests answered.", ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "messenger_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

for _limit in ("send", "chat_change", "message_change", "group_create", "upload", "auth", "connect"):
    RATE_LIMITED.labels(limit=_limit)
for _kind in ("image", "video", "audio", "voice", "file"):
    UPLOADS_STORED.labels(kind=_kind)
for _source in ("http", "socket"):
    DB_ERRORS.labels(source=_source)
for _source in ("http", "socket", "channel_layer"):
    REDIS_ERRORS.labels(source=_source)
for _generation in ("0", "1", "2"):
    GC_PAUSE.labels(generation=_generation)
for _type in ("message.send", "message.read", "typing", "ping", "auth.refresh", "invalid"):
    SOCKET_FRAME_SECONDS.labels(type=_type)


def is_redis_error(exc: BaseException) -> bool:
    """True for redis-py's errors (connection refused, timeouts, ...), wherever they surface."""
    from redis.exceptions import RedisError

    return isinstance(exc, RedisError)


def count_backend_error(exc: BaseException, *, source: str) -> None:
    """One more Redis or database error (by the exception's type) seen by ``source``."""
    (REDIS_ERRORS if is_redis_error(exc) else DB_ERRORS).labels(source=source).inc()


def _client_allowed(request: HttpRequest) -> bool:
    """The client as ``ops.client_ip`` says: ``X-Forwarded-For`` counts only as written by a
    trusted proxy (``TRUSTED_PROXIES``), never as the client chose it."""
    return address_allowed(request, settings.METRICS_ALLOWED_IPS)


def _token_ok(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not expected or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), expected.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. Open with ``DEBUG``; else ``Bearer $METRICS_TOKEN`` or an allowed
    client address, and a 404 (not a 401/403 that would confirm the endpoint) for anyone else."""
    if not (settings.DEBUG or _token_ok(request) or _client_allowed(request)):
        # The body of every other 404 (ops.errors.json_404), so nothing tells them apart.
        return JsonResponse({"code": "not_found", "detail": "Not found."}, status=404)
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
