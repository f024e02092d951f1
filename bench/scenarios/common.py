"""What the WebSocket scenarios share: the run context, one open-loop step, waiting for idle."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .. import db
from ..client import (
    Conn,
    ConnSpec,
    Tracker,
    client_cpu_seconds,
    dumps,
    message_frame_handler,
    now,
    open_conns,
    open_loop,
    wait_until,
)
from ..procs import Server
from ..profiles import (
    MESSAGE_TEXT,
    Profile,
)


@dataclass
class Context:
    profile: Profile
    fixture: dict
    run_id: str
    pg_base: str
    bench_db: str
    notes: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> dict[str, str]:
        return self.fixture["tokens"]


def send_frame(chat_id: int, key: str) -> str:
    return dumps(
        {
            "type": "message.send",
            "chat_id": chat_id,
            "client_id": key,
            "text": MESSAGE_TEXT,
            "ref": key,
        }
    )


async def open_pairs(ctx: Context, server: Server, pairs: list) -> tuple[object, list]:
    """Both users of each 1:1 pair connected (sockets spread round-robin over the server's
    processes); returns the connection result and the (a, b, chat_id) links of complete pairs."""
    specs = []
    for k, (a, b, chat) in enumerate(pairs):
        specs += [ConnSpec(a, (chat,), 2 * k), ConnSpec(b, (chat,), 2 * k + 1)]
    connected = await open_conns(server, specs, ctx.tokens)
    by_spec = {c.spec: c for c in connected.conns}
    links = [(by_spec.get(specs[2 * k]), by_spec.get(specs[2 * k + 1]), chat) for k, (_, _, chat) in enumerate(pairs)]
    return connected, [link for link in links if link[0] is not None and link[1] is not None]


def alternating_sends(ctx: Context, links: list, scenario: str):
    """``fire_for(tag)`` for :func:`run_step`: message i goes to pair i mod n, its sender
    alternating between the pair's two users every round; one recipient each."""

    def fire_for(tag: str):
        def make(tracker: Tracker):
            n = len(links)

            def fire(i: int, t_sched: float) -> None:
                a, b, chat = links[i % n]
                sender = a if (i // n) % 2 == 0 else b
                key = f"{ctx.run_id}-{scenario}-{tag}-{i}"
                tracker.expect(key, t_sched, 1)
                sender.send_now(send_frame(chat, key))

            return fire

        return make

    return fire_for


def connect_summary(result) -> dict:
    return {
        "sockets": len(result.conns),
        "failures": result.failures,
        "connects_per_s": round(result.per_second, 1),
        "handshake": result.handshake.summary(),
    }


async def run_step(
    ctx: Context,
    server: Server,
    conns: list[Conn],
    *,
    rate: float,
    duration_s: float,
    fire_for,
    recipients: int,
) -> tuple[dict, Tracker]:
    """One open-loop step: schedule, send, wait for stragglers, measure."""
    tracker = Tracker()
    handler = message_frame_handler(tracker)
    for c in conns:
        c.start(handler)
    fire = fire_for(tracker)
    abort_after = ctx.profile.abort_backlog_s

    def abort(t: float) -> str | None:
        return f"backlog older than {abort_after} s" if tracker.oldest_age(t) > abort_after else None

    pg_before = db.table_writes(ctx.pg_base, ctx.bench_db) if server.kind == "ours" else None
    meter = server.meter()
    cpu0 = client_cpu_seconds()
    loop = await open_loop(rate=rate, duration_s=duration_s, fire=fire, abort=abort)
    await wait_until(tracker.done, ctx.profile.deadline_s)
    usage = meter.stop()
    client_cpu = client_cpu_seconds() - cpu0
    summary = tracker.summary()  # as of the deadline: what came later is lost for latency purposes
    pg = None
    if pg_before is not None:
        # Approximate (a backend flushes its counters at exit or when idle): new PostgreSQL
        # sessions and commits per message sent.
        delta = db.writes_delta(pg_before, db.table_writes(ctx.pg_base, ctx.bench_db))["_db"]
        pg = {k: round(v / loop.sent, 2) for k, v in delta.items()} if loop.sent else None
    span = (tracker.last_receipt - tracker.first_sched) if tracker.first_sched and tracker.last_receipt else 0.0
    out = {
        "offered_rate": rate,
        "scheduled": loop.scheduled,
        "sent": loop.sent,
        "aborted": loop.aborted,
        "recipients_per_message": recipients,
        **summary,
        "delivered_per_s": round(tracker.delivered / span, 1) if span > 0 else 0.0,
        "send_lag": loop.send_lag.summary(),
        "server": usage.as_dict(),
        "client_cpu_pct": round(100.0 * client_cpu / usage.wall_s, 1) if usage.wall_s else 0.0,
        "pg_per_message": pg,
    }
    if not tracker.done():
        # Late or never? Let the server finish its backlog, then count what still has not come.
        await settle(server)
        await asyncio.sleep(0.2)
        out["never_delivered"] = tracker.lost_deliveries
        out["never_acked"] = len(tracker.ack_pending)
    return out, tracker


async def settle(
    server: Server,
    *,
    below_pct: float = 5.0,
    window_s: float = 0.5,
    timeout_s: float = 30.0,
) -> float:
    """Wait (without blocking the loop: open sockets must keep answering pings) until the server idles."""
    start = now()
    while now() - start < timeout_s:
        c0 = server.cpu_seconds()
        await asyncio.sleep(window_s)
        if 100.0 * (server.cpu_seconds() - c0) / window_s < below_pct:
            break
    return now() - start
