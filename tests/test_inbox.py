"""runtime/inbox.py: the compact queue behind every socket's daphne input and channel inbox."""

from __future__ import annotations

import asyncio

import pytest

from runtime.inbox import Inbox


async def test_items_come_out_in_order_and_a_waiting_get_wakes():
    inbox = Inbox()
    assert inbox.empty() and inbox.qsize() == 0
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert inbox.qsize() == 2
    assert await inbox.get() == 1
    assert await inbox.get() == 2
    assert inbox.empty()
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox.put_nowait("late")
    assert await asyncio.wait_for(waiting, 1) == "late"


async def test_a_cancelled_get_loses_nothing_and_the_next_get_works():
    inbox = Inbox()
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("x")  # wakes the getter, which is cancelled before it runs
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert inbox.qsize() == 1
    assert await asyncio.wait_for(inbox.get(), 1) == "x"
    again = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("y")
    assert await asyncio.wait_for(again, 1) == "y"


async def test_two_concurrent_getters_are_refused():
    inbox = Inbox()
    first = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        await inbox.get()
    inbox.put_nowait(1)
    assert await asyncio.wait_for(first, 1) == 1
