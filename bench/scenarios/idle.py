"""S3: idle authenticated sockets: server RSS per socket and connects/s."""

from __future__ import annotations

import asyncio

from ..client import (
    Conn,
    ConnSpec,
    close_all,
    dumps,
    loads,
    now,
    open_conns,
)
from ..hist import Histogram
from ..procs import Server
from .common import Context, connect_summary, settle

# --- S3 ---------------------------------------------------------------------------------


async def s3_idle(ctx: Context, server: Server) -> dict:
    """Idle authenticated sockets: server RSS per socket and connects/s."""
    n = ctx.profile.s3_sockets
    users = ctx.fixture["users"][:n]
    # Relays get one room per socket, as ours has one group per user.
    specs = [ConnSpec(uid, (uid,), i) for i, uid in enumerate(users)]
    warm = await open_conns(server, specs[:50], ctx.tokens)
    await close_all(warm.conns)
    await settle(server)
    await asyncio.sleep(0.5)
    rss0 = server.rss_kib()
    meter = server.meter()
    connected = await open_conns(server, specs, ctx.tokens, concurrency=100, timeout_s=300)
    connect_usage = meter.stop()
    await asyncio.sleep(1.0)
    await settle(server)
    rss1 = server.rss_kib()
    sockets = len(connected.conns)
    # A ping round trip on a sample proves the sockets are alive, not just counted.
    alive = await _ping_sample(connected.conns[:: max(1, sockets // 100)])
    await close_all(connected.conns)
    settle_s = await settle(server)
    return {
        "connect": connect_summary(connected),
        "rss_before_mib": round(rss0 / 1024, 1),
        "rss_after_mib": round(rss1 / 1024, 1),
        "kib_per_socket": round((rss1 - rss0) / sockets, 2) if sockets else None,
        "connect_phase_server": connect_usage.as_dict(),
        "ping_sample": alive,
        "rss_after_close_mib": round(server.rss_kib() / 1024, 1),
        "settle_s": round(settle_s, 2),
    }


async def _ping_sample(conns: list[Conn]) -> dict:
    waiting: dict[str, asyncio.Future] = {}

    def on_frame(conn: Conn, text, t: float) -> None:
        frame = loads(text)
        if frame.get("type") == "pong":
            fut = waiting.pop(frame.get("ref") or "", None)
            if fut is not None and not fut.done():
                fut.set_result(t)

    loop = asyncio.get_running_loop()
    hist = Histogram()
    for i, c in enumerate(conns):
        c.start(on_frame)
        waiting[f"p{i}"] = loop.create_future()
    t0 = now()
    futures = list(waiting.values())
    for i, c in enumerate(conns):
        c.send_now(dumps({"type": "ping", "ref": f"p{i}"}))
    done, _ = await asyncio.wait(futures, timeout=10)
    for fut in done:
        hist.record_s(fut.result() - t0)
    return {"sampled": len(conns), "answered": len(done), "rtt": hist.summary()}
