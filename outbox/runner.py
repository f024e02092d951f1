"""Running an event's handlers: each in its own transaction, each at most once per event."""

from __future__ import annotations

import logging
import time
import traceback

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from outbox.metrics import HANDLER_SECONDS
from outbox.registry import Event, handlers_for

logger = logging.getLogger(__name__)

# Taking the (handler, event) pair first: a second delivery of the same event running at the same
# time waits on the unique index until the first commits (then does nothing) or rolls back (then
# runs the handler itself). Handler effects and this row commit or vanish together.
_CLAIM = """
INSERT INTO outbox_processedevent (handler, event_id, processed_at)
VALUES (%s, %s, clock_timestamp())
ON CONFLICT (handler, event_id) DO NOTHING
RETURNING 1
"""


class HandlerFailed(Exception):
    """One or more handlers of an event raised (their transactions were rolled back; the other
    handlers' effects stand). ``handlers`` names them; ``report`` has each one's traceback."""

    def __init__(self, event: Event, failures: list[tuple[str, str]]):
        self.event = event
        self.handlers = [name for name, _ in failures]
        self.report = "\n".join(f"[{name}]\n{text}" for name, text in failures)
        last_line = failures[-1][1].strip().splitlines()[-1] if failures else ""
        super().__init__(f"event #{event.id} ({event.type}): {', '.join(self.handlers)} failed: {last_line}")


def deliver(event: Event) -> int:
    """Run every handler registered for ``event.type`` that has not run for this event yet, each
    in its own ``transaction.atomic()`` (a savepoint when the caller holds a transaction, as the
    inline relay does). Returns how many handlers ran; raises ``HandlerFailed`` if any raised,
    after giving every other handler its turn, or if no handler is registered for the type."""
    connection = connections[DEFAULT_DB_ALIAS]
    entries = handlers_for(event.type)
    if not entries:
        # Never acknowledge an event nobody here knows: during a rolling deploy an older process
        # would drop the new type's events for good. Retried, then a dead letter to replay.
        raise HandlerFailed(event, [("(no handler)", f"no handler is registered for {event.type!r} in this process\n")])
    failures: list[tuple[str, str]] = []
    ran = 0
    for entry in entries:
        started = time.perf_counter()
        fresh = True
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(_CLAIM, [entry.name, event.id])
                    fresh = cursor.fetchone() is not None
                if not fresh:
                    continue  # this handler's effects for this event are committed already
                entry.fn(event)
                ran += 1
        except Exception:
            failures.append((entry.name, traceback.format_exc(limit=30)))
            logger.warning(
                "outbox handler %s failed for event #%s (%s)", entry.name, event.id, event.type, exc_info=True
            )
        finally:
            if fresh:
                HANDLER_SECONDS.labels(type=event.type).observe(time.perf_counter() - started)
    if failures:
        raise HandlerFailed(event, failures)
    return ran
