"""S7: reaction.add / reaction.remove at a fixed rate over many small groups: ack latency, exact counts."""

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
    now,
    open_conns,
    open_loop,
    wait_until,
)
from ..procs import Server
from ..profiles import S7_EMOJI
from .common import Context, connect_summary, settle

WARMUP = 20
FRAME_TYPES = ("reaction.add", "reaction.remove")


def _key(chat_id, seq, user_id, emoji, added) -> str:
    """One change in flight: the reply's ``ref`` and the key of the others' ``message.reactions``."""
    return f"{chat_id}:{seq}:{user_id}:{emoji}:{int(bool(added))}"


def _frame_buckets(server: Server) -> dict[float, float]:
    total: dict[float, float] = {}
    for frame_type in FRAME_TYPES:
        for le, n in (srvmetrics.frame_buckets(server, frame_type) or {}).items():
            total[le] = total.get(le, 0.0) + n
    return total


async def s7_reactions(ctx: Context, server: Server) -> dict:
    """Open-loop reaction changes spread over the groups and their members' sockets.

    Frame ``i`` goes to group ``i % chats``, from its member ``(i // chats) % members``, on one
    of the group's first ``s7_messages`` text messages, with one of ``S7_EMOJI``: a triple comes
    back only after chats x members x messages x emoji frames, long after its reply. Each frame
    toggles (the user has that reaction: remove, else add; the starting state is read from the
    database), so each should change something. Afterwards the database must hold, for every
    message, cached counts equal to its reaction rows and to what the replies said, and each
    chat's version must have risen by the number of ``changed`` replies, their versions gap-free.
    """
    p = ctx.profile
    groups = (ctx.fixture.get("reaction_groups") or [])[: p.s7_chats]
    if not groups:
        return {"error": "no reaction groups in the fixture"}
    chat_ids = [g["chat_id"] for g in groups]
    before = await asyncio.to_thread(db.reaction_state, ctx.pg_base, ctx.bench_db, chat_ids)
    texts: dict[int, list[tuple[int, int]]] = {}
    for chat_id, seq, message_id in before["messages"]:
        texts.setdefault(chat_id, []).append((seq, message_id))
    short = [c for c in chat_ids if len(texts.get(c, ())) < p.s7_messages]
    if short:
        return {"error": f"{len(short)} reaction groups have fewer than {p.s7_messages} text messages"}
    targets = {c: texts[c][: p.s7_messages] for c in chat_ids}
    message_ids = {(c, seq): mid for c in chat_ids for seq, mid in targets[c]}
    has = {r for r in before["mine"] if r[0] in set(message_ids.values())}

    members = [(g["chat_id"], uid) for g in groups for uid in g["members"]]
    specs = [ConnSpec(uid, (chat_id,), k) for k, (chat_id, uid) in enumerate(members)]
    connected = await open_conns(server, specs, ctx.tokens)
    result: dict = {
        "connect": connect_summary(connected),
        "chats": len(groups),
        "members_per_chat": p.s7_members,
    }
    sockets = {c.spec.user_id: c for c in connected.conns}
    if len(sockets) < len(specs):
        await close_all(connected.conns)
        result["error"] = f"{len(specs) - len(sockets)} of {len(specs)} sockets did not connect"
        return result

    n_chats, n_members, n_msgs, n_emoji = len(groups), p.s7_members, p.s7_messages, len(S7_EMOJI)
    tracker = Tracker()
    replies: list[tuple] = []  # (chat_id, seq, user_id, emoji, added, changed, version), every reply

    def on_frame(conn: Conn, text, t: float) -> None:
        frame = loads(text)
        kind = frame.get("type")
        if kind == "message.reactions":
            if frame.get("ref") is not None:
                tracker.acked_now(frame["ref"], t)
                replies.append(
                    (
                        frame.get("chat_id"),
                        frame.get("seq"),
                        frame.get("user_id"),
                        frame.get("emoji"),
                        frame.get("added"),
                        frame.get("changed"),
                        frame.get("version"),
                    )
                )
            else:
                key = _key(
                    frame.get("chat_id"), frame.get("seq"), frame.get("user_id"), frame.get("emoji"), frame.get("added")
                )
                tracker.delivered_now(key, t)
        elif kind == "error":
            tracker.error(str(frame.get("code")))

    for c in connected.conns:
        c.start(on_frame)

    def send(i: int, t_sched: float, *, record: bool) -> None:
        g = groups[i % n_chats]
        r = i // n_chats
        user = g["members"][r % n_members]
        r //= n_members
        seq, mid = targets[g["chat_id"]][r % n_msgs]
        emoji = S7_EMOJI[(r // n_msgs) % n_emoji]
        add = (mid, user, emoji) not in has
        if add:
            has.add((mid, user, emoji))
        else:
            has.discard((mid, user, emoji))
        key = _key(g["chat_id"], seq, user, emoji, add)
        if record:
            tracker.expect(key, t_sched, n_members - 1)
        else:
            tracker.ack_pending[key] = t_sched
        sockets[user].send_now(
            dumps(
                {
                    "type": "reaction.add" if add else "reaction.remove",
                    "ref": key,
                    "chat_id": g["chat_id"],
                    "seq": seq,
                    "emoji": emoji,
                }
            )
        )

    # Warm-up changes (counted in the checks, not in the latencies).
    for i in range(WARMUP):
        send(i, now(), record=False)
    await wait_until(lambda: not tracker.ack_pending, 5.0)
    await asyncio.sleep(0.3)  # the warm-up's deliveries to the others
    tracker = Tracker()
    await settle(server)

    abort_after = p.abort_backlog_s
    server_before = _frame_buckets(server)
    meter = server.meter()
    loop = await open_loop(
        rate=p.s7_rate,
        duration_s=p.s7_s,
        fire=lambda i, t: send(WARMUP + i, t, record=True),
        abort=lambda t: f"backlog older than {abort_after} s" if tracker.oldest_age(t) > abort_after else None,
    )
    await wait_until(tracker.done, p.deadline_s)
    usage = meter.stop()
    summary = tracker.summary()
    if not tracker.done():
        await settle(server)
        await asyncio.sleep(0.2)
    server_after = _frame_buckets(server)
    await close_all(connected.conns)
    result["alive_after"] = server.alive()

    # --- what the database holds against what the replies said ----------------------------
    after = await asyncio.to_thread(db.reaction_state, ctx.pg_base, ctx.bench_db, chat_ids)
    expected = {k: v for k, v in before["rows"].items() if k[0] in set(message_ids.values())}
    changed_per_chat: dict[int, list[int]] = {c: [] for c in chat_ids}
    unchanged = 0
    for chat_id, seq, _user, emoji, added, changed, version in replies:
        if not changed:
            unchanged += 1
            continue
        key = (message_ids.get((chat_id, seq)), emoji)
        expected[key] = expected.get(key, 0) + (1 if added else -1)
        changed_per_chat.setdefault(chat_id, []).append(version)
    expected = {k: v for k, v in expected.items() if v}
    ours = set(message_ids.values())
    got = {k: v for k, v in after["rows"].items() if k[0] in ours}
    cache_bad = sorted(
        k for k in set(after["rows"]) | set(after["cached"]) if after["rows"].get(k, 0) != after["cached"].get(k, 0)
    )
    replies_bad = sorted(k for k in set(expected) | set(got) if expected.get(k, 0) != got.get(k, 0))
    version_bad = []
    for c in chat_ids:
        v0, v1 = before["versions"][c], after["versions"][c]
        acked = sorted(changed_per_chat.get(c, []))
        if v1 - v0 != len(acked) or acked != list(range(v0 + 1, v1 + 1)):
            version_bad.append((c, v0, v1, len(acked)))
    changed_total = sum(len(v) for v in changed_per_chat.values())
    result.update(
        {
            "offered_rate": p.s7_rate,
            "scheduled": loop.scheduled,
            "sent": loop.sent,
            "aborted": loop.aborted,
            "acks": tracker.ack.count,
            "missing_acks": summary["missing_acks"],
            "never_acked": len(tracker.ack_pending),
            "lost_deliveries": summary["lost_deliveries"],
            "never_delivered": tracker.lost_deliveries,
            "deliveries": summary["delivered"],
            "expected_deliveries": summary["expected_deliveries"],
            "errors": summary["errors"],
            "unexpected_frames": summary["unexpected_frames"],
            "ack_latency": summary["ack"],
            "delivery": summary["delivery"],
            "send_lag": loop.send_lag.summary(),
            "replies_incl_warmup": len(replies),
            "changed_replies": changed_total,
            "unchanged_replies": unchanged,
            "messages_checked": len(ours),
            "reaction_rows_after": sum(got.values()),
            "server_reaction_frame": srvmetrics.quantile_bounds(
                server_before or dict.fromkeys(server_after, 0.0), server_after
            ),
            "server": usage.as_dict(),
        }
    )
    result["checks"] = {
        "reactions jsonb counts = COUNT(chats_reaction) per (message, emoji) in every S7 chat": (
            "ok" if not cache_bad else f"VIOLATED for {len(cache_bad)} (message, emoji), e.g. {cache_bad[:3]}"
        ),
        "reaction rows = the counts the replies imply (exact)": (
            "ok"
            if not replies_bad
            else f"VIOLATED for {len(replies_bad)} (message, emoji), e.g. "
            + ", ".join(f"{k}: expected {expected.get(k, 0)}, stored {got.get(k, 0)}" for k in replies_bad[:3])
        ),
        "each chat's version rose by its changed=true replies, versions gap-free": (
            "ok"
            if not version_bad
            else f"VIOLATED in {len(version_bad)} chats, e.g. {version_bad[:3]} (chat, before, after, changed replies)"
        ),
        "every reply changed something": "ok" if not unchanged else f"{unchanged} replies had changed=false",
    }
    result["exact"] = all(v == "ok" for v in result["checks"].values())
    return result
