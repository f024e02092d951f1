"""The transactional outbox: record events in the transaction that causes them, run handlers
for them after commit -- in process (no broker) or in ``run_worker`` processes through RabbitMQ.

Public API (a contract for the apps; see docs/ARCHITECTURE.md "Commands, events and the outbox"):

* ``record(event_type, payload, *, key=None)`` -- inside ``transaction.atomic()``: one outbox row,
  and a wake-up for the relays when (and only if) the transaction commits.
* ``@handler(event_type, *, name=None)`` -- register ``fn(event: Event) -> None``; found in each
  installed app's ``handlers`` module. Each handler runs in its own transaction, at most once
  per event for good (delivery is at least once; effects exactly once), retried on an exception.
* ``Event`` -- ``id``, ``type``, ``payload``, ``key``, ``created_at``.
* ``record_sql(events)`` -- the same as SQL for a use case whose change is one statement: a
  data-modifying CTE that records one event per row of the query ``events``.
* ``record_step(...)`` -- ``record`` as a ``runtime.plans`` step, for plans the event loop runs
  too: yield it inside an ``Atomic`` sub-plan.

Handlers must not rely on delivery order: read the current state.
"""

from outbox.recording import NotInTransaction, Recorded, record, record_sql, record_step
from outbox.registry import Event, handler

__all__ = ["Event", "NotInTransaction", "Recorded", "handler", "record", "record_sql", "record_step"]
