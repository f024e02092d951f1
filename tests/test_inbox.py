"""runtime/inbox.py: the compact queue behind every socket's daphne input and channel inbox."""

from __future__ import annotations

import asyncio

import pytest

from runtime.inbox import HttpInbox, Inbox


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


async def test_an_http_body_comes_back_whole_from_disk_then_the_other_messages():
    """daphne puts the whole body at once; HttpInbox keeps it in a file and gives it back in
    64 KiB messages, exactly, with more_body false on the last, before a later disconnect."""
    inbox = HttpInbox()
    body = bytes(range(256)) * 4000  # 1 000 KiB: past the in-memory spool
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    for start in range(0, len(body), 8192):
        inbox.put_nowait(
            {"type": "http.request", "body": body[start : start + 8192], "more_body": start + 8192 < len(body)}
        )
    inbox.put_nowait({"type": "http.disconnect"})
    assert inbox._body._rolled  # on disk, not in memory
    received, messages = b"", [await asyncio.wait_for(waiting, 1)]
    while messages[-1]["more_body"]:
        messages.append(await inbox.get())
    received = b"".join(m["body"] for m in messages)
    assert received == body and all(len(m["body"]) <= HttpInbox.CHUNK_BYTES for m in messages)
    assert [m["more_body"] for m in messages].count(False) == 1
    assert await inbox.get() == {"type": "http.disconnect"}
    assert inbox.empty()


async def test_an_empty_http_body_is_one_message():
    inbox = HttpInbox()
    inbox.put_nowait({"type": "http.request", "body": b"", "more_body": False})
    assert await inbox.get() == {"type": "http.request", "body": b"", "more_body": False}
    assert inbox.empty()
