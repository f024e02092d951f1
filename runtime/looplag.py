"""Event-loop lag: how late a 10 ms timer fires on the running loop (``messenger_event_loop_lag_*``).

A loop that is blocked -- by a long computation, a full garbage collection, a synchronous call
-- delays every socket of the process by as long; a slow database or Redis does not (the loop
keeps running while they answer). So this metric tells the two kinds of stall apart.
:func:`ensure_started` starts the monitor once per event loop; the ASGI entry points call it.
"""

from __future__ import annotations

import asyncio
import time

from ops import metrics

INTERVAL = 0.010
WINDOW = 10.0

_loops: set[int] = set()


def ensure_started() -> None:
    """Start the monitor on the running loop unless it already runs there."""
    loop = asyncio.get_running_loop()
    if id(loop) in _loops:
        return
    _loops.add(id(loop))
    task = loop.create_task(_watch(), name="event-loop-lag")
    task.add_done_callback(lambda _: _loops.discard(id(loop)))


async def _watch() -> None:
    worst, window_end = 0.0, time.monotonic() + WINDOW
    while True:
        before = time.monotonic()
        await asyncio.sleep(INTERVAL)
        now = time.monotonic()
        lag = max(0.0, now - before - INTERVAL)
        metrics.EVENT_LOOP_LAG.observe(lag)
        worst = max(worst, lag)
        if now >= window_end:
            metrics.EVENT_LOOP_LAG_MAX.set(worst)
            worst, window_end = 0.0, now + WINDOW
