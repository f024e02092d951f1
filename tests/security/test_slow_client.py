"""A client that stops reading cannot grow the server's memory: its socket is dropped.

A real server (``python -m runtime.serve``, 1 MiB send-buffer cap) and real sockets. Bob opens
several sockets by hand, with a tiny kernel receive buffer, and never reads from them; Carol
reads normally; Alice floods the group with 16 KiB messages (4096 four-byte characters), about
64 MiB in all towards Bob's stalled sockets. Afterwards:

* every stalled socket has been closed by the server (the client reaches EOF or a reset);
* the server's resident memory grew by far less than what was sent to them (without the cap
  Twisted keeps all of it queued; see the figures in docs/RELIABILITY.md);
* Carol's healthy socket got every message, and the server still serves Bob, who catches up.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import ExitStack

import pytest
from websockets.sync.client import connect

from .live import ENTRY_POINTS, masked_text_frame, raw_websocket

# Timeouts bound hangs only; nothing here measures speed.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

STALLED_SOCKETS = 16
MESSAGES = 512
SEND_BUFFER_CAP = 256 * 1024
TEXT = "\U0001f600" * 4096  # 4096 characters, 16 KiB of UTF-8: the largest message there is
FRAME_BYTES = len(json.dumps({"type": "message.new", "message": {"text": TEXT}}, ensure_ascii=False).encode())
MiB = 1024 * 1024


def recv_json(connection) -> dict:
    return json.loads(connection.recv(timeout=30))


def recv_until(connection, type_: str) -> dict:
    while True:
        frame = recv_json(connection)
        if frame.get("type") == type_:
            return frame


def drain_until_closed(sock: socket.socket) -> bool:
    """Read what is left; True when the server has closed the connection (EOF or reset)."""
    sock.settimeout(10)
    try:
        while True:
            if not sock.recv(1 << 20):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


class Reader(threading.Thread):
    """Carol's healthy socket: reads continuously and counts ``message.new`` frames."""

    def __init__(self, connection):
        super().__init__(daemon=True)
        self.connection = connection
        self.seqs: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while len(self.seqs) < MESSAGES:
                frame = recv_json(self.connection)
                if frame.get("type") == "message.new" and frame["message"]["sender_id"] is not None:
                    self.seqs.append(frame["message"]["seq"])
        except BaseException as exc:
            self.error = exc


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_stalled_sockets_are_dropped_and_memory_stays_bounded(start_server, entry):
    # A 256 KiB cap (production default: 1 MiB) keeps the bound far below what is sent.
    server = start_server(
        f"slow-{entry}", serve=entry, args=("--max-send-buffer", str(SEND_BUFFER_CAP)), SEND_RATE_LIMIT="0"
    )
    alice, bob, carol = (server.register() for _ in range(3))
    tokens = {name: server.login(user)["access"] for name, user in (("alice", alice), ("bob", bob), ("carol", carol))}
    status, chat = server.http(
        "POST",
        "/api/chats",
        {"kind": "group", "title": "flood", "member_ids": [bob["id"], carol["id"]]},
        token=tokens["alice"],
    )
    assert status == 201, chat

    with ExitStack() as stack:
        sender = stack.enter_context(
            connect(server.ws_url(tokens["alice"]), open_timeout=10, proxy=None, max_size=None)
        )
        assert recv_json(sender)["type"] == "session.ready"

        def send(n: int, text: str) -> dict:
            frame = {"type": "message.send", "chat_id": chat["id"], "client_id": f"m-{n}", "text": text}
            sender.send(json.dumps(frame, ensure_ascii=False))
            return recv_until(sender, "message.ack")

        # Warm up: the code paths, caches and allocator reach their working size first.
        for n in range(64):
            send(-1 - n, TEXT)

        stalled = [raw_websocket(server.port, tokens["bob"], rcvbuf=4096) for _ in range(STALLED_SOCKETS)]
        for sock in stalled:
            stack.callback(sock.close)
        healthy = stack.enter_context(
            connect(server.ws_url(tokens["carol"]), open_timeout=10, proxy=None, max_size=None)
        )
        assert recv_json(healthy)["type"] == "session.ready"
        reader = Reader(healthy)
        reader.start()
        baseline = server.rss_bytes()

        started = time.monotonic()
        for n in range(MESSAGES):
            send(n, TEXT)
        flood_seconds = time.monotonic() - started
        reader.join(timeout=120)
        peak = server.rss_bytes()

        assert reader.error is None, reader.error
        assert len(reader.seqs) == MESSAGES and reader.seqs == sorted(reader.seqs)
        sent_to_stalled = MESSAGES * FRAME_BYTES * STALLED_SOCKETS
        growth = peak - baseline
        print(
            f"\nslow-client: {sent_to_stalled / MiB:.0f} MiB sent towards {STALLED_SOCKETS} stalled sockets; "
            f"server RSS {baseline / MiB:.1f} -> {peak / MiB:.1f} MiB (+{growth / MiB:.1f} MiB); flood took {flood_seconds:.1f} s"
        )
        # Without the cap the growth is about the whole amount sent (every byte queued in Twisted).
        assert growth < sent_to_stalled / 4, f"RSS grew {growth / MiB:.1f} MiB"

        closed = [drain_until_closed(sock) for sock in stalled]
        assert all(closed), f"{closed.count(False)} stalled sockets are still open"
        assert server.log().count("dropping slow WebSocket client") == STALLED_SOCKETS

        # Bob reconnects and catches up from the database; the server is none the worse.
        status, page = server.http(
            "GET", f"/api/chats/{chat['id']}/messages?after_seq=0&limit=200", token=tokens["bob"]
        )
        assert status == 200 and len(page["results"]) == 200 and page["has_more"] is True
        with connect(server.ws_url(tokens["bob"]), open_timeout=10, proxy=None) as again:
            assert recv_json(again)["type"] == "session.ready"
            again.send(json.dumps({"type": "ping", "ref": "alive"}))
            assert recv_json(again) == {"type": "pong", "ref": "alive"}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_client_that_sends_but_never_reads_is_dropped_too(start_server, entry):
    """daphne's keepalive ping is only sent after a quiet period of *incoming* frames, so a client
    that keeps sending but never reads its replies would never be timed out; the cap drops it."""
    server = start_server(f"slow-sender-{entry}", serve=entry, args=("--max-send-buffer", "65536"))
    token = server.login(server.register())["access"]
    sock = raw_websocket(server.port, token, rcvbuf=4096)
    try:
        # Each frame is answered by an ``unknown_type`` error quoting the 32 KB type: 12 MiB of
        # replies in all, far more than the kernel buffers and the 64 KiB cap hold.
        frame = masked_text_frame(json.dumps({"type": "x" * 32_000}))
        try:
            for _ in range(400):
                sock.sendall(frame)
        except (ConnectionResetError, BrokenPipeError):
            pass  # dropped while still sending
        assert wait_for(lambda: "dropping slow WebSocket client" in server.log()), (
            "the server kept a client that never reads"
        )
        assert drain_until_closed(sock)
    finally:
        sock.close()
    assert server.alive()


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_client_that_floods_frames_is_slowed_down_not_queued_for(start_server, entry):
    """A client blasting 64 KiB frames faster than they are handled: the server stops reading the
    socket while 32 frames wait, so its memory does not grow with what the client sends
    (plain daphne queues it all: +153 MiB for 188 MiB sent, see docs/RELIABILITY.md)."""
    server = start_server(f"flooder-{entry}", serve=entry)
    token = server.login(server.register())["access"]
    sock = raw_websocket(server.port, token)
    frames = 1000
    frame = masked_text_frame(
        json.dumps({"type": "message.send", "chat_id": 2**40, "client_id": "flood", "text": "hi", "pad": "p" * 65_000})
    )
    replies = Drain(sock)
    try:
        baseline = server.rss_bytes()
        replies.start()
        for _ in range(frames):
            sock.sendall(frame)
        peak = server.rss_bytes()
        sock.sendall(masked_text_frame(json.dumps({"type": "ping", "ref": "after-flood"})))
        assert wait_for(lambda: b'"after-flood"' in replies.tail), "the server never answered the ping after the flood"
    finally:
        sock.close()
    sent = frames * len(frame)
    growth = peak - baseline
    print(f"\ninbound flood: {sent / MiB:.0f} MiB sent; server RSS +{growth / MiB:.1f} MiB")
    assert growth < sent / 4, f"RSS grew {growth / MiB:.1f} MiB"
    assert server.alive()


class Drain(threading.Thread):
    """Reads and discards a raw socket's input, keeping the last bytes seen."""

    def __init__(self, sock: socket.socket):
        super().__init__(daemon=True)
        self.sock = sock
        self.tail = b""

    def run(self) -> None:
        try:
            while chunk := self.sock.recv(1 << 16):
                self.tail = (self.tail + chunk)[-4096:]
        except OSError:
            pass


def wait_for(condition, timeout: float = 60) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass (a bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
