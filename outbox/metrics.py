"""Prometheus metrics of the outbox, its relays and the worker (prometheus_client's default
registry, like ``ops.metrics``: the server's ``/metrics`` shows them for its inline relay,
``run_worker`` serves them on ``WORKER_METRICS_PORT``).

* ``messenger_worker_handler_seconds{type}`` -- one handler run (its transaction included), by
  event type, successful or not.
* ``messenger_worker_retries_total{type}`` -- deliveries of an event that failed and were
  scheduled again (inline: the row's next attempt; broker: the message into the delay queue).
* ``messenger_worker_dead_lettered_total{type}`` -- events parked as dead letters after
  ``OUTBOX_MAX_RETRIES`` retries (inline: the row; broker: the message in the ``.XQ`` queue).
* ``messenger_outbox_published_total`` / ``messenger_outbox_publish_failures_total`` -- outbox
  rows published to the broker with a confirm, and relay passes that could not publish (broker
  down: the rows stay and are published later).
* ``messenger_outbox_lag_seconds`` -- age of the oldest outbox row not yet delivered (dead
  letters excluded), sampled by each relay about once a second; 0 when the outbox is empty.
* ``messenger_worker_queue_backlog`` -- messages ready in the main RabbitMQ queue (a passive
  ``queue.declare``), sampled by each worker about once a second (NaN while the broker cannot
  be reached); broker transport only.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HANDLER_SECONDS = Histogram(
    "messenger_worker_handler_seconds",
    "One outbox handler run, its transaction included, by event type.",
    ["type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RETRIES = Counter("messenger_worker_retries_total", "Event deliveries that failed and were scheduled again.", ["type"])
DEAD_LETTERED = Counter(
    "messenger_worker_dead_lettered_total", "Events parked as dead letters after their last retry.", ["type"]
)
PUBLISHED = Counter("messenger_outbox_published_total", "Outbox rows published to the broker (confirmed).")
PUBLISH_FAILURES = Counter(
    "messenger_outbox_publish_failures_total", "Relay passes that could not publish to the broker (rows kept)."
)
OUTBOX_LAG = Gauge("messenger_outbox_lag_seconds", "Age of the oldest undelivered outbox row (0: empty).")
QUEUE_BACKLOG = Gauge("messenger_worker_queue_backlog", "Messages ready in the main RabbitMQ queue of the outbox.")
