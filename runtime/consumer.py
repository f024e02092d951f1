"""``SocketConsumer``: Channels' ``AsyncWebsocketConsumer`` with the plumbing a busy socket needs.

What it changes in Channels (see runtime/README.md for the why and the figures):

* **dispatch** without the per-message ``aclose_old_connections()`` thread hop: no ORM runs
  in async code here (plans run on the async pool, ``runtime.plans``).
* **A frame worker per socket.** Client frames are handed to the socket's own task, one at a
  time and in order, so the dispatch loop stays free for channel-layer events (Channels takes
  one layer message per client frame it handles). The queue is bounded; a client that sends
  faster waits here, then in the server's queue (``runtime.serve`` stops reading its socket).
  The task starts with the first frame: an idle socket holds none.
* **Sends after close are dropped**, not raised: events queued for a socket keep arriving
  until Channels delivers the disconnect, and daphne and uvicorn raise on a send to a closed
  connection.
* **Direct delivery**: :meth:`register_receiver` lets ``runtime.layers`` call
  :meth:`event_deliver` straight from its fan-out task; it is unregistered when the socket ends.

Subclasses implement :meth:`handle_frame` (never raising) and :meth:`event_deliver`, and may
set :attr:`frame_type` for the per-type frame-time metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer

from ops import metrics

# Raised by a send on a connection that is already closed: by daphne's WebSocket library
# (runtime.serve) and by uvicorn (runtime.uvserve).
_SocketGone: tuple[type[BaseException], ...] = ()
try:
    from autobahn.exception import Disconnected

    _SocketGone += (Disconnected,)
except ImportError:  # pragma: no cover - daphne not installed
    pass
try:
    from uvicorn.protocols.utils import ClientDisconnected

    _SocketGone += (ClientDisconnected,)
except ImportError:  # pragma: no cover - uvicorn not installed
    pass

# Client frames a socket may have waiting for its worker.
MAX_QUEUED_FRAMES = 32


class SocketConsumer(AsyncWebsocketConsumer):
    # Set once the socket is closing or gone; later frames are dropped (see send()).
    _closed = False
    # Client frames wait here for this socket's worker task (see websocket_receive()).
    _frames: asyncio.Queue | None = None
    _worker: asyncio.Task | None = None
    _frames_done = False
    # Whether frames are accepted at all (set by the subclass once the socket is authenticated).
    accepting_frames = False
    # The type of the frame being handled, for metrics.SOCKET_FRAME_SECONDS ("invalid" until known).
    frame_type = "invalid"

    async def handle_frame(self, text_data: str | None, bytes_data: bytes | None) -> None:
        raise NotImplementedError

    async def event_deliver(self, message: dict) -> None:
        raise NotImplementedError

    # --- Channels overrides ------------------------------------------------------------------

    async def dispatch(self, message):
        """Channels' dispatch minus its per-message ``aclose_old_connections()`` thread hop."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    def register_receiver(self) -> None:
        """Have the channel layer deliver ``event.deliver`` messages by calling event_deliver."""
        add_receiver = getattr(self.channel_layer, "add_receiver", None)
        if add_receiver is not None:
            add_receiver(self.channel_name, self.event_deliver)

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Here rather than in disconnect(), which a failed handshake never reaches.
            remove_receiver = getattr(getattr(self, "channel_layer", None), "remove_receiver", None)
            if remove_receiver is not None and getattr(self, "channel_name", None):
                remove_receiver(self.channel_name)
            if self._worker is not None:
                self._frames_done = True  # the worker stops after the frame in hand
                with contextlib.suppress(asyncio.QueueFull):
                    self._frames.put_nowait(None)  # wakes it if it is waiting for one

    async def websocket_receive(self, message):
        """Hand the client frame to this socket's worker; the dispatch loop stays free for events."""
        if not self.accepting_frames or self._frames_done:
            return  # not authenticated (being closed), or gone
        if self._worker is None:  # started by the first frame: an idle socket holds no task
            self._frames = asyncio.Queue(maxsize=MAX_QUEUED_FRAMES)
            self._worker = asyncio.create_task(self._work_frames())
        await self._frames.put((message, time.perf_counter()))

    async def _work_frames(self) -> None:
        while not self._frames_done:
            item = await self._frames.get()
            if item is None:
                return
            message, arrived = item
            self.frame_type = "invalid"  # the subclass names it once the frame parsed into a known type
            await self.handle_frame(message.get("text"), message.get("bytes"))
            metrics.SOCKET_FRAME_SECONDS.labels(type=self.frame_type).observe(time.perf_counter() - arrived)

    async def send(self, text_data=None, bytes_data=None, close=False):
        """Drop frames for a socket that is closing or gone instead of crashing the consumer."""
        if self._closed:
            return
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except _SocketGone:
            self._closed = True

    async def close(self, code=None, reason=None):
        if self._closed:
            return
        self._closed = True
        await super().close(code=code, reason=reason)

    async def websocket_disconnect(self, message):
        self._closed = True
        await super().websocket_disconnect(message)
