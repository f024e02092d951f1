"""Coalescing of "latest value" events per key: at most one per window, the latest always last.

Some events only say "X is now at least N" (``chat.read_all``): a later one makes every earlier
one redundant. An :class:`runtime.realtime.Outgoing` carrying :class:`Latest` passes through
:meth:`Coalescer.admit` where it is published (``realtime.send_events``), and per key:

* the first event in a quiet window goes out at once (leading edge) and opens a window of
  ``Latest.window`` seconds;
* events arriving while it is open are held, merged into one: the highest value, to the union
  of their recipients; when the window ends that one goes out (trailing edge) and opens the
  next window, so a key sends at most one event per window;
* a value not above the highest one sent is dropped: values only ever rise on the wire, and
  the highest is never dropped.

Callers are on several threads and event loops: the server's loop (sockets, and request
threads' ``async_to_sync``, which runs on it), and temporary loops of ``async_to_sync`` in
plain threads (management commands, tests). So the state is under a lock, and trailing edges
are timed by one daemon thread (:class:`_Timer`), not by the loop that held the event, which
may be gone when the window ends. The timer hands the held event back to that loop when it
still runs (in the server: the one loop, its layer connection), else publishes it from the
timer thread on a loop of its own. Per process: each server process coalesces its own events.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from asgiref.sync import async_to_sync


class Outgoing(Protocol):
    """What this module reads of :class:`runtime.realtime.Outgoing` (a dataclass: merged events
    are built with ``dataclasses.replace``). A protocol, so this module imports nothing of
    ``realtime``, which imports it."""

    user_ids: list[int]
    skip_channel: str | None
    groups: tuple[str, ...]
    latest: Latest | None


logger = logging.getLogger(__name__)

# Keys whose last sent value is remembered after their window closed (the oldest idle ones
# are forgotten first); it keeps a publisher that lagged behind from sending a lower value.
MAX_KEYS = 10_000


@dataclass(frozen=True)
class Latest:
    """Of the events with this ``key`` only the highest ``value`` matters; send at most one per
    ``window`` seconds (0: every one)."""

    key: str
    value: int
    window: float


@dataclass
class _Window:
    closes_at: float  # time.monotonic()
    sent: int  # the highest value published for the key
    held: Outgoing | None = None
    loop: asyncio.AbstractEventLoop | None = None  # where ``held`` was admitted


class Coalescer:
    """Per-key leading + trailing edge coalescing; ``publish`` sends events, uncoalesced."""

    def __init__(self, publish: Callable[[list[Outgoing]], Awaitable[None]]):
        self._publish = publish
        self._lock = threading.Lock()
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        self._timer = _Timer()
        self._pending: set = set()  # trailing sends handed to a loop, until done

    def admit(self, outgoing: Outgoing) -> bool:
        """Whether to publish ``outgoing`` now; False: it was held (or is stale). Call it on a running loop."""
        latest = outgoing.latest
        if latest is None or latest.window <= 0:
            return True
        now = time.monotonic()
        with self._lock:
            window = self._windows.get(latest.key)
            if window is not None and latest.value <= window.sent:
                return False  # the same or a higher value already went out
            if window is None or (window.held is None and now >= window.closes_at):
                self._windows[latest.key] = _Window(closes_at=now + latest.window, sent=latest.value)
                self._windows.move_to_end(latest.key)
                self._forget_idle()
                return True
            if window.held is None:
                window.loop = asyncio.get_running_loop()
                self._timer.call_at(window.closes_at, self._close, latest.key)
            window.held = _merge(window.held, outgoing)
            return False

    def _close(self, key: str) -> None:
        """The window of ``key`` ended: publish what it held, and open the next window."""
        with self._lock:
            window = self._windows.get(key)
            if window is None or window.held is None:
                return
            held, loop = window.held, window.loop
            window.held, window.loop = None, None
            if held.latest.value <= window.sent:
                return
            window.sent = held.latest.value
            window.closes_at = time.monotonic() + held.latest.window
        if loop is not None and loop.is_running():
            publishing = self._publish([held])
            try:
                future = asyncio.run_coroutine_threadsafe(publishing, loop)
            except RuntimeError:  # the loop closed meanwhile
                publishing.close()
            else:
                self._pending.add(future)
                future.add_done_callback(self._pending.discard)
                return
        async_to_sync(self._publish)([held])

    def _forget_idle(self) -> None:
        while len(self._windows) > MAX_KEYS:
            key, window = next(iter(self._windows.items()))
            if window.held is not None:
                return
            del self._windows[key]


def _merge(held: Outgoing | None, new: Outgoing) -> Outgoing:
    """One event for both: the higher value's text, to everyone either was for."""
    if held is None:
        return new
    top = new if new.latest.value >= held.latest.value else held
    user_ids = held.user_ids
    if new.user_ids != user_ids:  # the same list almost always: skip building a set of 1 000
        user_ids = sorted({*user_ids, *new.user_ids})
    groups = held.groups if new.groups == held.groups else tuple(dict.fromkeys((*held.groups, *new.groups)))
    skip = held.skip_channel if new.skip_channel == held.skip_channel else None
    return replace(top, user_ids=user_ids, groups=groups, skip_channel=skip)


class _Timer:
    """One daemon thread calling ``func(*args)`` at ``time.monotonic()`` deadlines, in order."""

    def __init__(self):
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable, tuple]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def call_at(self, when: float, func: Callable, *args) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._order), func, args))
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(target=self._run, name="coalesce-timer", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, _, func, args = heapq.heappop(self._heap)
            try:
                func(*args)
            except Exception:
                logger.exception("coalesced event could not be sent (clients catch up over REST)")
