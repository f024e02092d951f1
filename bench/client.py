"""The one client every server is measured with: WebSocket connections, an open-loop
scheduler and the bookkeeping that turns frames into latencies and losses.

Open loop: message ``i`` is *scheduled* at ``t0 + i / rate`` and written the moment
it is due whatever the server is doing (writes never wait for the socket to drain);
latency is receipt time minus scheduled time, so a stalled server shows up as
latency instead of silently slowing the client down. Every loop is bounded in count
and in time, and every connection goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from websockets.asyncio.client import connect
from websockets.protocol import State

from .hist import Histogram
from .procs import Server

try:
    from orjson import loads
except ImportError:  # orjson is optional
    from json import loads

now = time.perf_counter
dumps = json.dumps


def client_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


@dataclass(frozen=True)
class ConnSpec:
    user_id: int
    rooms: tuple[int, ...] = ()
    index: int = 0  # spreads connections over the server's processes


def url_for(server: Server, spec: ConnSpec, tokens: dict[str, str]) -> str:
    port = server.port_for(spec.index)
    if server.kind == "ours":
        query = urlencode({"token": tokens[str(spec.user_id)]})
    else:
        query = urlencode({"token": f"u{spec.user_id}", "rooms": ",".join(map(str, spec.rooms))})
    return f"ws://127.0.0.1:{port}/ws/?{query}"


class Conn:
    """One open socket; frames go to ``on_frame(conn, text, t_received)``."""

    __slots__ = ("on_frame", "reader", "send_failures", "sent", "spec", "ws")

    def __init__(self, ws, spec: ConnSpec):
        self.ws = ws
        self.spec = spec
        self.on_frame: Callable | None = None
        self.reader: asyncio.Task | None = None
        self.sent = 0
        self.send_failures = 0

    def start(self, on_frame: Callable) -> None:
        self.on_frame = on_frame
        if self.reader is None:
            self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        ws = self.ws
        try:
            async for text in ws:
                handler = self.on_frame
                if handler is not None:
                    handler(self, text, now())
        except Exception:
            return

    def send_now(self, text: str) -> bool:
        """Write a text frame immediately, without waiting for the socket buffer to drain."""
        ws = self.ws
        if ws.protocol.state is not State.OPEN:
            self.send_failures += 1
            return False
        ws.protocol.send_text(text.encode())
        ws.send_data()
        self.sent += 1
        return True

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        except Exception:
            self.ws.transport.abort()
        if self.reader is not None:
            self.reader.cancel()


@dataclass
class ConnectResult:
    conns: list[Conn]
    failures: dict[str, int]
    elapsed_s: float
    handshake: Histogram

    @property
    def per_second(self) -> float:
        return len(self.conns) / self.elapsed_s if self.elapsed_s > 0 else 0.0


async def open_conns(
    server: Server,
    specs: list[ConnSpec],
    tokens: dict[str, str],
    *,
    concurrency: int = 64,
    timeout_s: float = 120.0,
) -> ConnectResult:
    """Open sockets ``concurrency`` at a time; each counts once its ``session.ready`` arrives."""
    sem = asyncio.Semaphore(concurrency)
    conns: list[Conn | None] = [None] * len(specs)
    failures: dict[str, int] = {}
    handshake = Histogram()
    deadline = now() + timeout_s

    async def one(i: int, spec: ConnSpec) -> None:
        async with sem:
            if now() > deadline:
                failures["deadline"] = failures.get("deadline", 0) + 1
                return
            t0 = now()
            try:
                ws = await connect(
                    url_for(server, spec, tokens),
                    compression=None,
                    proxy=None,
                    ping_interval=None,
                    open_timeout=30,
                    close_timeout=2,
                    max_size=2**20,
                    max_queue=None,
                    user_agent_header=None,
                )
            except Exception as exc:
                key = type(exc).__name__
                failures[key] = failures.get(key, 0) + 1
                return
            try:
                first = loads(await asyncio.wait_for(ws.recv(), 30))
            except Exception as exc:
                failures[f"no session.ready ({type(exc).__name__})"] = (
                    failures.get(f"no session.ready ({type(exc).__name__})", 0) + 1
                )
                ws.transport.abort()
                return
            if first.get("type") != "session.ready":
                failures[f"first frame {first.get('type')}"] = failures.get(f"first frame {first.get('type')}", 0) + 1
                ws.transport.abort()
                return
            handshake.record_s(now() - t0)
            conns[i] = Conn(ws, spec)

    t0 = now()
    await asyncio.gather(*(one(i, spec) for i, spec in enumerate(specs)))
    elapsed = now() - t0
    return ConnectResult([c for c in conns if c is not None], failures, elapsed, handshake)


async def close_all(conns: list[Conn], *, concurrency: int = 256) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(c: Conn) -> None:
        async with sem:
            await c.close()

    await asyncio.gather(*(one(c) for c in conns))


@dataclass
class Tracker:
    """Messages in flight: scheduled time, recipients still owed, and the histograms.

    ``expect(key, t, n)`` registers a message owed to ``n`` recipients; ``delivered``
    records one receipt (per-delivery latency; the last one also gives the
    last-recipient latency); ``acked`` records the sender's ack. Whatever is still
    owed at the deadline is loss.
    """

    pending: dict[str, list] = field(default_factory=dict)  # key -> [t_sched, owed]
    ack_pending: dict[str, float] = field(default_factory=dict)
    delivery: Histogram = field(default_factory=Histogram)
    last_recipient: Histogram = field(default_factory=Histogram)
    ack: Histogram = field(default_factory=Histogram)
    expected_messages: int = 0
    expected_deliveries: int = 0
    delivered: int = 0
    unexpected: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    first_sched: float | None = None
    last_receipt: float = 0.0
    duplicates_acked: int = 0

    def expect(self, key: str, t_sched: float, recipients: int, *, ack: bool = True) -> None:
        if self.first_sched is None:
            self.first_sched = t_sched
        self.expected_messages += 1
        self.expected_deliveries += recipients
        if recipients:
            self.pending[key] = [t_sched, recipients]
        if ack:
            self.ack_pending[key] = t_sched

    def delivered_now(self, key: str, t: float) -> None:
        entry = self.pending.get(key)
        if entry is None:
            self.unexpected += 1
            return
        self.delivered += 1
        self.last_receipt = t
        latency = t - entry[0]
        self.delivery.record_s(latency)
        entry[1] -= 1
        if entry[1] == 0:
            self.last_recipient.record_s(latency)
            del self.pending[key]

    def acked_now(self, key: str, t: float, duplicate: bool = False) -> None:
        t_sched = self.ack_pending.pop(key, None)
        if t_sched is None:
            self.unexpected += 1
            return
        if duplicate:
            self.duplicates_acked += 1
        self.ack.record_s(t - t_sched)

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    def oldest_age(self, t: float) -> float:
        oldest = 0.0
        for store in (self.pending, self.ack_pending):
            if store:
                first = next(iter(store.values()))
                oldest = max(oldest, t - (first[0] if isinstance(first, list) else first))
        return oldest

    def done(self) -> bool:
        return not self.pending and not self.ack_pending

    @property
    def lost_deliveries(self) -> int:
        return sum(entry[1] for entry in self.pending.values())

    @property
    def lost_messages(self) -> int:
        return len(self.pending)

    def summary(self) -> dict:
        return {
            "messages": self.expected_messages,
            "expected_deliveries": self.expected_deliveries,
            "delivered": self.delivered,
            "lost_deliveries": self.lost_deliveries,
            "lost_messages": self.lost_messages,
            "missing_acks": len(self.ack_pending),
            "unexpected_frames": self.unexpected,
            "errors": dict(self.errors),
            "delivery": self.delivery.summary(),
            "last_recipient": self.last_recipient.summary(),
            "ack": self.ack.summary(),
        }


def message_frame_handler(tracker: Tracker) -> Callable:
    """Frames of the messaging scenarios: acks and deliveries keyed by client_id."""

    def on_frame(conn: Conn, text, t: float) -> None:
        frame = loads(text)
        kind = frame.get("type")
        if kind == "message.new":
            tracker.delivered_now(frame["message"].get("client_id") or "", t)
        elif kind == "message.ack":
            tracker.acked_now(frame.get("client_id") or "", t, bool(frame.get("duplicate")))
        elif kind == "error":
            # An error answers a send (ref = client_id): it stays owed, so it also counts as loss.
            tracker.error(str(frame.get("code")))

    return on_frame


@dataclass
class LoopResult:
    scheduled: int
    sent: int
    aborted: str | None
    t0: float
    t_end: float
    send_lag: Histogram


async def open_loop(
    *,
    rate: float,
    duration_s: float,
    fire: Callable[[int, float], None],
    abort: Callable[[float], str | None] | None = None,
    max_count: int = 1_000_000,
) -> LoopResult:
    """Call ``fire(i, t_scheduled)`` for i = 0.. on a fixed schedule of ``rate`` per second.

    The loop wakes at most every millisecond (event-loop timers have 1 ms resolution;
    shorter sleeps would spin) and fires everything due, so a send goes out up to ~1 ms
    after its scheduled time: that lag is part of every latency measured, and reported
    as ``send_lag``. ``abort(t)`` is polled every few milliseconds; a non-None answer
    stops the loop (an overloaded server must not queue minutes of backlog).
    """
    n = min(max_count, max(1, int(rate * duration_s)))
    interval = 1.0 / rate
    t0 = now() + 0.02
    i = 0
    last_check = 0.0
    reason = None
    lag = Histogram()
    while i < n:
        t = now()
        due = t0 + i * interval
        if due > t:
            await asyncio.sleep(max(due - t, 0.001))
            continue
        while i < n and t0 + i * interval <= t:
            scheduled = t0 + i * interval
            fire(i, scheduled)
            lag.record_s(t - scheduled)
            i += 1
        if abort is not None and t - last_check > 0.005:
            last_check = t
            reason = abort(t)
            if reason:
                break
        await asyncio.sleep(0.001)
    return LoopResult(scheduled=n, sent=i, aborted=reason, t0=t0, t_end=now(), send_lag=lag)


async def wait_until(done: Callable[[], bool], timeout_s: float, poll_s: float = 0.005) -> float:
    t0 = now()
    while not done() and now() - t0 < timeout_s:
        await asyncio.sleep(poll_s)
    return now() - t0
