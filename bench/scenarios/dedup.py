"""S6: the cost of deduplication: unique client_ids vs each sent from two sockets at once."""

from __future__ import annotations

import asyncio

from .. import db
from ..client import (
    Conn,
    ConnSpec,
    close_all,
    loads,
    now,
    open_conns,
)
from ..hist import Histogram
from ..procs import Server
from .common import Context, connect_summary, send_frame, settle

# --- S6 ---------------------------------------------------------------------------------


async def s6_dedup(ctx: Context, server: Server) -> dict:
    """Closed-loop sends: unique client_ids vs each client_id sent from two sockets at once."""
    p = ctx.profile
    pairs = ctx.fixture["pairs"][: p.s6_users]
    specs = []
    for k, (a, _b, chat) in enumerate(pairs):
        specs += [ConnSpec(a, (chat,), 2 * k), ConnSpec(a, (chat,), 2 * k + 1)]
    connected = await open_conns(server, specs, ctx.tokens)
    by_spec = {c.spec: c for c in connected.conns}
    devices = [(by_spec.get(specs[2 * k]), by_spec.get(specs[2 * k + 1]), chat) for k, (_, _, chat) in enumerate(pairs)]
    devices = [d for d in devices if d[0] is not None and d[1] is not None]
    result: dict = {"connect": connect_summary(connected), "users": len(devices)}
    if not devices:
        result["error"] = "no user connected both sockets"
        return result
    waiting: dict[tuple[int, str], asyncio.Future] = {}
    errors: dict[str, int] = {}

    def on_frame(conn: Conn, text, t: float) -> None:
        frame = loads(text)
        kind = frame.get("type")
        if kind == "message.ack":
            fut = waiting.pop((id(conn), frame.get("client_id")), None)
            if fut is not None and not fut.done():
                msg = frame.get("message") or {}
                fut.set_result((t, bool(frame.get("duplicate")), msg.get("id"), msg.get("seq")))
        elif kind == "error":
            errors[str(frame.get("code"))] = errors.get(str(frame.get("code")), 0) + 1
            fut = waiting.pop((id(conn), frame.get("ref")), None)
            if fut is not None and not fut.done():
                fut.set_result((t, None, None, None))

    for c in connected.conns:
        c.start(on_frame)
    loop = asyncio.get_running_loop()

    def send(conn: Conn, chat: int, key: str) -> asyncio.Future:
        fut = loop.create_future()
        waiting[(id(conn), key)] = fut
        conn.send_now(send_frame(chat, key))
        return fut

    async def unique_worker(w: int, conn: Conn, chat: int, until: float, hist: Histogram, tag: str) -> int:
        done = 0
        j = 0
        while now() < until and j < 100_000:
            t0 = now()
            key = f"{ctx.run_id}-{tag}-{w}-{j}"
            j += 1
            try:
                t, dup, _, _ = await asyncio.wait_for(send(conn, chat, key), 10)
            except TimeoutError:
                break
            if dup is not None:
                hist.record_s(t - t0)
                done += 1
        return done

    bad_pairs = 0

    async def dup_worker(w: int, c1: Conn, c2: Conn, chat: int, until: float, hist: Histogram, tag: str) -> int:
        nonlocal bad_pairs
        done = 0
        j = 0
        while now() < until and j < 100_000:
            t0 = now()
            key = f"{ctx.run_id}-{tag}-{w}-{j}"
            j += 1
            f1, f2 = send(c1, chat, key), send(c2, chat, key)
            try:
                r1, r2 = await asyncio.wait_for(asyncio.gather(f1, f2), 10)
            except TimeoutError:
                break
            for r in (r1, r2):
                if r[1] is not None:
                    hist.record_s(r[0] - t0)
                    done += 1
            # Exactly one original, and both acks name the same stored message.
            if sorted([r1[1], r2[1]], key=str) != [False, True] or r1[2] != r2[2]:
                bad_pairs += 1
        return done

    async def phase(kind: str) -> dict:
        hist = Histogram()
        tag = f"s6{kind[0]}"
        meter = server.meter()
        t0 = now()
        until = t0 + p.s6_s
        if kind == "unique":
            jobs = [
                unique_worker(2 * k + s, d[s], d[2], until, hist, tag) for k, d in enumerate(devices) for s in (0, 1)
            ]
        else:
            jobs = [dup_worker(k, d[0], d[1], d[2], until, hist, tag) for k, d in enumerate(devices)]
        acks = sum(await asyncio.gather(*jobs))
        elapsed = now() - t0
        usage = meter.stop()
        stored, distinct = db.stored_with_prefix(ctx.pg_base, ctx.bench_db, f"{ctx.run_id}-{tag}-")
        messages = acks if kind == "unique" else acks // 2
        return {
            "in_flight": 2 * len(devices),
            "acks": acks,
            "messages": messages,
            "elapsed_s": round(elapsed, 3),
            "acks_per_s": round(acks / elapsed, 1),
            "messages_per_s": round(messages / elapsed, 1),
            "ack_latency": hist.summary(),
            "stored": stored,
            "stored_distinct": distinct,
            "server": usage.as_dict(),
        }

    # Warm-up, not recorded.
    await asyncio.gather(
        *(unique_worker(k, d[0], d[2], now() + 0.5, Histogram(), "s6w") for k, d in enumerate(devices))
    )
    await settle(server)
    result["unique"] = await phase("unique")
    await settle(server)
    result["duplicate"] = await phase("duplicate")
    result["bad_pairs"] = bad_pairs
    result["errors"] = errors
    u, d = result["unique"]["acks_per_s"], result["duplicate"]["acks_per_s"]
    result["overhead_pct"] = round(100.0 * (1.0 - d / u), 1) if u else None
    result["chat_ids"] = [d[2] for d in devices]
    await close_all(connected.conns)
    result["settle_s"] = round(await settle(server), 2)
    return result
