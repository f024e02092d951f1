"""Production entry point: daphne with a bounded send buffer per socket and a token-safe access log.

    python -m runtime.serve -b 0.0.0.0 -p 8000 [any other daphne option]

runs ``daphne messenger.asgi:application`` (which keeps working as it is) with these changes:

* **A client that stops reading is dropped.** Twisted queues whatever a protocol writes, without
  limit, while the peer does not read, so one stalled phone in a busy group would grow the
  server's memory for as long as it stays connected. daphne's keepalive ping does not bound it
  either: it is only sent after ``--ping-interval`` seconds *without an incoming frame*, so a
  client that keeps sending but never reads is never pinged. Here every outgoing frame first
  looks at the socket's user-space send buffer; above ``--max-send-buffer`` bytes (env
  ``WS_MAX_SEND_BUFFER``, default 1 MiB) the TCP connection is aborted and its buffer freed.
  The client reconnects and catches up with ``after_seq``, as after any disconnect.
* **The access log never shows a query string.** daphne prints HTTP request URIs whole, so a
  ``?token=<jwt>`` on a plain HTTP request (a client whose upgrade failed, a misdirected
  REST call) would be written to the log. Paths are logged without their query here.
  (WebSocket lines already carry the path only.)
* **A client that sends faster than its frames are handled is slowed down, not queued for.**
  daphne puts every received frame on an unbounded queue for the application; a client blasting
  64 KiB frames grows the server by about what it sends. Here a socket stops being read while
  32 of its frames wait (``MAX_INBOUND_FRAMES``), so TCP flow control pushes back on the client.
* **64 KiB frame cap by default** (``--websocket-max-message-size`` / ``--websocket-max-frame-size``),
  the protocol's limit, instead of daphne's 1 MiB.
* **A compact input queue per connection** (``runtime/inbox.py``) instead of an ``asyncio.Queue``,
  ~3 KiB less per idle socket.
* **A request whose header block is over 16 KiB gets a 431 with the JSON error body**
  (``{"code": "headers_too_large", ...}``). Twisted refuses it too, but with a bare
  ``400 Bad Request`` when the headers add up to more than ``totalHeadersSize`` and with no
  answer at all (the connection just closes) when one line is longer than ``MAX_LENGTH``.
* **The garbage collector is settled before serving** (``runtime/gctune.py``): what is loaded
  at startup is frozen out of collections, and full collections run 10 times less often.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from functools import partial

from daphne.access import AccessLogGenerator
from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.web.http import HTTPChannel, Request, _GenericHTTPChannelProtocol

# Imported after daphne.server, which installs the asyncio reactor.
from twisted.internet import reactor  # isort: skip

from runtime.inbox import HttpInbox, Inbox

logger = logging.getLogger(__name__)

APPLICATION = "messenger.asgi:application"
DEFAULT_MAX_SEND_BUFFER = 1024 * 1024
MAX_FRAME_BYTES = 64 * 1024
# Received frames that may wait for the application before the socket stops being read.
MAX_INBOUND_FRAMES = 32
RESUME_POLL_SECONDS = 0.01
CLOSE_CODE_SLOW_CLIENT = 1008


def buffered_bytes(transport) -> int:
    """Bytes a Twisted TCP transport has accepted from us but not yet handed to the kernel."""
    data = getattr(transport, "dataBuffer", b"")
    return len(data) - getattr(transport, "offset", 0) + getattr(transport, "_tempDataLen", 0)


class BoundedWebSocketProtocol(WebSocketProtocol):
    """daphne's WebSocket protocol with both directions bounded.

    Outgoing: above ``max_send_buffer`` unsent bytes the connection is dropped. Incoming: when
    ``max_inbound_frames`` received frames wait for the application, the socket stops being
    read until half of them are handled, so TCP flow control slows the sender down instead of
    daphne queueing whatever arrives.
    """

    max_send_buffer = DEFAULT_MAX_SEND_BUFFER
    max_inbound_frames = MAX_INBOUND_FRAMES
    _reading_paused = False

    def onMessage(self, payload, isBinary):
        super().onMessage(payload, isBinary)
        queue = getattr(self, "application_queue", None)
        if not self._reading_paused and queue is not None and queue.qsize() >= self.max_inbound_frames:
            self._reading_paused = True
            self.transport.pauseProducing()
            reactor.callLater(RESUME_POLL_SECONDS, self._resume_when_drained)

    def _resume_when_drained(self) -> None:
        if self.state == self.STATE_CLOSED or not getattr(self.transport, "connected", False):
            return
        if self.application_queue.qsize() > self.max_inbound_frames // 2:
            reactor.callLater(RESUME_POLL_SECONDS, self._resume_when_drained)
            return
        self._reading_paused = False
        self.transport.resumeProducing()

    def serverSend(self, content, binary=False):
        if self.state == self.STATE_OPEN and self.transport is not None:
            pending = buffered_bytes(self.transport)
            if pending > self.max_send_buffer:
                logger.warning(
                    "dropping slow WebSocket client %s: %d bytes unsent (limit %d)",
                    ":".join(map(str, self.client_addr)) if self.client_addr else "-",
                    pending,
                    self.max_send_buffer,
                )
                self.wasClean = False
                self.wasNotCleanReason = "send buffer limit exceeded"
                self.dropConnection(abort=True)
                return
        super().serverSend(content, binary)


MAX_HEADER_BYTES = 16 * 1024
_HEADERS_TOO_LARGE_BODY = b'{"code": "headers_too_large", "detail": "The request header block is over 16 KiB."}'
HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(_HEADERS_TOO_LARGE_BODY)).encode() + b"\r\n"
    b"Connection: close\r\n\r\n" + _HEADERS_TOO_LARGE_BODY
)


_BODY_TOO_LARGE_BODY = b'{"code": "too_large", "detail": "The request body is over the upload limit."}'
BODY_TOO_LARGE = (
    b"HTTP/1.1 413 Content Too Large\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(_BODY_TOO_LARGE_BODY)).encode() + b"\r\n"
    b"Connection: close\r\n\r\n" + _BODY_TOO_LARGE_BODY
)
# Multipart framing around the largest file (boundaries, part headers, other fields).
_BODY_SLACK = 1024 * 1024


def max_body_bytes() -> int:
    """The largest request body read at all: the largest upload plus its framing. Twisted would
    otherwise take any body whole (to a temporary file) before the app could refuse it."""
    from django.conf import settings

    return getattr(settings, "MAX_UPLOAD_BYTES", 50 * 1024 * 1024) + _BODY_SLACK


class HeaderBoundHTTPChannel(HTTPChannel):
    """Twisted's HTTP channel answering 431 (JSON) to a header block over ``MAX_HEADER_BYTES``,
    and 413 (JSON) to a body over :func:`max_body_bytes` -- at once when ``Content-Length`` says
    so, else when that many bytes arrived (chunked bodies).

    Upstream checks the same two header limits (each line ``MAX_LENGTH``, all of them
    ``totalHeadersSize``) but answers a bare 400, or nothing for a single long line; it has no
    body limit.
    """

    MAX_LENGTH = MAX_HEADER_BYTES
    totalHeadersSize = MAX_HEADER_BYTES
    _body_bytes = 0
    _make_request = None

    # daphne's HTTPFactory sets its WebRequest as the request factory. Each request is made with
    # Twisted's ``parsePOSTFormSubmission=False``: otherwise Twisted parses every multipart body
    # itself, whole, with the stdlib email parser, into ``request.args`` -- which daphne never
    # reads -- before the app sees it: a 50 MiB upload took ~650 MiB of memory that way.
    @property
    def requestFactory(self):
        if self._make_request is None:  # before daphne's factory sets its own
            self._make_request = partial(Request, parsePOSTFormSubmission=False)
        return self._make_request

    @requestFactory.setter
    def requestFactory(self, factory) -> None:
        self._make_request = partial(factory, parsePOSTFormSubmission=False)

    def allHeadersReceived(self):
        self._body_bytes = 0
        if self.length is not None and self.length > max_body_bytes():
            self._refuse(BODY_TOO_LARGE)
            return
        super().allHeadersReceived()

    def rawDataReceived(self, data):
        self._body_bytes += len(data)
        if self._body_bytes > max_body_bytes() + _BODY_SLACK:  # chunk framing included
            self._refuse(BODY_TOO_LARGE)
            return
        super().rawDataReceived(data)

    def lineReceived(self, line):
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._refuse_headers()
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line):
        self._refuse_headers()

    def _refuse_headers(self) -> None:
        self._refuse(HEADERS_TOO_LARGE)

    def _refuse(self, answer: bytes) -> None:
        # Nothing more is read from this connection.
        self.dataReceived = self.lineReceived = self.rawDataReceived = lambda *args: None
        self.transport.write(answer)
        self.loseConnection()


def header_bound_http_protocol() -> _GenericHTTPChannelProtocol:
    """What Twisted's ``HTTPFactory.protocol`` builds, around :class:`HeaderBoundHTTPChannel`."""
    return _GenericHTTPChannelProtocol(HeaderBoundHTTPChannel())


class BoundedServer(Server):
    """daphne's Server: :class:`BoundedWebSocketProtocol` for every WebSocket, queryless access log,
    :class:`HeaderBoundHTTPChannel` for every HTTP connection."""

    max_send_buffer = DEFAULT_MAX_SEND_BUFFER

    def __init__(self, *args, action_logger=None, **kwargs):
        if isinstance(action_logger, AccessLogGenerator) and not isinstance(action_logger, QuerylessAccessLog):
            action_logger = QuerylessAccessLog(action_logger.stream)
        super().__init__(*args, action_logger=action_logger, **kwargs)

    def create_application(self, protocol, scope):
        """daphne's ``create_application`` with a compact input queue (runtime/inbox.py)."""
        assert "application_instance" not in self.connections[protocol]
        # An HTTP request's body waits on disk, not in memory, until the app reads it (inbox.py).
        input_queue = HttpInbox() if scope.get("type") == "http" else Inbox()
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope, receive=input_queue.get, send=partial(self.handle_reply, protocol)
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(
            application_instance, loop=asyncio.get_event_loop()
        )
        return input_queue

    def run(self):
        # The application is imported by now: freeze it and set the GC thresholds (gctune.py).
        from runtime import gctune

        gctune.settle()
        reactor.addSystemEventTrigger("before", "shutdown", _close_channel_layer)
        super().run()

    # Server.run() creates ``self.ws_factory``; the setter swaps in our protocol class
    # without copying run().
    @property
    def ws_factory(self):
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory) -> None:
        factory.protocol = type(
            "BoundedWebSocketProtocol", (BoundedWebSocketProtocol,), {"max_send_buffer": self.max_send_buffer}
        )
        self._ws_factory = factory

    @property
    def http_factory(self):
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory) -> None:
        factory.protocol = header_bound_http_protocol
        self._http_factory = factory


def _close_channel_layer():
    """Before the reactor stops (SIGTERM): the channel layer leaves Redis' presence map at once
    instead of lingering until its heartbeat expires (runtime/layers.py); Twisted waits for it."""
    from channels.layers import get_channel_layer
    from twisted.internet.defer import Deferred

    close = getattr(get_channel_layer(), "close", None)
    if close is None:
        return None
    return Deferred.fromFuture(asyncio.ensure_future(close(), loop=asyncio.get_event_loop()))


class QuerylessAccessLog(AccessLogGenerator):
    """daphne's access log with query strings cut from every logged path."""

    def __call__(self, protocol, action, details):
        path = details.get("path")
        if isinstance(path, str) and "?" in path:
            details = {**details, "path": path.split("?", 1)[0]}
        super().__call__(protocol, action, details)


class ServeCommand(CommandLineInterface):
    description = __doc__.splitlines()[0]

    def __init__(self):
        super().__init__()
        for action in self.parser._actions:
            if action.dest == "application":
                action.nargs = "?"
                action.default = APPLICATION
            elif action.dest in ("websocket_max_message_size", "websocket_max_frame_size"):
                action.default = MAX_FRAME_BYTES
        self.parser.add_argument(
            "--max-send-buffer",
            type=int,
            default=int(os.environ.get("WS_MAX_SEND_BUFFER") or DEFAULT_MAX_SEND_BUFFER),
            help="Bytes a WebSocket may leave unread before it is dropped (env WS_MAX_SEND_BUFFER; default 1 MiB).",
        )

    def run(self, args):
        options, _ = self.parser.parse_known_args(args)
        self.server_class = type("Server", (BoundedServer,), {"max_send_buffer": options.max_send_buffer})
        return super().run(args)


def main(argv: list[str] | None = None) -> None:
    ServeCommand().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
