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
import tempfile
from collections import deque

_NOTHING = object()


class Inbox:
    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque | None = None
        self._waiter: asyncio.Future | None = None

    def put_nowait(self, item) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _take(self):
        """The next item, or :data:`_NOTHING` when none is ready."""
        if not self._items:
            return _NOTHING
        item = self._items.popleft()
        if not self._items:
            self._items = None  # give the deque's block back while idle
        return item

    async def get(self):
        while (item := self._take()) is _NOTHING:
            if self._waiter is not None:
                raise RuntimeError("Inbox.get() is already being awaited by another task")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return item

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items


class HttpInbox(Inbox):
    """The input queue of one HTTP request, holding its body on disk instead of in memory.

    daphne hands the application the whole request body at once, as soon as Twisted has it
    (``WebRequest.process`` reads the spooled body into the queue in 8 KiB messages): with a
    plain queue a 50 MiB upload sits in memory as ~6 400 messages until the app has read them.
    Here each ``http.request`` message's bytes are appended to a temporary file (in memory up
    to :data:`SPOOL_BYTES`) and dropped; ``get()`` hands them back in :data:`CHUNK_BYTES`
    messages as the application reads, before any other message (daphne sends the body first).
    """

    __slots__ = ("_body", "_complete", "_read_at", "_written")

    SPOOL_BYTES = 256 * 1024
    CHUNK_BYTES = 64 * 1024

    def __init__(self) -> None:
        super().__init__()
        self._body = None
        self._read_at = 0
        self._written = 0
        self._complete = False

    def put_nowait(self, item) -> None:
        if not isinstance(item, dict) or item.get("type") != "http.request":
            super().put_nowait(item)
            return
        if self._body is None:
            self._body = tempfile.SpooledTemporaryFile(max_size=self.SPOOL_BYTES)  # noqa: SIM115 - closed when read
        chunk = item.get("body", b"")
        if chunk:
            self._body.seek(self._written)
            self._body.write(chunk)
            self._written += len(chunk)
        if not item.get("more_body", False):
            self._complete = True
        self._wake()

    def _take(self):
        """The next body message while there is body, then the other messages."""
        if self._body is None or (self._read_at == self._written and not self._complete):
            return super()._take()
        self._body.seek(self._read_at)
        chunk = self._body.read(min(self.CHUNK_BYTES, self._written - self._read_at))
        self._read_at += len(chunk)
        done = self._complete and self._read_at == self._written
        if done:
            self._body.close()
            self._body = None
        return {"type": "http.request", "body": chunk, "more_body": not done}

    def qsize(self) -> int:
        return super().qsize() + (1 if self._body is not None else 0)

    def empty(self) -> bool:
        return super().empty() and self._body is None
