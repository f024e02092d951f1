"""Production entry point on uvicorn, with the protections ``runtime.serve`` gives daphne.

    python -m runtime.uvserve -b 0.0.0.0 -p 8000 [--max-send-buffer N] [-v 0]

serves ``messenger.asgi:application`` with uvicorn (httptools for HTTP/1.1, the sans-I/O
``websockets`` protocol for WebSocket, uvloop when installed). It costs about a quarter less CPU
per message than daphne (docs/PERFORMANCE.md, "The ASGI server"): no Twisted reactor on top of
asyncio, no autobahn frame parser in Python. ``runtime.serve`` (daphne) stays supported and is
tested with the same suite; ``docs/ARCHITECTURE.md`` says which one the image runs.

The same protections, each covered by the tests in ``tests/security`` for both servers:

* **A client that stops reading is dropped.** asyncio calls a protocol's ``pause_writing()`` when
  its transport holds more than the high-water mark of unsent bytes; uvicorn then makes every
  later ``send`` of that socket *wait* until it drains -- and one stalled phone in a busy group
  would hold up the process's fan-out task for every socket behind it. Here the high-water mark
  is ``--max-send-buffer`` (env ``WS_MAX_SEND_BUFFER``, default 1 MiB) and crossing it aborts the
  TCP connection and frees the buffer, as ``runtime.serve`` does. The client reconnects and
  catches up with ``after_seq``.
* **A client that sends faster than its frames are handled is slowed down, not queued for.** The
  protocol stops reading the socket after each received message until the application has
  taken it (upstream behaviour), so TCP flow control pushes back on the client.
* **64 KiB frame cap** (``--websocket-max-message-size``, the protocol's limit; close code 1009).
* **The logs never show a query string.** uvicorn writes the path *with* its query string in its
  access log and in its "WebSocket ... [accepted]" lines, so ``?token=<jwt>`` would land in the
  logs; :class:`QuerylessLogFilter` cuts it from both loggers.
* **A header block over 16 KiB gets a 431 and a body over the upload limit a 413**, each with the
  JSON error body ``runtime.serve`` sends (llhttp has no header limit at all; uvicorn would read
  any body the client sends).
* **Bad input is one warning line**: a text frame that is not UTF-8 is closed with 1007 by
  uvicorn, which logs it with a traceback; here it is a warning without one.
* **A compact input queue per WebSocket** (``runtime/inbox.py``) instead of an ``asyncio.Queue``.
* **The garbage collector is settled before serving** (``runtime/gctune.py``), and on SIGTERM the
  channel layer leaves the presence map before the process exits.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from runtime.inbox import Inbox
from runtime.serve import (
    BODY_TOO_LARGE,
    DEFAULT_MAX_SEND_BUFFER,
    HEADERS_TOO_LARGE,
    MAX_FRAME_BYTES,
    MAX_HEADER_BYTES,
    max_body_bytes,
)

logger = logging.getLogger(__name__)

APPLICATION = "messenger.asgi:application"
# What uvicorn logs, with a traceback, when a text frame is not UTF-8 (it closes with 1007).
INVALID_UTF8 = "Invalid UTF-8 sequence received from client."


class _AlwaysWritable:
    """Stands in for uvicorn's per-socket ``writable`` Event: a send never waits here, because
    crossing the high-water mark drops the client (:meth:`BoundedWebSocketProtocol.pause_writing`)
    rather than pausing it. An ``asyncio.Event`` and its waiter deque are ~0.7 KiB per socket."""

    __slots__ = ()

    async def wait(self) -> bool:
        return True

    def set(self) -> None:
        pass

    def clear(self) -> None:
        pass

    def is_set(self) -> bool:
        return True


_ALWAYS_WRITABLE = _AlwaysWritable()


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol that drops a client instead of waiting for it to read."""

    max_send_buffer = DEFAULT_MAX_SEND_BUFFER

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # the methods uvicorn uses (put_nowait, get, empty), ~3 KiB lighter
        self.writable = _ALWAYS_WRITABLE  # one shared object instead of an Event per socket

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        # asyncio calls pause_writing() once more than this is waiting to be sent.
        transport.set_write_buffer_limits(high=self.max_send_buffer)

    def pause_writing(self) -> None:
        pending = self.transport.get_write_buffer_size()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        logger.warning(
            "dropping slow WebSocket client %s: %d bytes unsent (limit %d)", client, pending, self.max_send_buffer
        )
        self.transport.abort()  # connection_lost() follows: the app gets websocket.disconnect


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with a 16 KiB header block and the upload limit on bodies."""

    _header_bytes = 0
    _body_bytes = 0
    _refused = False

    def on_message_begin(self) -> None:
        self._header_bytes = self._body_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_header(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        # httptools' parser does not expose the length; the header is at hand.
        length = next((int(v) for n, v in self.headers if n == b"content-length" and v.isdigit()), None)
        if length is not None and length > max_body_bytes():
            self._refuse(BODY_TOO_LARGE)
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._body_bytes += len(body)
        if self._body_bytes > max_body_bytes():
            self._refuse(BODY_TOO_LARGE)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES and not self._refused:
            self._refuse(HEADERS_TOO_LARGE)

    def _refuse(self, answer: bytes) -> None:
        # Nothing more is read from this connection; the parser's later callbacks are ignored.
        self._refused = True
        self.transport.write(answer)
        self.transport.close()


class LayerClosingServer(uvicorn.Server):
    """uvicorn's server that, once its connections are closed (SIGTERM), has the channel layer
    leave Redis' presence map at once instead of lingering until its heartbeat expires
    (runtime/layers.py; ``runtime.serve`` does the same before the reactor stops)."""

    async def shutdown(self, sockets=None) -> None:
        await super().shutdown(sockets=sockets)
        from channels.layers import get_channel_layer

        close = getattr(get_channel_layer(), "close", None)
        if close is not None:
            with contextlib.suppress(Exception):  # Redis away: the entries expire with the TTL
                await close()


class QuerylessLogFilter(logging.Filter):
    """Cut the query string from every path-like argument of uvicorn's log records; log a client's
    invalid UTF-8 as one warning line, not as an error with a traceback (it is bad input, and a
    client could otherwise fill the log with tracebacks)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == INVALID_UTF8 and record.exc_info:
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "?" in a for a in record.args):
            record.args = tuple(
                a.split("?", 1)[0] if isinstance(a, str) and a.startswith("/") else a for a in record.args
            )
        return True


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime.uvserve", description=__doc__.splitlines()[0])
    p.add_argument("application", nargs="?", default=APPLICATION)
    p.add_argument("-b", "--bind", default="127.0.0.1", help="address to listen on")
    p.add_argument("-p", "--port", type=int, default=8000)
    p.add_argument(
        "--max-send-buffer",
        type=int,
        default=int(os.environ.get("WS_MAX_SEND_BUFFER") or DEFAULT_MAX_SEND_BUFFER),
        help="Bytes a WebSocket may leave unread before it is dropped (env WS_MAX_SEND_BUFFER; default 1 MiB).",
    )
    p.add_argument("--websocket-max-message-size", type=int, default=MAX_FRAME_BYTES)
    p.add_argument("--ping-interval", type=float, default=20.0, help="seconds between WebSocket keepalive pings")
    p.add_argument("--ping-timeout", type=float, default=30.0)
    p.add_argument("-v", "--verbosity", type=int, default=1, help="0: no access log (the app logs requests itself)")
    p.add_argument(
        "--proxy-headers", action="store_true", help="trust X-Forwarded-For/Proto from --forwarded-allow-ips"
    )
    p.add_argument("--forwarded-allow-ips", default="127.0.0.1")
    return p


def main(argv: list[str] | None = None) -> None:
    options = parser().parse_args(sys.argv[1:] if argv is None else argv)
    protocol = type(
        "BoundedWebSocketProtocol", (BoundedWebSocketProtocol,), {"max_send_buffer": options.max_send_buffer}
    )
    config = uvicorn.Config(
        options.application,
        host=options.bind,
        port=options.port,
        http=BoundedHttpProtocol,
        ws=protocol,
        ws_max_size=options.websocket_max_message_size,
        ws_ping_interval=options.ping_interval,
        ws_ping_timeout=options.ping_timeout,
        ws_per_message_deflate=False,
        lifespan="off",  # Channels' router has no lifespan protocol
        access_log=options.verbosity > 0,
        proxy_headers=options.proxy_headers,
        forwarded_allow_ips=options.forwarded_allow_ips,
        server_header=False,
    )
    for name in ("uvicorn.access", "uvicorn.error"):  # after Config(), which configures logging
        logging.getLogger(name).addFilter(QuerylessLogFilter())
    config.load()  # imports the application
    # The application is imported by now: freeze it and set the GC thresholds (gctune.py).
    from runtime import gctune

    gctune.settle()
    LayerClosingServer(config).run()


if __name__ == "__main__":
    main()
