"""``record``: one event into the outbox, in the caller's transaction (and ``record_step``, the
same as a step of a ``runtime.plans`` plan)."""

from __future__ import annotations

import json
from typing import NamedTuple

from django.db import DEFAULT_DB_ALIAS, connections

from runtime.plans import Fetch, Statement

# The LISTEN/NOTIFY channel relays wait on (spelled out in the trigger of migration 0002). NOTIFY is per
# database, so test databases and deployments on other databases never wake each other.
NOTIFY_CHANNEL = "messenger_outbox"

# The columns an event row is inserted with; the row trigger (migration 0002) wakes the relays
# when, and only if, the transaction commits.
_INSERT = """INSERT INTO outbox_outboxevent (type, payload, key, created_at, attempts, next_attempt_at, last_error, failed_handlers)"""
_RECORD = f"""{_INSERT}
VALUES (%(type)s, %(payload)s::jsonb, %(key)s, clock_timestamp(), 0, clock_timestamp(), '', '[]'::jsonb)
RETURNING id
"""


def record_sql(events: str) -> str:
    """SQL recording one event per row of the query ``events`` (columns ``type`` text,
    ``payload`` jsonb, ``key`` text), for a use case that changes state in **one statement**:
    put it in a data-modifying CTE of that statement (``recorded AS ({record_sql(...)})``), and
    the events commit or vanish with the change. ``events`` must be constant SQL whose values
    are bound parameters. Handlers must be registered for every type it can produce."""
    return f"""{_INSERT}
    SELECT e.type, e.payload, e.key, clock_timestamp(), 0, clock_timestamp(), '', '[]'::jsonb FROM ({events}) AS e"""  # the caller's constant SQL  # nosec B608


class Recorded(NamedTuple):
    id: int


_RECORD_STEP = Statement(_RECORD, Recorded, name="outbox_record")


class NotInTransaction(RuntimeError):
    """``record`` was called outside ``transaction.atomic()``: the event would not be tied to
    the change it describes."""


def _params(event_type: str, payload: dict, key: str | None) -> dict:
    if not isinstance(event_type, str) or not event_type:
        raise ValueError("event_type must be a non-empty string")
    if not isinstance(payload, dict):
        raise TypeError("payload must be a dict")
    if key is not None and not isinstance(key, str):
        raise TypeError("key must be a string or None")
    return {"type": event_type, "payload": json.dumps(payload, ensure_ascii=False, allow_nan=False), "key": key}


def record(event_type: str, payload: dict, *, key: str | None = None) -> int:
    """Insert one event into the outbox inside the caller's ``transaction.atomic()``, and wake
    the relays when that transaction commits. A rolled-back transaction records nothing.

    ``payload`` must be JSON-serialisable (``json.dumps``, strictly: no datetimes or UUIDs);
    ``key`` is grouping information such as ``"channel:42"``. Returns the event's id.
    Raises ``NotInTransaction`` outside an atomic block (autocommit would publish an event whose
    cause might still fail after it)."""
    connection = connections[DEFAULT_DB_ALIAS]
    if not connection.in_atomic_block:
        raise NotInTransaction("outbox.record() must be called inside transaction.atomic()")
    with connection.cursor() as cursor:
        cursor.execute(_RECORD, _params(event_type, payload, key))
        return cursor.fetchone()[0]


def record_step(event_type: str, payload: dict, *, key: str | None = None) -> Fetch:
    """``record`` as a step of a ``runtime.plans`` plan, for use cases the event loop runs too
    (``run_async`` has no Django transaction for ``record`` to join). Yield it **inside an
    ``Atomic`` sub-plan**, next to the writes it describes; answered with ``Recorded(id)``.
    Outside ``Atomic`` the async executor would commit it on its own, apart from the change."""
    return _RECORD_STEP.one(**_params(event_type, payload, key))
