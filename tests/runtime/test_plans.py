"""The two executors of runtime/plans.py carry out the same plan the same way."""

from __future__ import annotations

from typing import NamedTuple

import pytest
from django.db import IntegrityError, connection, transaction

from runtime import realtime
from runtime.plans import AddKey, CountInWindow, Emit, HasKey, Statement, run_async, run_sync, use_case

pytestmark = pytest.mark.django_db(transaction=True)


class Pair(NamedTuple):
    a: int
    b: str


PAIR = Statement("SELECT %(a)s::int, %(b)s::text", Pair)
SERIES = Statement("SELECT g, g::text FROM generate_series(1, %(n)s) AS g", Pair)
# A constraint violation (chats_chat.kind is NOT NULL).
VIOLATION = Statement("INSERT INTO chats_chat (kind, title) VALUES (NULL, 'x') RETURNING id", Pair)


@use_case
def sample(*, n: int):
    """Every kind of step, and a database error handled by the plan itself."""
    one = yield PAIR.one(a=n, b="x")
    many = yield SERIES.all(n=n)
    none = yield Statement("SELECT 1 WHERE false", Pair).one()
    try:
        yield VIOLATION.one(savepoint=True)
        recovered = False
    except IntegrityError:
        recovered = True
    after = yield PAIR.one(a=1, b="still usable")
    first = yield CountInWindow(f"plan-test:{n}", ttl=60)
    second = yield CountInWindow(f"plan-test:{n}", ttl=60)
    added = yield AddKey(f"plan-test-key:{n}", ttl=60)
    added_again = yield AddKey(f"plan-test-key:{n}", ttl=60)
    has = yield HasKey(f"plan-test-key:{n}")
    yield Emit([1, 2], {"type": "test.event", "n": n})
    return one, many, none, recovered, after.b, (first, second), (added, added_again, has)


def expected(n):
    return (
        Pair(n, "x"),
        [Pair(i, str(i)) for i in range(1, n + 1)],
        None,
        True,
        "still usable",
        (1, 2),
        (True, False, True),
    )


def test_sync_executor(monkeypatch):
    """Rows decode into the statement's row type; an error is thrown into the plan at its yield."""
    sent = []
    monkeypatch.setattr(realtime, "send_now", sent.append)
    assert sample(n=3) == expected(3)
    assert [(o.user_ids, o.text) for o in sent] == [([1, 2], '{"type":"test.event","n":3}')]


async def test_async_executor_runs_the_same_plan():
    """The same plan from the event loop: same answers; the events come back instead of going out."""
    result, events = await sample.run_async(n=4)
    assert result == expected(4)
    assert [(o.user_ids, o.text) for o in events] == [([1, 2], '{"type":"test.event","n":4}')]
    assert events[0].committed_at is not None


def test_sync_events_wait_for_the_callers_commit(monkeypatch):
    """Inside a transaction an Emit goes out on commit, and a savepoint keeps the transaction usable."""
    sent = []
    monkeypatch.setattr(realtime, "send_now", sent.append)
    with transaction.atomic():
        run_sync(sample.plan(n=2))
        assert sent == []
        assert connection.in_atomic_block  # the violation rolled back its savepoint only
    assert len(sent) == 1


def test_an_error_the_plan_does_not_handle_reaches_the_caller():
    def plan():
        yield VIOLATION.one()

    with pytest.raises(IntegrityError):
        run_sync(plan())


async def test_an_error_the_plan_does_not_handle_reaches_the_async_caller():
    def plan():
        yield VIOLATION.one()

    with pytest.raises(IntegrityError):
        await run_async(plan())


def test_a_use_case_keeps_its_name_and_docstring():
    assert sample.__name__ == "sample" and "Every kind of step" in sample.__doc__


def test_sync_statements_are_prepared_once_per_connection():
    """The sync executor's statements are really prepared (Django disables psycopg's preparing by
    default; settings turn it back on), so PostgreSQL plans each once per connection."""
    for _ in range(2):
        run_sync(sample.plan(n=1))
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("generate_series" in statement for statement in prepared), prepared
