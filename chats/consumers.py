"""The WebSocket endpoint ``/ws/``: one socket per device, fanned out per user.

:class:`ChatConsumer` holds the handler table and the handlers. A frame is parsed and
checked by ``chats.frames`` (pure); the handler runs the one service of its use case from the
event loop (``services.send_message.run_async(...)`` and so on, the same functions REST
calls), answers this socket, then sends the events the service emitted. The socket plumbing
-- frame worker, closed-send guard, direct delivery -- is ``runtime.consumer.SocketConsumer``.

Whatever a client sends, the answer is at worst an ``error`` frame and the socket stays
open. Clients never choose a channel-layer message type: layer messages reach only
:meth:`ChatConsumer.event_deliver`, :meth:`session_revoke` and :meth:`layer_resync`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import DatabaseError

from accounts.auth import authenticate
from accounts.tokens import SID_CLAIM
from ops import metrics
from ops.errors import UNAVAILABLE_ERRORS, MessengerError, ServiceUnavailable
from ops.logs import request_id_from
from runtime import realtime
from runtime.consumer import SocketConsumer

from . import events, frames, services
from .exceptions import InvalidInput, RateLimited
from .frames import Frame, FrameError

logger = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_BIG = 1009
# The channel layer lost Redis, so events may be lost: reconnect and catch up. (Not 1012:
# daphne's websocket library only lets a server send 1000 or 3000-4999.)
CLOSE_RESYNC = 4503
# A connect limit (per user or per client address) refused the handshake; retry after retry_after.
CLOSE_RATE_LIMITED = 4429
SUBPROTOCOL = "messenger.v1"


class ChatConsumer(SocketConsumer):
    user_id: int | None = None
    # The watchers' group of the channel this socket watches (``channel.watch``), if it joined one.
    watching: str | None = None
    # perf_counter() at accept while counted in messenger_sockets_open; None otherwise.
    _opened_at: float | None = None

    # --- lifecycle ------------------------------------------------------------------

    async def connect(self):
        user = self.scope.get("user")
        offered = self.scope.get("subprotocols") or []
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered else None
        headers = dict(self.scope.get("headers") or [])
        self.request_id = request_id_from(headers.get(b"x-request-id", b"").decode("latin-1"))
        retry_after = self.scope.get("connect_retry_after")
        if retry_after is not None:
            logger.info("socket.rejected", extra={"reason": "rate_limited", "request_id": self.request_id})
            metrics.RATE_LIMITED.labels(limit="connect").inc()
            await self.accept(subprotocol=subprotocol)
            detail = "Too many connects; retry later."
            await self._error(RateLimited(detail, retry_after=retry_after), None)
            await self.close(code=CLOSE_RATE_LIMITED)
            return
        if user is None or not user.is_authenticated:
            logger.info("socket.rejected", extra={"reason": "unauthenticated", "request_id": self.request_id})
            # Select the offered subprotocol here too: a browser fails a handshake whose offered
            # subprotocols were all ignored (1006), and would never see the 4401.
            await self.accept(subprotocol=subprotocol)
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.user_id = user.id
        self.sid = self.scope.get("token_sid")
        self.group = realtime.user_group(user.id)
        self._expiry_handle = None
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.register_receiver()
        await self.accept(subprotocol=subprotocol)
        self.accepting_frames = True
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
                extra={
                    "user_id": self.user_id,
                    "code": code,
                    "duration_ms": duration_ms,
                    "request_id": self.request_id,
                },
            )
        if self.user_id is None:
            return
        if self._expiry_handle is not None:
            self._expiry_handle.cancel()
        try:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self._unwatch()
        except Exception:
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
        await self._error(FrameError("token_expired", "Access token expired; reconnect with a fresh one."), None)
        await self.close(code=CLOSE_UNAUTHORIZED)

    # --- inbound frames ---------------------------------------------------------------

    async def handle_frame(self, text_data: str | None, bytes_data: bytes | None) -> None:
        """Parse, dispatch and answer one client frame; every failure becomes an ``error`` frame."""
        ref = None
        try:
            try:
                frame = frames.parse(text_data)
            except frames.FrameTooBig:
                await self.close(code=CLOSE_TOO_BIG)
                return
            ref = frame.ref
            handler = self.HANDLERS.get(frame.type)
            if handler is None:
                raise frames.unknown_type(frame)
            self.frame_type = frame.type
            await handler(self, frame)
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
        await self._send(frames.error(exc, ref))

    async def _on_send(self, frame: Frame):
        chat_id, client_id = frame.id("chat_id"), frame.client_id()
        result, emitted = await services.send_message.run_async(
            user_id=self.user_id,
            chat_id=chat_id,
            client_id=client_id,
            text=frame.data.get("text"),  # checked by the service: a caption may be empty
            reply_to_seq=frame.data.get("reply_to_seq"),
            attachment_ids=frame.data.get("attachment_ids"),
            skip_channel=self.channel_name,
        )
        # The ack first: the sending device learns its message is stored before anyone else hears of it.
        await self._send(
            {
                "type": "message.ack",
                "client_id": client_id,
                "duplicate": result.duplicate,
                "message": result.payload(),
                "ref": frame.ref,
            }
        )
        await realtime.send_events(emitted)

    async def _on_read(self, frame: Frame):
        chat_id, up_to_seq = frame.id("chat_id"), frame.seq("up_to_seq")
        result, emitted = await services.mark_read.run_async(
            user_id=self.user_id, chat_id=chat_id, up_to_seq=up_to_seq, skip_channel=self.channel_name
        )
        # The reply first: it carries the current read_all_seq, and need not wait for the publish.
        reply = events.chat_read(chat_id=result.chat_id, user_id=result.user_id, last_read_seq=result.last_read_seq)
        await self._send({**reply, "read_all_seq": result.read_all_seq, "ref": frame.ref})
        await realtime.send_events(emitted)

    async def _on_typing(self, frame: Frame):
        _, emitted = await services.notify_typing.run_async(user_id=self.user_id, chat_id=frame.id("chat_id"))
        await realtime.send_events(emitted)

    # The changes of a message (issue 12): the service checks every field; the caller gets the
    # event the others get, with ``changed`` and its ``ref``, before they hear of it.

    async def _reply_then_send(self, frame: Frame, reply: dict, emitted) -> None:
        await self._send({**reply, "ref": frame.ref})
        await realtime.send_events(emitted)

    async def _on_edit(self, frame: Frame):
        result, emitted = await services.edit_message.run_async(
            user_id=self.user_id,
            chat_id=frame.id("chat_id"),
            seq=frame.data.get("seq"),
            text=frame.data.get("text"),
            skip_channel=self.channel_name,
        )
        reply = {"type": "message.edited", "message": result.payload(), "changed": result.changed}
        await self._reply_then_send(frame, reply, emitted)

    async def _on_delete(self, frame: Frame):
        result, emitted = await services.delete_messages.run_async(
            user_id=self.user_id,
            chat_id=frame.id("chat_id"),
            seqs=frame.data.get("seqs"),
            skip_channel=self.channel_name,
        )
        await self._reply_then_send(frame, {"type": "message.deleted", **result.payload()}, emitted)

    async def _on_forward(self, frame: Frame):
        result, emitted = await services.forward_messages.run_async(
            user_id=self.user_id,
            from_chat_id=frame.id("from_chat_id"),
            seqs=frame.data.get("seqs"),
            to_chat_id=frame.id("to_chat_id"),
            client_ids=frame.data.get("client_ids"),
            skip_channel=self.channel_name,
        )
        await self._reply_then_send(frame, {"type": "message.forwarded", **result.payload()}, emitted)

    async def _react(self, frame: Frame, *, add: bool):
        result, emitted = await services.set_reaction.run_async(
            user_id=self.user_id,
            chat_id=frame.id("chat_id"),
            seq=frame.data.get("seq"),
            emoji=frame.data.get("emoji"),
            add=add,
            skip_channel=self.channel_name,
        )
        await self._reply_then_send(frame, {"type": "message.reactions", **result.payload()}, emitted)

    async def _on_reaction_add(self, frame: Frame):
        await self._react(frame, add=True)

    async def _on_reaction_remove(self, frame: Frame):
        await self._react(frame, add=False)

    async def _on_pin(self, frame: Frame):
        result, emitted = await services.set_pin.run_async(
            user_id=self.user_id,
            chat_id=frame.id("chat_id"),
            seq=frame.data.get("seq"),
            pinned=frame.data.get("pinned"),
            skip_channel=self.channel_name,
        )
        await self._reply_then_send(frame, {"type": "chat.pins", **result.payload()}, emitted)

    async def _on_watch(self, frame: Frame):
        """Watch one channel's live events (a reader's open channel); another replaces it, null stops."""
        chat_id = None if frame.data.get("chat_id") is None else frame.id("chat_id")
        join = False
        if chat_id is not None:
            join, _ = await services.watch_access.run_async(user_id=self.user_id, chat_id=chat_id)
        await self._unwatch()
        if join:
            (self.watching,) = events.watchers(chat_id)
            await self.channel_layer.group_add(self.watching, self.channel_name)
        await self._send({"type": "channel.watching", "chat_id": chat_id, "ref": frame.ref})

    async def _unwatch(self) -> None:
        if self.watching is not None:
            group, self.watching = self.watching, None
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _on_ping(self, frame: Frame):
        await self._send({"type": "pong", "ref": frame.ref})

    async def _on_auth_refresh(self, frame: Frame):
        raw = frame.data.get("token")
        if not isinstance(raw, str) or not raw:
            raise InvalidInput({"token": ["An access token is required."]})
        (user, token), _ = await authenticate.run_async(raw)
        if user is None or user.id != self.user_id:
            raise FrameError("token_not_valid", "The token is invalid, expired or for another user.")
        self.sid = token.get(SID_CLAIM)
        self._schedule_expiry(token.get("exp"))
        await self._send({"type": "auth.refreshed", "exp": token.get("exp"), "ref": frame.ref})

    HANDLERS = {
        "message.send": _on_send,
        "message.read": _on_read,
        "typing": _on_typing,
        "message.edit": _on_edit,
        "message.delete": _on_delete,
        "message.forward": _on_forward,
        "reaction.add": _on_reaction_add,
        "reaction.remove": _on_reaction_remove,
        "message.pin": _on_pin,
        "channel.watch": _on_watch,
        "ping": _on_ping,
        "auth.refresh": _on_auth_refresh,
    }

    # --- channel-layer events -------------------------------------------------------------

    async def event_deliver(self, message: dict):
        """A committed event for this user; the socket that caused it is skipped."""
        if message.get("skip") == self.channel_name:
            return
        await self.send(text_data=message["text"])
        committed_at = message.get(realtime.COMMITTED_AT)
        if committed_at is not None:
            metrics.FANOUT_LATENCY.observe(max(0.0, time.time() - committed_at))

    async def session_revoke(self, message: dict):
        """Logout of this socket's session (sid) or deactivation of the user (sid None)."""
        sid = message.get("sid")
        if sid is None or sid == self.sid:
            await self._error(FrameError("session_revoked", "Logged out."), None)
            await self.close(code=CLOSE_UNAUTHORIZED)

    async def layer_resync(self, message: dict):
        """The layer re-subscribed after losing Redis (runtime/layers.py): events published
        meanwhile are gone, and a quiet chat would show no seq gap to reveal them. Close with
        4503 so the client reconnects and catches up by ``after_seq`` (docs/PROTOCOL.md §9),
        which also brings chats it joined or left in the meantime."""
        if self.user_id is not None:
            await self._error(
                FrameError("resync_required", "Live events may have been lost; reconnect and catch up."), None
            )
            await self.close(code=CLOSE_RESYNC)

    async def _send(self, payload: dict) -> None:
        await self.send(text_data=realtime.encode(payload))


class UnknownPathConsumer(AsyncWebsocketConsumer):
    """Sockets opened on a path we do not serve: accepted, then closed with 4404."""

    async def connect(self):
        await self.accept()
        await self.close(code=4404)
