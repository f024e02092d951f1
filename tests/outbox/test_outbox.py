"""The outbox in one process: record, the handler registry, the runner's once-per-handler rule,
the inline relay's retries and dead letters, two relays sharing the table, the dlq tool."""

from __future__ import annotations

import itertools
import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction

import outbox
from outbox import Event, handler, record
from outbox.models import OutboxEvent, ProcessedEvent
from outbox.registry import handlers_for
from outbox.relay import BrokerRelay, InlineRelay, backoff_seconds
from outbox.runner import HandlerFailed, deliver
from tests.outbox.conftest import attempt_times, effects, outbox_rows, set_flag, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def record_many(event_type: str, payloads: list[dict], *, key: str | None = None) -> list[int]:
    with transaction.atomic():
        return [record(event_type, payload, key=key) for payload in payloads]


def as_event(event_id: int) -> Event:
    row = OutboxEvent.objects.get(pk=event_id)
    return Event(id=row.id, type=row.type, payload=row.payload, key=row.key, created_at=row.created_at)


@pytest.fixture
def relay(settings, outbox_db):
    """An inline relay thread in this process (stopped after the test)."""
    settings.OUTBOX_POLL_MS = 200
    started = []

    def start(**kwargs) -> InlineRelay:
        thread = InlineRelay(name=f"test-relay-{len(started)}", **kwargs)
        started.append(thread)
        thread.start()
        return thread

    yield start
    for thread in started:
        thread.stop(30)


def test_record_outside_a_transaction_is_refused(outbox_db):
    """An event must belong to a transaction: autocommit could publish a change that then fails."""
    with pytest.raises(outbox.NotInTransaction):
        record("test.effect", {})
    assert outbox_rows() == 0


def test_record_stores_the_event_and_a_rollback_stores_nothing(outbox_db):
    """The row is written in the caller's transaction, with its type, payload, key and time."""
    [event_id] = record_many("test.effect", [{"n": 1, "text": "ünïcode"}], key="channel:42")
    row = OutboxEvent.objects.get(pk=event_id)
    assert (row.type, row.payload, row.key, row.attempts, row.dead_at) == (
        "test.effect", {"n": 1, "text": "ünïcode"}, "channel:42", 0, None,
    )  # fmt: skip
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        record("test.effect", {"n": 2})
        raise ZeroDivisionError
    assert list(OutboxEvent.objects.values_list("id", flat=True)) == [event_id]


def test_payload_must_be_json(outbox_db):
    """A payload json.dumps refuses is refused at record time, not in a worker later."""
    import datetime

    with pytest.raises(TypeError), transaction.atomic():
        record("test.effect", {"when": datetime.datetime.now()})


def test_handlers_register_once_and_names_are_unique():
    """Several handlers per type; the same function again is a no-op; a taken name is an error."""
    assert [h.name for h in handlers_for("test.pair")] == ["sample.pair.first", "sample.pair.second"]
    from tests.outbox import sample_handlers

    handler("test.pair", name="sample.pair.first")(sample_handlers.pair_first)
    assert len(handlers_for("test.pair")) == 2
    with pytest.raises(ValueError, match="already registered"):
        handler("test.pair", name="sample.pair.first")(lambda event: None)


def test_a_handler_runs_once_per_event_even_when_delivered_twice_at_once(outbox_db):
    """Two deliveries of one event at the same time (at-least-once transport): the second waits
    for the first's transaction and then does nothing."""
    [event_id] = record_many("test.effect", [{}])
    event = as_event(event_id)
    barrier = threading.Barrier(4)
    results = []

    def deliver_it():
        from django.db import connection

        barrier.wait()
        try:
            results.append(deliver(event))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [0, 0, 0, 1]
    assert effects() == [(event_id, "sample.effect")]
    assert deliver(event) == 0  # and any later delivery too
    assert ProcessedEvent.objects.filter(event_id=event_id).count() == 1


def test_a_failing_handler_is_rolled_back_and_the_others_keep_their_effects(outbox_db):
    """Each handler has its own transaction: the failure of one leaves the other's committed
    effect, and the retry runs only the one that failed."""
    [event_id] = record_many("test.pair", [{}])
    event = as_event(event_id)
    with pytest.raises(HandlerFailed) as failure:
        deliver(event)
    assert failure.value.handlers == ["sample.pair.second"]
    assert "second handler fails once" in failure.value.report
    assert effects() == [(event_id, "sample.pair.first")]
    assert deliver(event) == 1
    assert effects() == [(event_id, "sample.pair.first"), (event_id, "sample.pair.second")]


def test_backoff_doubles_within_its_bounds(settings):
    settings.OUTBOX_MIN_BACKOFF_MS, settings.OUTBOX_MAX_BACKOFF_MS = 100, 1000
    delays = [backoff_seconds(n) for n in range(1, 7)]
    for n, delay in enumerate(delays[:4]):
        assert 0.1 * 2**n <= delay <= 0.125 * 2**n
    assert delays[-1] == 1.0


def test_the_inline_relay_runs_committed_events_and_deletes_them(relay):
    """Record -> commit -> NOTIFY -> relay -> handlers -> row gone."""
    relay()
    ids = record_many("test.effect", [{"n": n} for n in range(20)])
    wait_until(lambda: len(effects()) == 20 and outbox_rows() == 0, "20 effects")
    assert sorted(e for e, _ in effects()) == ids


def test_inline_retries_grow_then_succeed(relay, settings):
    """A handler failing 3 times is retried 3 times with growing delays, then its effect is
    committed once."""
    settings.OUTBOX_MIN_BACKOFF_MS, settings.OUTBOX_MAX_RETRIES = 200, 5
    relay()
    [event_id] = record_many("test.flaky", [{"fail_times": 3}])
    wait_until(lambda: effects(), "the flaky handler's effect")
    times = attempt_times(event_id, "sample.flaky")
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert len(times) == 4
    for n, gap in enumerate(gaps):
        assert gap >= 0.2 * 2**n  # at least the scheduled backoff
    assert gaps[0] < gaps[1] < gaps[2]
    assert effects() == [(event_id, "sample.flaky")]
    assert outbox_rows() == 0


def test_inline_dead_letter_list_replay_purge(relay, settings):
    """Past OUTBOX_MAX_RETRIES the row is dead with its error; dlq list shows it; once the cause
    is fixed, replay runs it exactly once; purge removes dead rows."""
    settings.OUTBOX_MIN_BACKOFF_MS, settings.OUTBOX_MAX_RETRIES = 50, 2
    relay()
    first, _second = record_many("test.broken", [{"n": 1}, {"n": 2}], key="k:1")
    wait_until(lambda: OutboxEvent.objects.filter(dead_at__isnull=False).count() == 2, "two dead letters")
    row = OutboxEvent.objects.get(pk=first)
    assert row.attempts == 3 and row.failed_handlers == ["sample.broken"]
    assert "RuntimeError: broken until fixed" in row.last_error
    assert len(attempt_times(first, "sample.broken")) == 3

    out = StringIO()
    call_command("dlq", "list", stdout=out)
    text = out.getvalue()
    assert f"#{first} test.broken source=outbox attempts=3" in text and "handlers=sample.broken" in text
    assert "RuntimeError: broken until fixed" in text and "2 dead letter(s)" in text

    set_flag("fixed")
    call_command("dlq", "replay", "--id", str(first), stdout=StringIO())
    wait_until(
        lambda: effects() == [(first, "sample.broken")] and not OutboxEvent.objects.filter(pk=first).exists(),
        "the replay",
    )
    call_command("dlq", "purge", stdout=(out := StringIO()))
    assert "purged 1" in out.getvalue()
    assert outbox_rows() == 0
    assert effects() == [(first, "sample.broken")]


def test_two_relays_in_parallel_publish_each_row_once(outbox_db, settings):
    """SKIP LOCKED: two relays draining one outbox take disjoint rows; every row is published once."""
    import time

    settings.OUTBOX_BATCH_SIZE, settings.OUTBOX_POLL_MS = 20, 100
    ids = record_many("test.effect", [{"n": n} for n in range(600)])
    published: dict[str, list[int]] = {"a": [], "b": []}

    def publisher(name):
        def publish(event):
            time.sleep(0.001)
            published[name].append(event.id)

        return publish

    relays = [BrokerRelay(publish=publisher(name), name=f"relay-{name}") for name in published]
    for thread in relays:
        thread.start()
    try:
        wait_until(lambda: outbox_rows() == 0, "the outbox drained")
    finally:
        for thread in relays:
            thread.stop(30)
    everything = published["a"] + published["b"]
    assert sorted(everything) == ids  # none lost, none twice
    assert published["a"] and published["b"]  # both took part


def test_a_relay_that_cannot_publish_keeps_the_rows(outbox_db, settings):
    """The broker refusing a publish deletes nothing after the failure: the rows are published later."""
    ids = record_many("test.effect", [{"n": n} for n in range(5)])
    sent = []

    def publish(event):
        if len(sent) == 2:
            raise ConnectionError("broker down")
        sent.append(event.id)

    relay = BrokerRelay(publish=publish, name="failing")
    with pytest.raises(Exception, match="published 2 of 5"):
        relay.pass_once()
    assert sorted(OutboxEvent.objects.values_list("id", flat=True)) == ids[2:]


def test_an_event_no_handler_knows_is_kept_not_dropped(relay, settings):
    """A process that does not know a type (an older one in a rolling deploy) must not lose its
    events: they are retried and then parked as dead letters, to be replayed."""
    settings.OUTBOX_MIN_BACKOFF_MS, settings.OUTBOX_MAX_RETRIES = 20, 1
    relay()
    [event_id] = record_many("test.unknown", [{}])
    wait_until(lambda: OutboxEvent.objects.filter(pk=event_id, dead_at__isnull=False).exists(), "a dead letter")
    assert "no handler is registered for 'test.unknown'" in OutboxEvent.objects.get(pk=event_id).last_error


def test_a_committed_record_notifies_listeners_and_a_rolled_back_one_does_not(outbox_db):
    """The relays' wake-up is sent by PostgreSQL at commit, never for a rollback."""
    import psycopg

    from outbox.relay import listener_params

    with psycopg.connect(autocommit=True, **listener_params()) as listener:
        listener.execute("LISTEN messenger_outbox")
        with pytest.raises(RuntimeError), transaction.atomic():
            record("test.effect", {})
            raise RuntimeError
        assert list(listener.notifies(timeout=0.5)) == []
        record_many("test.effect", [{}, {}])
        [note] = list(listener.notifies(timeout=10, stop_after=1))
        assert note.channel == "messenger_outbox"


def _record_in_atomic(*, n: int, fail: bool):
    recorded = yield outbox.record_step("test.effect", {"n": n}, key="plan")
    if fail:
        raise ValueError("the use case refuses")
    return recorded.id


def _plan(*, n: int, fail: bool = False):
    from runtime.plans import Atomic

    return (yield Atomic(_record_in_atomic(n=n, fail=fail)))


def test_record_step_joins_the_plans_transaction_under_both_executors(outbox_db):
    """A plan's Atomic sub-plan records its event with its writes: committed under the sync and
    the async executor alike, nothing when the sub-plan raises."""
    from asgiref.sync import async_to_sync

    from runtime.plans import use_case

    recording = use_case(_plan)
    sync_id = recording(n=1)
    async_id, _events = async_to_sync(recording.run_async)(n=2)
    for refused in (lambda: recording(n=3, fail=True), lambda: async_to_sync(recording.run_async)(n=4, fail=True)):
        with pytest.raises(ValueError):
            refused()
    rows = {row.id: row.payload for row in OutboxEvent.objects.all()}
    assert rows == {sync_id: {"n": 1}, async_id: {"n": 2}}
