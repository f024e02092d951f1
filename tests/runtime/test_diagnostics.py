"""The stall diagnostics in /metrics: event-loop lag, GC pauses, plan statement times."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest
from channels.db import database_sync_to_async

from chats import services
from ops import metrics
from runtime import gctune, looplag
from tests.conftest import ws_connect


def _count(histogram, **labels) -> float:
    child = histogram.labels(**labels) if labels else histogram
    return next(s.value for m in child.collect() for s in m.samples if s.name.endswith("_count"))


def _sum(histogram, **labels) -> float:
    child = histogram.labels(**labels) if labels else histogram
    return next(s.value for m in child.collect() for s in m.samples if s.name.endswith("_sum"))


async def test_a_blocked_event_loop_shows_as_lag():
    """A loop blocked for 60 ms makes the 10 ms timer at least 50 ms late."""
    looplag.ensure_started()
    looplag.ensure_started()  # once per loop
    await asyncio.sleep(0.03)
    before = _sum(metrics.EVENT_LOOP_LAG)
    time.sleep(0.06)  # blocks the loop, as a long computation or a full GC would
    await asyncio.sleep(0.03)
    assert _sum(metrics.EVENT_LOOP_LAG) - before >= 0.05
    assert [t for t in asyncio.all_tasks() if t.get_name() == "event-loop-lag"]


def test_gc_pauses_are_recorded(settings):
    """After gctune.settle, every collection's pause is observed by generation."""
    settings.GC_FREEZE = False
    settings.GC_THRESHOLDS = gc.get_threshold()
    gctune.settle()
    before = _count(metrics.GC_PAUSE, generation="2")
    gc.collect()
    assert _count(metrics.GC_PAUSE, generation="2") == before + 1


@pytest.mark.django_db(transaction=True)
async def test_plan_statements_are_timed_by_name(make_user):
    """A socket send times its statements under their names in chats/sql.py."""
    alice = await database_sync_to_async(make_user)()
    bob = await database_sync_to_async(make_user)()
    chat = (await database_sync_to_async(services.open_direct_chat)(user_id=alice.id, other_user_id=bob.id)).chat
    before = (
        _count(metrics.DB_STATEMENT_SECONDS, statement="send"),
        _count(metrics.DB_STATEMENT_SECONDS, statement="after_send"),
    )
    ws = await ws_connect(alice)
    try:
        await ws.send_json_to({"type": "message.send", "chat_id": chat.id, "client_id": "c1", "text": "hi"})
        assert (await ws.receive_json_from(timeout=5))["type"] == "message.ack"
    finally:
        await ws.disconnect()
    after = (
        _count(metrics.DB_STATEMENT_SECONDS, statement="send"),
        _count(metrics.DB_STATEMENT_SECONDS, statement="after_send"),
    )
    assert after == (before[0] + 1, before[1] + 1)


def test_the_gc_pause_hook_never_raises_at_the_recursion_limit(monkeypatch):
    """A collection can start at the bottom of a deep recursion, where recording the pause
    itself overflows the stack: the hook drops that one observation instead of raising (an
    exception from a gc callback is printed as a traceback in the server log)."""

    class Overflowing:
        def labels(self, **_):
            raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(gctune.metrics, "GC_PAUSE", Overflowing())
    gctune._time_collections("start", {"generation": 2})
    gctune._time_collections("stop", {"generation": 2})  # would raise without the guard
    assert gctune._started == []
