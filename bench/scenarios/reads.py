"""S5: read acks at a fixed rate in a big group: ack latency and rows written per ack."""

from __future__ import annotations

import asyncio

from .. import db, srvmetrics
from ..client import (
    Conn,
    ConnSpec,
    Tracker,
    close_all,
    dumps,
    loads,
    open_conns,
    open_loop,
    wait_until,
)
from ..procs import Server
from .common import Context, connect_summary, settle

# --- S5 ---------------------------------------------------------------------------------


async def s5_reads(ctx: Context, server: Server, *, stop_server) -> dict:
    """Read acks at a fixed rate in a big group: ack latency and rows written per ack.

    Rows come from pg_stat_user_tables deltas, read after the server has been stopped
    (a backend flushes its counters at exit at the latest), so ``stop_server`` is called here.
    """
    p = ctx.profile
    group = ctx.fixture["groups"]["reads"]
    chat = group["chat_id"]
    members = group["members"][: p.s5_group]
    reads_per_member = int(p.s5_rate * p.s5_s) // len(members) + 1
    if reads_per_member >= group["last_seq"]:
        return {"error": f"read group has {group['last_seq']} messages, needs > {reads_per_member}"}
    db.reset_read_group(ctx.pg_base, ctx.bench_db, chat_id=chat, watermark=0)
    specs = [ConnSpec(uid, (chat,), i) for i, uid in enumerate(members)]
    connected = await open_conns(server, specs, ctx.tokens)
    conns = connected.conns
    result: dict = {"connect": connect_summary(connected), "group": len(members)}
    if not conns:
        result["error"] = "no socket connected"
        return result
    tracker = Tracker()
    read_all_events = 0

    def on_frame(conn: Conn, text, t: float) -> None:
        nonlocal read_all_events
        frame = loads(text)
        kind = frame.get("type")
        if kind == "chat.read":
            if frame.get("ref"):
                tracker.acked_now(frame["ref"], t)
        elif kind == "chat.read_all":
            read_all_events += 1
        elif kind == "error":
            tracker.error(str(frame.get("code")))

    for c in conns:
        c.start(on_frame)
    n = len(conns)

    # Warm-up reads (up_to_seq 1), not recorded.
    for i, c in enumerate(conns[: min(n, 20)]):
        c.send_now(
            dumps(
                {
                    "type": "message.read",
                    "chat_id": chat,
                    "up_to_seq": 1,
                    "ref": f"warm{i}",
                }
            )
        )
    await asyncio.sleep(1.0)
    tracker = Tracker()
    await settle(server)
    before = db.table_writes(ctx.pg_base, ctx.bench_db)

    def fire(i: int, t_sched: float) -> None:
        ref = f"r{i}"
        tracker.expect(ref, t_sched, 0)
        conns[i % n].send_now(
            dumps(
                {
                    "type": "message.read",
                    "chat_id": chat,
                    "up_to_seq": i // n + 2,
                    "ref": ref,
                }
            )
        )

    abort_after = p.abort_backlog_s
    server_before = srvmetrics.frame_buckets(server, "message.read")
    meter = server.meter()
    loop = await open_loop(
        rate=p.s5_rate,
        duration_s=p.s5_s,
        fire=fire,
        abort=lambda t: f"backlog older than {abort_after} s" if tracker.oldest_age(t) > abort_after else None,
    )
    await wait_until(tracker.done, p.deadline_s)
    usage = meter.stop()
    latency = tracker.ack.summary()
    acks = tracker.ack.count
    missing = len(tracker.ack_pending)
    if missing:
        # The row counters will include reads answered late: count those answers too.
        await settle(server)
        await asyncio.sleep(0.2)
    acks_total = tracker.ack.count
    # The server's own timing of the same reads (arrival to reply written), before it stops.
    result["server_read_frame"] = srvmetrics.quantile_bounds(
        server_before, srvmetrics.frame_buckets(server, "message.read")
    )
    await close_all(conns)
    result["alive_after"] = server.alive()
    stop_server()
    after = db.settled_table_writes(ctx.pg_base, ctx.bench_db)
    delta = db.writes_delta(before, after)
    rows = sum(v["ins"] + v["upd"] + v["del"] for k, v in delta.items() if not k.startswith("_"))
    result.update(
        {
            "offered_rate": p.s5_rate,
            "scheduled": loop.scheduled,
            "sent": loop.sent,
            "aborted": loop.aborted,
            "acks": acks,
            "missing_acks": missing,
            "acks_incl_late": acks_total,
            "never_acked": len(tracker.ack_pending),
            "errors": dict(tracker.errors),
            "ack_latency": latency,
            "read_all_events": read_all_events,
            "table_writes": delta,
            "rows_written": rows,
            "rows_per_ack": round(rows / acks_total, 3) if acks_total else None,
            "db_commits_per_ack": round(delta["_db"]["xact_commit"] / acks_total, 3) if acks_total else None,
            "server": usage.as_dict(),
        }
    )
    return result
