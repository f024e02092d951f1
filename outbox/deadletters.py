"""Dead letters of both transports: list, replay, purge (``manage.py dlq``).

Inline: outbox rows with ``dead_at`` set. Broker: messages in the ``.XQ`` queue, read with
``basic_get`` without acknowledging (closing the channel puts back whatever was not taken).
A replay puts the event back with its retries reset: the row is live again, or the message is
published to the main queue (confirmed) before its dead copy is acknowledged. Handlers that had
succeeded for the event do not run again (ProcessedEvent); only the failed ones do.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction

# Options a replayed message must not carry over from its failed life.
_RESET_OPTIONS = (
    "retries",
    "traceback",
    "requeue_timestamp",
    "eta",
    "outbox_error",
    "outbox_handlers",
    "outbox_dead_at",
)


@dataclass(frozen=True)
class DeadLetter:
    source: str  # "outbox" (inline) or "broker"
    event_id: int
    type: str
    handlers: list[str]
    attempts: int
    error: str
    dead_at: datetime | None
    key: str | None = None


def _wanted(event_id: int, ids: set[int] | None) -> bool:
    return ids is None or event_id in ids


# --- inline: dead outbox rows ------------------------------------------------------------------


def _dead_rows() -> list[DeadLetter]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, type, failed_handlers, attempts, last_error, dead_at, key FROM outbox_outboxevent "
            "WHERE dead_at IS NOT NULL ORDER BY id"
        )
        rows = cursor.fetchall()
    return [
        DeadLetter("outbox", r[0], r[1], json.loads(r[2]) if isinstance(r[2], str) else r[2], r[3], r[4], r[5], r[6])
        for r in rows
    ]


def _replay_rows(ids: set[int] | None) -> int:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE outbox_outboxevent SET dead_at = NULL, attempts = 0, next_attempt_at = clock_timestamp(), "
            "last_error = '', failed_handlers = '[]'::jsonb "
            "WHERE dead_at IS NOT NULL AND (%s OR id = ANY(%s))",
            [ids is None, sorted(ids or ())],
        )
        count = cursor.rowcount
        cursor.execute("SELECT pg_notify('messenger_outbox', '')")
    return count


def _purge_rows(ids: set[int] | None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM outbox_outboxevent WHERE dead_at IS NOT NULL AND (%s OR id = ANY(%s))",
            [ids is None, sorted(ids or ())],
        )
        return cursor.rowcount


# --- broker: the .XQ queue ---------------------------------------------------------------------


def _xq_take(channel) -> Iterable[tuple[int, object]]:
    """(delivery tag, dramatiq Message) of every message in .XQ, none acknowledged."""
    from dramatiq import Message
    from dramatiq.common import xq_name

    from outbox.transport import queue_name

    name = xq_name(queue_name())
    while True:
        method, _properties, body = channel.basic_get(name, auto_ack=False)
        if method is None:
            return
        yield method.delivery_tag, Message.decode(body)


def _as_dead_letter(message) -> DeadLetter:
    options = message.options
    args = list(message.args) + [None] * 5
    dead_ms = options.get("outbox_dead_at") or options.get("requeue_timestamp")
    return DeadLetter(
        source="broker",
        event_id=int(args[0]) if args[0] is not None else -1,
        type=str(args[1]),
        handlers=list(options.get("outbox_handlers") or []),
        # Retries counted the last failure already when DeadLetters parked the copy; a body that
        # RabbitMQ dead-lettered itself is the one delivered, which failed once more.
        attempts=int(options.get("retries") or 0) + (0 if "outbox_dead_at" in options else 1),
        error=options.get("outbox_error") or options.get("traceback") or "",
        dead_at=datetime.fromtimestamp(dead_ms / 1000, UTC) if dead_ms else None,
        key=args[3],
    )


def _broker_op(ids: set[int] | None, *, replay: bool = False, remove: bool = False) -> list[DeadLetter]:
    from outbox import transport

    transport.ensure_queues()
    conn, channel = transport.blocking_channel()
    try:
        found = []
        for tag, message in list(_xq_take(channel)):
            letter = _as_dead_letter(message)
            if not _wanted(letter.event_id, ids):
                continue
            if replay:
                options = {k: v for k, v in message.options.items() if k not in _RESET_OPTIONS}
                fresh = dataclasses.replace(message, queue_name=transport.queue_name(), options=options)
                channel.basic_publish(exchange="", routing_key=transport.queue_name(), body=fresh.encode(),
                                      properties=_persistent(), mandatory=True)  # fmt: skip
            if replay or remove:
                channel.basic_ack(tag)
            found.append(letter)
        return found
    finally:
        conn.close()  # what was taken and not acknowledged goes back to .XQ


def _persistent():
    import pika

    return pika.BasicProperties(delivery_mode=2)


# --- the tool's operations ------------------------------------------------------------------------


def list_dead() -> list[DeadLetter]:
    letters = _dead_rows()
    if settings.BROKER_URL:
        letters += _broker_op(None)
    return letters


def replay(ids: set[int] | None = None) -> int:
    """Put the dead letters with these event ids (None: all) back for delivery; how many."""
    count = _replay_rows(ids)
    if settings.BROKER_URL:
        count += len(_broker_op(ids, replay=True))
    return count


def purge(ids: set[int] | None = None) -> int:
    """Delete the dead letters with these event ids (None: all); how many."""
    count = _purge_rows(ids)
    if settings.BROKER_URL:
        count += len(_broker_op(ids, remove=True))
    return count
