"""Relays: threads that take live outbox rows (``FOR UPDATE SKIP LOCKED``, so any number of them
in any number of processes share the table without taking a row twice) and deliver them.

* ``InlineRelay`` (no broker): runs the handlers itself. One transaction per batch holds the
  claimed rows; each handler runs in a savepoint with its ProcessedEvent row, and a delivered row
  is deleted in that same transaction, so a crash anywhere undoes the whole batch (effects, marks,
  deletions) and another relay takes the rows again. A failing row gets ``attempts + 1`` and an
  exponentially later ``next_attempt_at``, or after OUTBOX_MAX_RETRIES retries ``dead_at``.
* ``BrokerRelay``: publishes each row (publisher confirms) and deletes the published ones. A
  crash between a confirm and the commit publishes those rows again; the ProcessedEvent table
  makes the second delivery a no-op. The broker down: nothing is deleted, the passes back off.

Both wait for a NOTIFY from ``outbox.record``'s transactions (LISTEN on their own psycopg
connection), polling every OUTBOX_POLL_MS anyway; they sample the outbox lag.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections, transaction

from outbox.metrics import DEAD_LETTERED, OUTBOX_LAG, PUBLISH_FAILURES, PUBLISHED, RETRIES
from outbox.recording import NOTIFY_CHANNEL
from outbox.registry import Event
from outbox.runner import HandlerFailed, deliver

logger = logging.getLogger(__name__)

_CLAIM = """
SELECT id, type, payload, key, created_at, attempts FROM outbox_outboxevent
WHERE dead_at IS NULL AND next_attempt_at <= clock_timestamp()
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""
_DELETE = "DELETE FROM outbox_outboxevent WHERE id = ANY(%s)"
_RETRY = """
UPDATE outbox_outboxevent SET attempts = %s, next_attempt_at = clock_timestamp() + make_interval(secs => %s),
    last_error = %s, failed_handlers = %s::jsonb
WHERE id = %s
"""
_BURY = """
UPDATE outbox_outboxevent SET attempts = %s, dead_at = clock_timestamp(), last_error = %s, failed_handlers = %s::jsonb
WHERE id = %s
"""
_OLDEST = "SELECT extract(epoch FROM clock_timestamp() - created_at) FROM outbox_outboxevent WHERE dead_at IS NULL ORDER BY id LIMIT 1"
# Kept longer than a dead letter can wait for its replay (the broker's .XQ keeps messages 7 days),
# so a replayed event never runs a handler again that had succeeded; dead inline rows are kept.
_PRUNE = """
DELETE FROM outbox_processedevent WHERE id IN (
    SELECT id FROM outbox_processedevent p
    WHERE p.processed_at < clock_timestamp() - make_interval(days => %s)
      AND NOT EXISTS (SELECT 1 FROM outbox_outboxevent o WHERE o.id = p.event_id)
    LIMIT 10000
)
"""
LAG_SAMPLE_SECONDS = 1.0
PRUNE_EVERY_SECONDS = 3600.0
MAX_ERROR_PAUSE_SECONDS = 5.0


def backoff_seconds(retry: int) -> float:
    """Delay before retry number ``retry`` (1, 2, ...): OUTBOX_MIN_BACKOFF_MS doubled per retry,
    at most OUTBOX_MAX_BACKOFF_MS, stretched by up to 25% of jitter so retries of many rows
    that failed together spread out."""
    base = settings.OUTBOX_MIN_BACKOFF_MS * 2 ** min(retry - 1, 32)
    return min(settings.OUTBOX_MAX_BACKOFF_MS, base * random.uniform(1.0, 1.25)) / 1000


def _event(row) -> Event:
    row_id, event_type, payload, key, created_at, _attempts = row
    if isinstance(payload, str | bytes):
        payload = json.loads(payload)
    return Event(id=row_id, type=event_type, payload=payload, key=key, created_at=created_at)


def listener_params() -> dict:
    """psycopg connection parameters of the default database, read when connecting (the test
    runner renames the database after settings load)."""
    params = connections.create_connection(DEFAULT_DB_ALIAS).get_connection_params()
    for name in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
        params.pop(name, None)
    return params


class Relay(threading.Thread):
    """The loop both relays share: a pass, then wait for a NOTIFY, the poll interval or the
    earliest retry this relay scheduled; pause with backoff after an error; stop between rows."""

    def __init__(self, *, name: str, stopping: threading.Event | None = None):
        super().__init__(name=name, daemon=True)
        self.stopping = stopping or threading.Event()
        self._listener: psycopg.Connection | None = None
        self._next_due: float | None = None  # monotonic time of the earliest retry we scheduled
        self._lag_sampled = 0.0
        self._pruned = time.monotonic()  # the first prune an hour after start, then hourly

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        pause = 0.0
        try:
            while not self.stopping.is_set():
                close_old_connections()
                try:
                    claimed = self.pass_once()
                    pause = 0.0
                except Exception:
                    logger.exception("outbox relay %s: pass failed", self.name)
                    connections[DEFAULT_DB_ALIAS].close()
                    claimed = None
                try:
                    self._housekeeping()  # the lag matters most while passes fail (broker down)
                except Exception:
                    logger.warning("outbox relay %s: lag sample or prune failed", self.name, exc_info=True)
                if claimed is None:
                    pause = min(MAX_ERROR_PAUSE_SECONDS, max(0.25, pause * 2))
                    self.stopping.wait(pause)
                    continue
                if claimed >= settings.OUTBOX_BATCH_SIZE:
                    continue  # more are waiting
                self._wait()
        finally:
            if self._listener is not None:
                self._listener.close()
            connections[DEFAULT_DB_ALIAS].close()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the row in hand, commit what is done, and return when the thread has ended."""
        self.stopping.set()
        if self.is_alive():
            self.join(timeout)

    def _wait(self) -> None:
        timeout = settings.OUTBOX_POLL_MS / 1000
        if self._next_due is not None:
            remaining = self._next_due - time.monotonic()
            if remaining <= timeout:
                self._next_due = None  # the pass after this wait takes that row
                timeout = max(0.0, remaining)
        if timeout <= 0:
            return
        try:
            if self._listener is None:
                self._listener = psycopg.connect(autocommit=True, connect_timeout=5, **listener_params())
                self._listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
                return  # a NOTIFY may have gone by while not listening: one more pass first
            for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                break
        except psycopg.Error:
            logger.warning("outbox relay %s: LISTEN connection lost; polling", self.name, exc_info=True)
            if self._listener is not None:
                self._listener.close()
            self._listener = None
            self.stopping.wait(timeout)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._lag_sampled >= LAG_SAMPLE_SECONDS:
            self._lag_sampled = now
            with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
                cursor.execute(_OLDEST)
                row = cursor.fetchone()
            OUTBOX_LAG.set(float(row[0]) if row else 0.0)
        if now - self._pruned >= PRUNE_EVERY_SECONDS:
            self._pruned = now
            with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
                cursor.execute(_PRUNE, [settings.OUTBOX_PROCESSED_RETENTION_DAYS])

    def _schedule(self, at_monotonic: float) -> None:
        if self._next_due is None or at_monotonic < self._next_due:
            self._next_due = at_monotonic

    def pass_once(self) -> int:
        """Claim up to OUTBOX_BATCH_SIZE due rows and deliver them; the number claimed."""
        raise NotImplementedError


class InlineRelay(Relay):
    """Runs the handlers of each claimed row itself (the transport without a broker)."""

    def pass_once(self) -> int:
        connection = connections[DEFAULT_DB_ALIAS]
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(_CLAIM, [settings.OUTBOX_BATCH_SIZE])
                rows = cursor.fetchall()
            delivered: list[int] = []
            for row in rows:
                if self.stopping.is_set():
                    break  # the rest stay claimed only until this commit
                event = _event(row)
                try:
                    deliver(event)
                except HandlerFailed as failure:
                    self._failed(connection, event, attempts=row[5] + 1, failure=failure)
                else:
                    delivered.append(event.id)
            if delivered:
                with connection.cursor() as cursor:
                    cursor.execute(_DELETE, [delivered])
        return len(rows)

    def _failed(self, connection, event: Event, *, attempts: int, failure: HandlerFailed) -> None:
        handlers = json.dumps(failure.handlers)
        with connection.cursor() as cursor:
            if attempts > settings.OUTBOX_MAX_RETRIES:
                cursor.execute(_BURY, [attempts, failure.report, handlers, event.id])
                DEAD_LETTERED.labels(type=event.type).inc()
                logger.error("outbox event #%s (%s) is dead after %s attempts", event.id, event.type, attempts)
                return
            delay = backoff_seconds(attempts)
            cursor.execute(_RETRY, [attempts, delay, failure.report, handlers, event.id])
        RETRIES.labels(type=event.type).inc()
        self._schedule(time.monotonic() + delay)


class BrokerRelay(Relay):
    """Publishes each claimed row to the broker, then deletes the published ones."""

    def __init__(self, *, publish, **kwargs):
        super().__init__(**kwargs)
        self.publish = publish

    def pass_once(self) -> int:
        connection = connections[DEFAULT_DB_ALIAS]
        error: BaseException | None = None
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(_CLAIM, [settings.OUTBOX_BATCH_SIZE])
                rows = cursor.fetchall()
            published: list[int] = []
            for row in rows:
                event = _event(row)
                try:
                    self.publish(event)
                except Exception as exc:  # noqa: BLE001 (pika, dramatiq: any failure keeps the rest)
                    error = exc
                    break
                published.append(event.id)
            if published:
                with connection.cursor() as cursor:
                    cursor.execute(_DELETE, [published])
        PUBLISHED.inc(len(published))
        if error is not None:
            PUBLISH_FAILURES.inc()
            raise PublishFailed(f"published {len(published)} of {len(rows)} rows: {error}") from error
        return len(rows)


class PublishFailed(Exception):
    """The broker did not confirm a publish; the unpublished rows stay in the outbox."""
