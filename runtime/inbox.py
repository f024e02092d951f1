"""A compact asyncio queue for the two queues every socket holds.

``asyncio.Queue`` allocates three deques and an ``Event`` (with a fourth deque) up front.
Every socket has two -- daphne's input queue for the application and the channel layer's
inbox for the consumer's channel (the figures: runtime/README.md, docs/PERFORMANCE.md).
:class:`Inbox` has the part of the interface those two use (``put_nowait``, ``await get()``,
``qsize``, ``empty``) and holds no deque while empty.

One consumer at a time: each of these queues is read by exactly one task (daphne's receive
callable is awaited by the application's one receive loop; a consumer's channel by Channels'
one dispatch loop).
"""

from __future__ import annotations

import asyncio
from collections import deque


class Inbox:
    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque | None = None
        self._waiter: asyncio.Future | None = None

    def put_nowait(self, item) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self):
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("Inbox.get() is already being awaited by another task")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if not self._items:
            self._items = None  # give the deque's block back while idle
        return item

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items
