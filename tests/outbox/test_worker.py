"""run_worker processes against PostgreSQL and, for the broker transport, the real RabbitMQ:
delivery, duplicates, retries, dead letters and the dlq tool, a worker killed mid-batch, the
broker down, several workers at once, and the graceful stop. Most run under both transports."""

from __future__ import annotations

import collections
import itertools
import signal
from io import StringIO

import pika
import pytest
from django.core.management import call_command
from django.db import transaction

from outbox import record, transport
from outbox.models import OutboxEvent
from outbox.registry import Event
from tests.outbox.conftest import (
    BROKER_URL,
    attempt_times,
    effects,
    kill,
    metric_value,
    metrics,
    outbox_rows,
    set_flag,
    wait_until,
)
from tests.outbox.proxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)


def record_many(event_type: str, payloads: list[dict]) -> list[int]:
    with transaction.atomic():
        return [record(event_type, payload, key=f"test:{n % 7}") for n, payload in enumerate(payloads)]


def counts_by_event(handler: str) -> collections.Counter:
    return collections.Counter(event_id for event_id, _ in effects(handler))


def dlq(*args: str) -> str:
    out = StringIO()
    call_command("dlq", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def dlq_settings(settings, workers):
    """The dlq tool in this process sees what the workers see (transport, queues)."""
    settings.BROKER_URL = BROKER_URL if workers.transport == "broker" else ""
    transport.close()
    yield
    transport.close()


def queue_counts(prefix: str) -> tuple[int, int, int]:
    """Messages (ready) in the main queue, its .DQ and .XQ."""
    conn = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    try:
        channel = conn.channel()
        return tuple(
            channel.queue_declare(queue=f"{prefix}.outbox{suffix}", passive=True).method.message_count
            for suffix in ("", ".DQ", ".XQ")
        )
    finally:
        conn.close()


def test_committed_events_run_each_handler_once_and_rolled_back_ones_nothing(workers):
    """Record in a committed transaction -> the effect of every handler, once; a rolled-back
    transaction leaves no row, so nothing is published or run."""
    worker = workers.start()
    with pytest.raises(RuntimeError), transaction.atomic():
        record("test.effect", {"rolled": "back"})
        raise RuntimeError("the command failed")
    assert outbox_rows() == 0
    ids = record_many("test.effect", [{"n": n} for n in range(30)])
    [pair] = record_many("test.pair", [{}])
    wait_until(
        lambda: len(effects("sample.effect")) == 30 and len(effects("sample.pair.second")) == 1,
        "every effect",
        processes=[worker],
    )
    assert sorted(counts_by_event("sample.effect")) == ids
    assert set(counts_by_event("sample.effect").values()) == {1}
    # The pair's second handler failed once: the first is not run again by the retry.
    assert effects("sample.pair.first") == [(pair, "sample.pair.first")]
    assert len(attempt_times(pair, "sample.pair.first")) == 1
    assert len(attempt_times(pair, "sample.pair.second")) == 2
    wait_until(lambda: outbox_rows() == 0, "the outbox drained")
    # No effect of the rolled-back transaction, ever: all rows the workers saw are accounted for.
    assert {event_id for event_id, _ in effects()} == {*ids, pair}
    text = metrics(worker)
    assert metric_value(text, "messenger_worker_handler_seconds_count", type="test.effect") == 30
    assert metric_value(text, "messenger_worker_retries_total", type="test.pair") == 1


@pytest.mark.parametrize("transport_name", ["broker"], indirect=True)
def test_a_message_delivered_twice_has_its_effect_once(workers):
    """At-least-once transport, exactly-once effects: the same event published twice to
    RabbitMQ is consumed twice and runs its handler once."""
    [event_id] = record_many("test.effect", [{}])
    row = OutboxEvent.objects.get(pk=event_id)
    OutboxEvent.objects.filter(pk=event_id).delete()  # publish it ourselves, twice
    event = Event(id=row.id, type=row.type, payload=row.payload, key=row.key, created_at=row.created_at)
    from django.test import override_settings

    with override_settings(BROKER_URL=BROKER_URL):
        transport.close()
        transport.publish(event)
        transport.publish(event)
        transport.close()
    worker = workers.start()
    wait_until(lambda: len(attempt_times(event_id, "sample.effect")) >= 1, "the first delivery", processes=[worker])
    wait_until(lambda: queue_counts(workers.prefix)[0] == 0, "both messages consumed", processes=[worker])
    wait_until(lambda: "messenger_worker_handler_seconds_count" in metrics(worker), "metrics")
    assert effects() == [(event_id, "sample.effect")]


def test_a_failing_handler_is_retried_with_growing_delays(workers):
    """Fails 3 times, then succeeds: 4 calls, each gap at least the doubled backoff, one effect."""
    worker = workers.start(OUTBOX_MIN_BACKOFF_MS="300")
    [event_id] = record_many("test.flaky", [{"fail_times": 3}])
    wait_until(lambda: effects(), "the effect after the retries", processes=[worker])
    times = attempt_times(event_id, "sample.flaky")
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert len(times) == 4, gaps
    for n, gap in enumerate(gaps):
        assert gap >= 0.3 * 2**n, gaps
    assert gaps[0] < gaps[2], gaps
    assert effects() == [(event_id, "sample.flaky")]
    assert metric_value(metrics(worker), "messenger_worker_retries_total", type="test.flaky") == 3


def test_an_always_failing_handler_is_dead_lettered_listed_replayed_and_purged(workers, dlq_settings):
    """After OUTBOX_MAX_RETRIES retries the event is a dead letter with its error; ``dlq list``
    shows it; with the cause fixed ``dlq replay`` runs it exactly once; ``dlq purge`` empties
    the dead letters."""
    worker = workers.start(OUTBOX_MAX_RETRIES="2")
    first, second = record_many("test.broken", [{"n": 1}, {"n": 2}])
    wait_until(lambda: dlq("list").count("test.broken") == 2, "two dead letters", processes=[worker])
    text = dlq("list")
    source = "broker" if workers.transport == "broker" else "outbox"
    for event_id in (first, second):
        assert f"#{event_id} test.broken source={source} attempts=3" in text, text
        assert len(attempt_times(event_id, "sample.broken")) == 3
    assert "handlers=sample.broken" in text and "RuntimeError: broken until fixed" in text
    assert metric_value(metrics(worker), "messenger_worker_dead_lettered_total", type="test.broken") == 2
    assert effects() == []

    set_flag("fixed")
    assert "replayed 1 dead letter(s)" in dlq("replay", "--id", str(first))
    wait_until(lambda: effects() == [(first, "sample.broken")], "the replayed event's effect", processes=[worker])
    assert f"#{second} " in (listing := dlq("list")) and f"#{first} " not in listing
    assert "purged 1 dead letter(s)" in dlq("purge")
    assert "0 dead letter(s)" in dlq("list")
    assert effects() == [(first, "sample.broken")]
    if workers.transport == "broker":
        assert queue_counts(workers.prefix) == (0, 0, 0)
    else:
        assert outbox_rows() == 0


@pytest.mark.timeout(300)
def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(workers):
    """500 events; SIGKILL the worker while it works through them; another worker finishes:
    every event's effect exists exactly once."""
    first = workers.start(threads=4, OUTBOX_BATCH_SIZE="25")
    ids = record_many("test.slow", [{"sleep_ms": 8} for _ in range(500)])
    wait_until(lambda: len(effects()) >= 60, "some effects", processes=[first])
    kill(first)
    done_at_kill = len(effects())
    assert done_at_kill < 500, "the worker was killed too late to test anything"
    second = workers.start(threads=4)
    wait_until(lambda: len(effects()) >= 500 and outbox_rows() == 0, "all 500 effects", processes=[second])
    counts = counts_by_event("sample.slow")
    assert sorted(counts) == ids
    assert set(counts.values()) == {1}
    if workers.transport == "broker":
        wait_until(lambda: queue_counts(workers.prefix)[0] == 0, "the queue drained", processes=[second])
        assert len(effects()) == 500


@pytest.mark.parametrize("transport_name", ["broker"], indirect=True)
@pytest.mark.timeout(300)
def test_broker_down_commands_commit_and_everything_is_delivered_when_it_returns(workers):
    """RabbitMQ unreachable: commands still commit (the outbox grows), the relay keeps failing
    without losing rows; when the broker returns every event is delivered exactly once. Then
    the connections are cut mid-stream and restored: still exactly once."""
    host, port = "127.0.0.1", pika.URLParameters(BROKER_URL).port
    proxy = TcpProxy(host, port)
    url = BROKER_URL.replace(f":{port}/", f":{proxy.port}/")
    assert url != BROKER_URL
    worker = workers.start(BROKER_URL=url)
    ids = record_many("test.effect", [{"n": n} for n in range(50)])
    assert outbox_rows() == 50
    wait_until(
        lambda: metric_value(metrics(worker), "messenger_outbox_publish_failures_total") >= 2,
        "failed publish passes",
        processes=[worker],
    )
    ids += record_many("test.effect", [{"n": n} for n in range(50, 80)])
    assert outbox_rows() == 80 and effects() == []
    wait_until(lambda: metric_value(metrics(worker), "messenger_outbox_lag_seconds") > 0, "the lag shown")
    proxy.up()
    try:
        wait_until(
            lambda: len(effects()) == 80 and outbox_rows() == 0,
            "delivery after the broker returned",
            processes=[worker],
        )
        more = record_many("test.slow", [{"sleep_ms": 5} for _ in range(200)])
        wait_until(lambda: len(effects("sample.slow")) >= 20, "some slow effects", processes=[worker])
        proxy.down()
        proxy.up()
        wait_until(lambda: len(effects("sample.slow")) >= 200 and outbox_rows() == 0, "the rest", processes=[worker])
        # The backlog gauge is sampled about once a second through the same (proxied) broker
        # address, so it is read while the broker is still reachable.
        wait_until(
            lambda: metric_value(metrics(worker), "messenger_worker_queue_backlog") == 0,
            "the queue backlog back to 0",
            processes=[worker],
        )
    finally:
        proxy.down()
    assert sorted(counts_by_event("sample.effect")) == ids
    assert sorted(counts_by_event("sample.slow")) == more
    wait_until(lambda: metric_value(metrics(worker), "messenger_outbox_lag_seconds") == 0, "the lag back to 0")
    assert metric_value(metrics(worker), "messenger_outbox_published_total") >= 280
    assert set(counts_by_event("sample.effect").values()) == set(counts_by_event("sample.slow").values()) == {1}


@pytest.mark.timeout(300)
def test_two_workers_at_once_deliver_each_event_once(workers):
    """Two worker processes (two relays on one outbox, two consumers on one queue)."""
    a, b = workers.start(threads=2, OUTBOX_BATCH_SIZE="10"), workers.start(threads=2, OUTBOX_BATCH_SIZE="10")
    ids = record_many("test.slow", [{"sleep_ms": 3} for _ in range(300)])
    wait_until(lambda: len(effects()) >= 300 and outbox_rows() == 0, "300 effects", processes=[a, b])
    counts = counts_by_event("sample.slow")
    assert sorted(counts) == ids and set(counts.values()) == {1}
    pids = {pid for (pid,) in _pids()}
    assert len(pids) == 2, "both workers took part"


def _pids():
    from tests.outbox.conftest import sql

    return sql("SELECT DISTINCT pid FROM outbox_test_effect")


def test_sigterm_stops_the_worker_after_its_current_event(workers):
    """SIGTERM while a handler runs: it finishes, its effect is committed (and acknowledged:
    not delivered again), and the process exits 0."""
    worker = workers.start(threads=1)
    [event_id] = record_many("test.slow", [{"sleep_ms": 1500, "log": True}])
    wait_until(lambda: attempt_times(event_id, "sample.slow"), "the handler started", processes=[worker])
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=60) == 0, worker.log()
    assert effects() == [(event_id, "sample.slow")]
    assert "worker stopped" in worker.log()
    if workers.transport == "broker":
        assert queue_counts(workers.prefix)[0] == 0  # acknowledged, not back in the queue
    assert outbox_rows() == 0
    again = workers.start(threads=1)
    [probe] = record_many("test.effect", [{}])
    wait_until(lambda: (probe, "sample.effect") in effects(), "a later event", processes=[again])
    assert len(attempt_times(event_id, "sample.slow")) == 1
