"""The WebSocket endpoint ``/ws/``: one socket per device, fanned out per user.

Thin on purpose. A frame is parsed and shape-checked here without touching the
database; then exactly one ``run_in_db`` call (a database thread) runs the matching service
(one thread hop, one transaction); replies go straight to this socket and the
events the service committed go out through the channel layer to per-user groups.

Whatever a client sends, the answer is at worst an ``error`` frame and the socket
stays open. Clients never choose a channel-layer message type: the only handler
for layer messages is :meth:`event_deliver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import DatabaseError

from accounts.auth import authenticate
from accounts.tokens import SID_CLAIM
from ops import metrics
from runtime.db_threads import run_in_db
from ops.errors import UNAVAILABLE_ERRORS, MessengerError, ServiceUnavailable
from ops.logs import request_id_from

from . import events, services
from .exceptions import InvalidInput
from .serializers import MAX_ID
from .services import fast

try:  # daphne's WebSocket library: raised by a send on a connection that is already closed
    from autobahn.exception import Disconnected as _SocketGone
except ImportError:  # pragma: no cover - another ASGI server
    _SocketGone = ()

logger = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_BIG = 1009
# The channel layer lost Redis, so events may be lost: reconnect and catch up. (Not 1012:
# daphne's websocket library only lets a server send 1000 or 3000-4999.)
CLOSE_RESYNC = 4503
# Largest frame we read; daphne is also started with --websocket-max-message-size 65536.
MAX_FRAME_BYTES = 64 * 1024
SUBPROTOCOL = "messenger.v1"
REF_MAX = 128
# Client frames a socket may have waiting for its worker (runtime/serve.py bounds daphne's side).
MAX_QUEUED_FRAMES = 32


def _has_unpaired_surrogate(frame) -> bool:
    """Whether a parsed frame holds a string with a lone surrogate (from a ``\\udXXX`` escape)."""
    try:
        json.dumps(frame, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        return True
    return False


class FrameError(MessengerError):
    """A frame-level protocol error with an explicit code."""

    def __init__(self, code: str, detail: str):
        self.code = code
        super().__init__(detail)


def _id_field(frame: dict, name: str) -> int:
    value = frame.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not (1 <= value <= MAX_ID):
        raise InvalidInput({name: ["Must be a positive integer."]})
    return value


def _seq_field(frame: dict, name: str) -> int:
    value = frame.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not (0 <= value <= MAX_ID):
        raise InvalidInput({name: ["Must be a non-negative integer."]})
    return value


class ChatConsumer(AsyncWebsocketConsumer):
    user_id: int | None = None
    # Set once the socket is closing or gone; later frames are dropped (see send()).
    _closed = False
    # Client frames wait here for this socket's worker task (see websocket_receive()).
    _frames: asyncio.Queue | None = None
    _worker: asyncio.Task | None = None
    _frames_done = False
    # The type of the frame being handled, for metrics.SOCKET_FRAME_SECONDS ("invalid" until known).
    _frame_type = "invalid"
    # perf_counter() at accept while counted in messenger_sockets_open; None otherwise.
    _opened_at: float | None = None

    async def dispatch(self, message):
        """Channels' dispatch minus its per-message ``aclose_old_connections()`` thread hop.

        This consumer never touches the ORM in async code: all database work goes through
        ``run_in_db``, which closes stale connections in the thread that owns them.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- lifecycle ------------------------------------------------------------------

    async def connect(self):
        user = self.scope.get("user")
        offered = self.scope.get("subprotocols") or []
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered else None
        headers = dict(self.scope.get("headers") or [])
        self.request_id = request_id_from(headers.get(b"x-request-id", b"").decode("latin-1"))
        if user is None or not user.is_authenticated:
            logger.info("socket.rejected", extra={"reason": "unauthenticated", "request_id": self.request_id})
            # Select the offered subprotocol here too: a browser fails a handshake whose offered
            # subprotocols were all ignored (1006), and would never see the 4401.
            await self.accept(subprotocol=subprotocol)
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.user_id = user.id
        self.sid = self.scope.get("token_sid")
        self.group = events.user_group(user.id)
        self._expiry_handle = None
        await self.channel_layer.group_add(self.group, self.channel_name)
        add_receiver = getattr(self.channel_layer, "add_receiver", None)
        if add_receiver is not None:  # our layer: events come straight to event_deliver
            add_receiver(self.channel_name, self.event_deliver)
        await self.accept(subprotocol=subprotocol)
        self._opened_at = time.perf_counter()
        metrics.SOCKETS_OPEN.inc()
        logger.info("socket.open", extra={"user_id": user.id, "request_id": self.request_id})
        await self._send({"type": "session.ready", "user": {"id": user.id, "username": user.username}})
        self._schedule_expiry(self.scope.get("token_exp"))

    async def disconnect(self, code):
        if self._opened_at is not None:
            metrics.SOCKETS_OPEN.dec()
            duration_ms = round((time.perf_counter() - self._opened_at) * 1000, 1)
            self._opened_at = None
            logger.info(
                "socket.close",
                extra={"user_id": self.user_id, "code": code, "duration_ms": duration_ms, "request_id": self.request_id},
            )
        if self.user_id is None:
            return
        if self._expiry_handle is not None:
            self._expiry_handle.cancel()
        try:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        except Exception:  # noqa: BLE001 - the layer may be down; the socket is going anyway
            logger.warning("group_discard failed", exc_info=True)

    def _schedule_expiry(self, exp: int | None) -> None:
        if self._expiry_handle is not None:
            self._expiry_handle.cancel()
            self._expiry_handle = None
        if exp is None:
            return
        delay = max(0.0, float(exp) - time.time())
        loop = asyncio.get_running_loop()
        self._expiry_handle = loop.call_later(delay, lambda: asyncio.ensure_future(self._expire()))

    async def _expire(self) -> None:
        await self._send({"type": "error", "code": "token_expired", "detail": "Access token expired; reconnect with a fresh one.", "ref": None})
        await self.close(code=CLOSE_UNAUTHORIZED)

    # --- inbound frames ---------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        ref = None
        try:
            if text_data is None:
                raise FrameError("invalid_json", "Binary frames are not supported; send JSON text.")
            if len(text_data) > MAX_FRAME_BYTES // 4 and len(text_data.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
                await self.close(code=CLOSE_TOO_BIG)
                return
            try:
                frame = json.loads(text_data)
            except (ValueError, RecursionError):
                raise FrameError("invalid_json", "The frame is not valid JSON.") from None
            if "\\u" in text_data and _has_unpaired_surrogate(frame):
                # Valid JSON, but such a string cannot be stored, nor echoed back as UTF-8.
                raise FrameError("invalid_json", "The frame holds an unpaired surrogate escape (\\ud800-\\udfff).")
            if not isinstance(frame, dict):
                # Well-formed JSON of the wrong shape is a validation error, not a parse error.
                raise InvalidInput("A frame must be a JSON object.")
            ref = frame.get("ref")
            if ref is not None and (not isinstance(ref, str) or len(ref) > REF_MAX):
                ref = None
                raise InvalidInput({"ref": [f"Must be a string of at most {REF_MAX} characters."]})
            kind = frame.get("type")
            handler = self.HANDLERS.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise FrameError("unknown_type", f"Unknown frame type {kind!r}." if isinstance(kind, str) else "A frame needs a string 'type'.")
            self._frame_type = kind
            await handler(self, frame, ref)
        except MessengerError as exc:
            await self._error(exc, ref)
        except UNAVAILABLE_ERRORS as exc:
            logger.warning("backing service unavailable during a socket command: %s", type(exc).__name__)
            metrics.count_backend_error(exc, source="socket")
            await self._error(ServiceUnavailable(), ref)
        except DatabaseError:
            logger.exception("database error during a socket command")
            metrics.DB_ERRORS.labels(source="socket").inc()
            await self._error(ServiceUnavailable(), ref)
        except Exception:
            logger.exception("unexpected error handling a socket frame")
            await self._error(FrameError("server_error", "Internal error; the frame was not processed."), ref)

    async def _error(self, exc: MessengerError, ref) -> None:
        await self._send({"type": "error", **exc.as_dict(), "ref": ref})

    async def _run(self, fn, /, **kwargs):
        """One thread hop into a service; send the events it committed afterwards."""
        with events.collect() as bucket:
            result = await run_in_db(fn, **kwargs)
        await events.send_collected(bucket)
        return result

    async def _on_send(self, frame: dict, ref):
        chat_id = _id_field(frame, "chat_id")
        client_id = services.clean_client_id(frame.get("client_id"))
        text = services.clean_text(frame.get("text"))
        result, bucket = await fast.send_message(
            user_id=self.user_id, chat_id=chat_id, client_id=client_id, text=text, skip_channel=self.channel_name
        )
        # The ack first: the sending device learns its message is stored before anyone else hears of it.
        await self._send(
            {"type": "message.ack", "client_id": client_id, "duplicate": result.duplicate, "message": result.payload(), "ref": ref}
        )
        await events.send_collected(bucket)

    async def _on_read(self, frame: dict, ref):
        chat_id = _id_field(frame, "chat_id")
        up_to_seq = _seq_field(frame, "up_to_seq")
        result, bucket = await fast.mark_read(
            user_id=self.user_id, chat_id=chat_id, up_to_seq=up_to_seq, skip_channel=self.channel_name
        )
        await events.send_collected(bucket)
        await self._send(
            {
                "type": "chat.read",
                "chat_id": result.chat_id,
                "user_id": result.user_id,
                "last_read_seq": result.last_read_seq,
                "read_all_seq": result.read_all_seq,
                "ref": ref,
            }
        )

    async def _on_typing(self, frame: dict, ref):
        chat_id = _id_field(frame, "chat_id")
        await self._run(services.notify_typing, user_id=self.user_id, chat_id=chat_id)

    async def _on_ping(self, frame: dict, ref):
        await self._send({"type": "pong", "ref": ref})

    async def _on_auth_refresh(self, frame: dict, ref):
        raw = frame.get("token")
        if not isinstance(raw, str) or not raw:
            raise InvalidInput({"token": ["An access token is required."]})
        user, token = await run_in_db(authenticate, raw)
        if user is None or user.id != self.user_id:
            raise FrameError("token_not_valid", "The token is invalid, expired or for another user.")
        self.sid = token.get(SID_CLAIM)
        self._schedule_expiry(token.get("exp"))
        await self._send({"type": "auth.refreshed", "exp": token.get("exp"), "ref": ref})

    HANDLERS = {
        "message.send": _on_send,
        "message.read": _on_read,
        "typing": _on_typing,
        "ping": _on_ping,
        "auth.refresh": _on_auth_refresh,
    }

    # --- channel-layer events -------------------------------------------------------------

    async def event_deliver(self, message: dict):
        """A committed event for this user; the socket that caused it is skipped."""
        if message.get("skip") == self.channel_name:
            return
        await self.send(text_data=message["text"])
        committed_at = message.get(events.COMMITTED_AT)
        if committed_at is not None:
            metrics.FANOUT_LATENCY.observe(max(0.0, time.time() - committed_at))

    async def session_revoke(self, message: dict):
        """Logout of this socket's session (sid) or deactivation of the user (sid None)."""
        sid = message.get("sid")
        if sid is None or sid == self.sid:
            await self._send({"type": "error", "code": "session_revoked", "detail": "Logged out.", "ref": None})
            await self.close(code=CLOSE_UNAUTHORIZED)

    async def layer_resync(self, message: dict):
        """The layer re-subscribed after losing Redis (runtime/layers.py): events published
        meanwhile are gone, and a quiet chat would show no seq gap to reveal them. Close with
        4503 so the client reconnects and catches up by ``after_seq`` (docs/PROTOCOL.md §9),
        which also brings chats it joined or left in the meantime."""
        if self.user_id is not None:
            await self._send({"type": "error", "code": "resync_required", "detail": "Live events may have been lost; reconnect and catch up.", "ref": None})
            await self.close(code=CLOSE_RESYNC)

    async def _send(self, payload: dict) -> None:
        await self.send(text_data=events.encode(payload))

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
        """Hand the client frame to this socket's worker; the dispatch loop stays free for events.

        Channels' dispatch loop takes at most one channel-layer message per client frame it
        handles. While a client sent continuously and each frame waited on the database, the
        events for its socket piled up without bound -- thousands, minutes late, a resync
        request among them (found by tests/faults). Frames are still handled one at a time, in
        order, by :meth:`_work_frames`. The queue is bounded: a client that sends faster than its
        frames are handled waits here, and then in daphne's queue (runtime/serve.py stops
        reading its socket), as before.
        """
        if self.user_id is None or self._frames_done:
            return  # not authenticated (being closed with 4401), or gone
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
            self._frame_type = "invalid"  # receive() names it once the frame parsed into a known type
            await super().websocket_receive(message)  # -> receive(), which never raises
            metrics.SOCKET_FRAME_SECONDS.labels(type=self._frame_type).observe(time.perf_counter() - arrived)

    async def send(self, text_data=None, bytes_data=None, close=False):
        """Drop frames for a socket that is closing or gone instead of crashing the consumer.

        Events already queued for this socket keep arriving until Channels delivers the
        disconnect, and daphne raises on a send to a closed connection ("Attempt to send on
        a closed protocol"), which killed the consumer mid-queue (found by tests/faults).
        """
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


class UnknownPathConsumer(AsyncWebsocketConsumer):
    """Sockets opened on a path we do not serve: accepted, then closed with 4404."""

    async def connect(self):
        await self.accept()
        await self.close(code=4404)
