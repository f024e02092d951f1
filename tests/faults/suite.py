"""The fault suite: private services, two daphne processes, a sending population, faults, checks.

Timeline: start everything, let the population send, inject the profile's faults one
after another (each followed by a live-delivery probe and a quiet period), stop creating
messages and wait until every sent message is acked, let every device catch up over
REST, then compare what clients were told with what PostgreSQL holds.

Sending devices also edit, delete, react and pin between sends (``change_ratio`` of their
actions). The final check compares every device's message state (kept by the version rule and
/changes) with PostgreSQL, and every change a device was answered with the stored result: no
change lost (an acknowledged edit, delete, reaction or pin missing from the final state) and none
doubled (two answers claiming one version, an edit in the history twice).

Faults:
* ``redis``: SIGTERM the private redis-server, keep it down ``hold`` s, start it again
  (empty: no persistence). Afterwards every socket that stayed open through the restart
  must receive live events again (the probe posts to the "all hands" chat until each has).
* ``pg``: ``pg_ctl stop -m fast``, keep it down ``hold`` s, ``pg_ctl start``; with
  ``hold == 0`` a plain ``pg_ctl restart -m fast``. While it is down the REST API must
  answer 503 ``service_unavailable`` and a socket command an ``error`` frame with that code.
* ``kill``: SIGKILL the second daphne; its clients reconnect to the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from . import infra
from .clients import Ack, Clock, HttpError, Population, http


@dataclass(frozen=True)
class Profile:
    name: str
    users: int
    devices_per_user: int
    senders_per_user: int
    send_interval: float
    groups: int
    group_size: int
    directs: int
    warmup: float
    quiet: float  # after each fault (probe included) before the next one
    faults: tuple[tuple[str, float], ...]  # (kind, hold seconds)
    drain_timeout: float = 60.0
    probe_timeout: float = 20.0
    change_ratio: float = 0.45  # of a sending device's actions: edits, deletes, reactions, pins


QUICK = Profile(
    name="quick",
    users=8,
    devices_per_user=2,
    senders_per_user=1,
    send_interval=0.1,
    groups=2,
    group_size=4,
    directs=3,
    warmup=3,
    quiet=2,
    faults=(("redis", 1.0), ("pg", 2.0), ("kill", 0.0)),
)
FULL = Profile(
    name="full",
    users=30,
    devices_per_user=2,
    senders_per_user=1,
    send_interval=0.1,
    groups=8,
    group_size=8,
    directs=20,
    warmup=10,
    quiet=12,
    faults=(("redis", 2.0), ("pg", 0.0), ("redis", 2.0), ("pg", 5.0), ("redis", 2.0), ("kill", 0.0)),
)
PROFILES = {"quick": QUICK, "full": FULL}


@dataclass
class FaultRecord:
    kind: str
    label: str
    t0: float = 0.0  # fault injected
    t_back: float = 0.0  # service back (== t0 for kill)
    # PostgreSQL outage evidence: (server, status, code) and (server, frame type, code)
    rest: list = field(default_factory=list)
    socket: list = field(default_factory=list)
    handshake: list = field(default_factory=list)  # a new socket during the outage: (server, first frame, close)
    acks_while_down: int = 0
    # Redis outage: what a REST call with a login-session token (cache lookup) answered
    rest_session: list = field(default_factory=list)
    # live-delivery probe after the fault
    survivors: int = 0
    survivors_live: int = 0
    devices: int = 0
    devices_live: int = 0
    live_after: float | None = None  # s from t_back until every device got a live event again
    deaf: list = field(default_factory=list)
    not_live: list = field(default_factory=list)
    resync_closes: int = 0  # sockets the server closed with 4503 (layer resync) around this fault
    first_ack_after: float | None = None  # s from t_back to the first ack
    all_senders_after: float | None = None  # s from t0 until every sending device had an ack again
    stalled_senders: int = 0  # senders whose first ack after t_back came > 1 s after it
    # Redis outage: a message posted to the quiet room while Redis was down, and who learned of it
    quiet_seq: int = 0
    quiet_devices: int = 0
    quiet_seen: int = 0
    quiet_after: float | None = None


class ControlSocket:
    """One long-lived socket of the probe user on one server: sends a frame, awaits the reply by ref."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.token = token
        self.ws = None
        self.reader: asyncio.Task | None = None
        self.waiting: dict[str, asyncio.Future] = {}

    async def open(self) -> bool:
        if self.ws is not None and self.reader is not None and not self.reader.done():
            return True
        await self.close()
        try:
            self.ws = await connect(f"ws://127.0.0.1:{self.port}/ws/?token={self.token}", open_timeout=5, proxy=None)
            ready = json.loads(await asyncio.wait_for(self.ws.recv(), 5))
            assert ready["type"] == "session.ready", ready
        except Exception:
            self.ws = None
            return False
        self.reader = asyncio.create_task(self._read())
        return True

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                frame = json.loads(raw)
                future = self.waiting.pop(frame.get("ref") or "", None)
                if future is not None and not future.done():
                    future.set_result(frame)

    async def request(self, frame: dict, ref: str, timeout: float = 5.0) -> dict | None:
        if self.ws is None or self.reader is None or self.reader.done():
            return None
        future = asyncio.get_running_loop().create_future()
        self.waiting[ref] = future
        try:
            await self.ws.send(json.dumps({**frame, "ref": ref}))
            return await asyncio.wait_for(future, timeout)
        except (ConnectionClosed, TimeoutError):
            return None
        finally:
            self.waiting.pop(ref, None)

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
            self.reader = None
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 3)
            self.ws = None


class Suite:
    def __init__(self, profile: Profile, *, log=print, keep: bool = False):
        self.profile = profile
        self.log = log
        self.keep = keep
        self.workdir: Path | None = None
        self.pg: infra.PrivatePostgres | None = None
        self.redis: infra.PrivateRedis | None = None
        self.daphnes: list[infra.Daphne] = []
        self.records: list[FaultRecord] = []
        self._closes_4503 = 0

    # --- setup and teardown ---------------------------------------------------------------------

    def setup(self) -> None:
        infra.check_tools()
        self.workdir = infra.make_workdir()
        self.log(f"[faults] workdir {self.workdir}")
        self.pg = infra.PrivatePostgres(self.workdir)
        self.pg.init()
        self.pg.start()
        self.pg.create_database()
        self.redis = infra.PrivateRedis(self.workdir)
        self.redis.start()
        self.log(f"[faults] private PostgreSQL on :{self.pg.port}, redis-server on :{self.redis.port}")
        env = infra.child_env(database_url=self.pg.url, redis_url=self.redis.url, prefix="faults")
        infra.run_child(["manage.py", "migrate", "--noinput"], env)
        p = self.profile
        spec = {"users": p.users, "groups": p.groups, "group_size": p.group_size, "directs": p.directs, "seed": 1}
        self.seed = json.loads(
            infra.run_child(["-m", "tests.faults.seed", json.dumps(spec)], env).strip().splitlines()[-1]
        )
        self.daphnes = [infra.Daphne(name, self.workdir, env) for name in ("a", "b")]
        for daphne in self.daphnes:
            daphne.start()
        self.log(
            f"[faults] daphne a :{self.daphnes[0].port}, b :{self.daphnes[1].port}; "
            f"{p.users} users x {p.devices_per_user} devices, {len(self.seed['chats'])} chats"
        )

    def teardown(self, ok: bool) -> None:
        for daphne in self.daphnes:
            with contextlib.suppress(Exception):
                daphne.stop()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.stop()
        if self.pg is not None:
            with contextlib.suppress(Exception):
                self.pg.destroy()
        if self.workdir is not None:
            if ok and not self.keep:
                shutil.rmtree(self.workdir, ignore_errors=True)
            else:
                self.log(f"[faults] logs kept in {self.workdir}")

    # --- the run ----------------------------------------------------------------------------------

    async def run(self) -> dict:
        # websockets logs "keepalive ping failed" with a traceback when a server closes a socket
        # mid-ping (every 4503, every SIGKILL); the client handles it, so keep the report readable.
        ws_logger = logging.getLogger("websockets")
        level = ws_logger.level
        ws_logger.setLevel(logging.CRITICAL)
        try:
            return await self._run()
        finally:
            ws_logger.setLevel(level)

    async def _run(self) -> dict:
        p = self.profile
        self.clock = Clock()
        hands = next(chat for chat in self.seed["chats"] if chat.get("all_hands"))
        self.hands_id = hands["id"]
        self.quiet_id = next(chat["id"] for chat in self.seed["chats"] if chat.get("quiet"))
        self.user0 = self.seed["users"][0]
        self.pop = Population(
            users=self.seed["users"],
            chats=self.seed["chats"],
            ports=[d.port for d in self.daphnes],
            devices_per_user=p.devices_per_user,
            senders_per_user=p.senders_per_user,
            send_interval=p.send_interval,
            clock=self.clock,
            change_ratio=p.change_ratio,
        )
        self.control = [ControlSocket(d.port, self.user0["token"]) for d in self.daphnes]
        self.pop.start()
        for control in self.control:
            await control.open()
        await asyncio.sleep(p.warmup)
        counts: dict[str, int] = {}
        for kind, hold in p.faults:
            counts[kind] = counts.get(kind, 0) + 1
            record = FaultRecord(kind=kind, label=f"{kind} #{counts[kind]}")
            await self._inject(record, hold)
            self.records.append(record)
            await self._probe_live(record)
            for n, control in enumerate(self.control):
                for _attempt in range(20):  # a Redis fault closed it (4503): open it again
                    if not self.daphnes[n].alive() or await control.open():
                        break
                    await asyncio.sleep(0.25)
            await asyncio.sleep(p.quiet)
        self.log(f"[faults] faults done at {self.clock.now():.1f} s; draining {self.pop.pending()} pending sends")
        drained = await self.pop.drain(p.drain_timeout)
        await asyncio.sleep(1.5)  # in-flight live events
        catchup_ok = await self._final_catch_up()
        await self.pop.close()
        for control in self.control:
            await control.close()
        for record in self.records:
            self._recovery(record)
        return self._verify(drained=drained, catchup_ok=catchup_ok)

    def _live_port(self) -> int:
        return next(d.port for d in self.daphnes if d.alive())

    async def _inject(self, record: FaultRecord, hold: float) -> None:
        now = self.clock.now
        record.t0 = now()
        if record.kind == "redis":
            await asyncio.to_thread(self.redis.stop)
            self.log(f"[faults] {now():6.1f}s redis down ({record.label})")
            # Committed while the layer is gone: its wake-up is lost for sure.
            quiet = await self._post(self.quiet_id, f"quiet-{record.label}", f"quiet:{record.label}")
            record.quiet_seq = quiet["seq"]
            # What REST does with a login-session token while the cache is gone (informational).
            with contextlib.suppress(Exception):
                status, body = await http(self._live_port(), "GET", "/api/users/me", self.seed["session_token"])
                record.rest_session.append((status, body.get("code") if isinstance(body, dict) else None))
            await asyncio.sleep(hold)
            await asyncio.to_thread(self.redis.start)
        elif record.kind == "pg":
            if hold <= 0:
                # A plain restart: the outage is short; look for its evidence while it lasts.
                done = asyncio.Event()
                checks = asyncio.create_task(self._outage_checks(record, done))
                await asyncio.to_thread(self.pg.restart)
                done.set()
                await checks
            else:
                await asyncio.to_thread(self.pg.stop, "fast")
                down_at = now()
                self.log(f"[faults] {now():6.1f}s postgres down ({record.label})")
                done = asyncio.Event()
                checks = asyncio.create_task(self._outage_checks(record, done))
                await asyncio.sleep(hold)
                done.set()
                await checks
                up_at = now()
                record.acks_while_down = sum(1 for t, _ in self.pop.stats.ack_log if down_at + 0.05 < t < up_at)
                await asyncio.to_thread(self.pg.start)
        elif record.kind == "kill":
            await asyncio.to_thread(self.daphnes[1].sigkill)
        else:  # pragma: no cover - profiles are fixed
            raise ValueError(record.kind)
        record.t_back = now()
        self.log(f"[faults] {record.t_back:6.1f}s {record.label} back after {record.t_back - record.t0:.2f} s")

    async def _outage_checks(self, record: FaultRecord, done: asyncio.Event) -> None:
        """While PostgreSQL is down: REST must say 503 service_unavailable, sockets an error frame."""
        chat = self.hands_id
        token = self.user0["token"]
        rest_ok: set[int] = set()
        socket_ok: set[int] = set()
        handshake_ok: set[int] = set()
        n = 0
        while not done.is_set():
            for idx, daphne in enumerate(self.daphnes):
                if not daphne.alive():
                    continue
                if idx not in handshake_ok:
                    result = await self._fresh_socket(daphne.port, token)
                    if not done.is_set():
                        record.handshake.append((idx, *result))
                        if result == ("service_unavailable", 4503):
                            handshake_ok.add(idx)
                if idx not in rest_ok:
                    try:
                        status, body = await http(
                            daphne.port, "GET", f"/api/chats/{chat}/messages?after_seq=0&limit=1", token, timeout=3
                        )
                        code = body.get("code") if isinstance(body, dict) else None
                    except (OSError, TimeoutError, asyncio.IncompleteReadError, HttpError) as exc:
                        status, code = 0, type(exc).__name__
                    if not done.is_set():
                        record.rest.append((idx, status, code))
                        if status == 503 and code == "service_unavailable":
                            rest_ok.add(idx)
                if idx not in socket_ok:
                    n += 1
                    frame = await self.control[idx].request(
                        {"type": "message.read", "chat_id": chat, "up_to_seq": 0},
                        ref=f"pg-{record.label}-{n}",
                        timeout=3,
                    )
                    if not done.is_set():
                        record.socket.append(
                            (idx, frame.get("type") if frame else None, frame.get("code") if frame else None)
                        )
                        if frame and frame.get("type") == "error" and frame.get("code") == "service_unavailable":
                            socket_ok.add(idx)
            await asyncio.sleep(0.1)

    @staticmethod
    async def _fresh_socket(port: int, token: str) -> tuple:
        """Open a new socket: (first frame's type or error code, close code or None)."""
        try:
            async with connect(f"ws://127.0.0.1:{port}/ws/?token={token}", open_timeout=3, proxy=None) as ws:
                first = json.loads(await asyncio.wait_for(ws.recv(), 3))
                what = first.get("code") if first.get("type") == "error" else first.get("type")
                try:
                    await asyncio.wait_for(ws.recv(), 2)
                except ConnectionClosed:
                    pass
                return what, ws.close_code
        except ConnectionClosed as exc:
            return "closed", exc.rcvd.code if exc.rcvd else None
        except Exception as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            return f"{type(exc).__name__}{f' {status}' if status else ''}", None

    async def _post(self, chat_id: int, client_id: str, text: str) -> dict:
        """One message over REST as user 0, retried with the same client_id until stored."""
        user = self.user0
        self.pop.stats.sent[(user["id"], client_id)] = (chat_id, text, self.clock.now())
        for _attempt in range(100):
            try:
                status, body = await http(
                    self._live_port(),
                    "POST",
                    f"/api/chats/{chat_id}/messages",
                    user["token"],
                    {"client_id": client_id, "text": text},
                )
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                status, body = 0, None
            if status in (200, 201):
                self.pop.stats.acks[(user["id"], client_id)] = Ack(
                    chat_id=body["chat_id"],
                    seq=body["seq"],
                    id=body["id"],
                    text=body["text"],
                    t=self.clock.now(),
                    duplicate=status == 200,
                    device="probe",
                    version=body["version"],
                )
                return body
            await asyncio.sleep(0.2)
        raise RuntimeError(f"probe message {client_id} was never stored")

    async def _probe_live(self, record: FaultRecord) -> None:
        """After a fault: do sockets that stayed open through it receive live events again?"""
        survivors = [(d, d.session) for d in self.pop.devices if d.session is not None and d.session.t_open < record.t0]
        tag = f"f{len(self.records)}"
        deadline = time.monotonic() + self.profile.probe_timeout
        devices = self.pop.devices
        n = 0
        while True:
            n += 1
            await self._post(self.hands_id, f"probe-{tag}-{n}", f"probe:{tag}:{n}")
            await asyncio.sleep(0.3)
            alive = [(d, s) for d, s in survivors if s.t_close is None]
            done = all(tag in d.probe_hits for d in devices) and all(tag in s.probe_hits for _, s in alive)
            if done or time.monotonic() > deadline:
                break
        # Sockets kept open through the fault must not have gone deaf ...
        record.survivors = len(alive)
        record.survivors_live = sum(1 for _, s in alive if tag in s.probe_hits)
        record.deaf = [
            f"{d.name}@{'ab'[s.server]} open since {s.t_open:.1f}s, {d.state}"
            for d, s in alive
            if tag not in s.probe_hits
        ]
        record.not_live = [
            f"{d.name}@{'ab'[d.server]}:{d.state}{'' if d.session else ' (no socket)'}"
            for d in devices
            if tag not in d.probe_hits
        ]
        # ... and every device, on whatever socket it has now, must hear live events again.
        hits = [d.probe_hits[tag] for d in devices if tag in d.probe_hits]
        record.devices = len(devices)
        record.devices_live = len(hits)
        if len(hits) == len(devices):
            record.live_after = round(max(hits) - record.t_back, 2)
        record.resync_closes = self.pop.stats.close_codes.get(4503, 0) - self._closes_4503
        self._closes_4503 = self.pop.stats.close_codes.get(4503, 0)
        self.log(
            f"[faults] {self.clock.now():6.1f}s after {record.label}: live events on {record.devices_live}/"
            f"{record.devices} devices within {record.live_after} s; {record.survivors_live}/{record.survivors} "
            f"sockets kept open through it; {record.resync_closes} closed with 4503 (probe messages: {n})"
        )
        if record.quiet_seq:
            # The message posted to the quiet room during the outage: no later message there reveals
            # a gap, so members learn of it only if the server makes them resync.
            members = [d for d in self.pop.devices if self.quiet_id in d.known]
            deadline = time.monotonic() + self.profile.probe_timeout
            while time.monotonic() < deadline:
                seen = [d for d in members if record.quiet_seq in d.known[self.quiet_id]]
                if len(seen) == len(members):
                    break
                await asyncio.sleep(0.2)
            record.quiet_devices = len(members)
            record.quiet_seen = len(seen)
            record.quiet_after = round(self.clock.now() - record.t_back, 2) if len(seen) == len(members) else None
            self.log(
                f"[faults] {self.clock.now():6.1f}s quiet-room message from the outage known to "
                f"{record.quiet_seen}/{record.quiet_devices} member devices"
            )

    def _recovery(self, record: FaultRecord) -> None:
        log = self.pop.stats.ack_log
        after = [t for t, _ in log if t > record.t_back]
        if after:
            record.first_ack_after = round(min(after) - record.t_back, 2)
        senders = {d.name for d in self.pop.devices if d.sender}
        first: dict[str, float] = {}
        for t, name in log:
            if t > record.t_back and name not in first:
                first[name] = t
        if senders and senders <= set(first):
            record.all_senders_after = round(max(first.values()) - record.t0, 2)
        record.stalled_senders = sum(1 for t in first.values() if t - record.t_back > 1.0) + len(senders - set(first))

    async def _final_catch_up(self) -> bool:
        port = self._live_port()
        ok = True

        async def one(device) -> bool:
            for chat in device.chats:
                for _attempt in range(20):
                    try:
                        await device.catch_up(port, chat)
                        await device.catch_up_changes(port, chat)
                        break
                    except (HttpError, OSError, TimeoutError, asyncio.IncompleteReadError):
                        await asyncio.sleep(0.5)
                else:
                    return False
            return True

        results = await asyncio.gather(*(one(d) for d in self.pop.devices))
        ok = all(results)
        return ok

    # --- verification -----------------------------------------------------------------------------

    def _load_db(self):
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.pg.port, user=infra.PG_USER, dbname=infra.DB_NAME) as conn:
            rows = conn.execute(
                # The text as sent: an edited message's first text is its oldest history entry; a
                # deleted one's is erased (NULL: not compared).
                "SELECT chat_id, seq, id, sender_id, client_id, CASE WHEN deleted_at IS NULL THEN COALESCE("
                "(SELECT e.text FROM chats_messageedit e WHERE e.message_id = m.id ORDER BY e.id LIMIT 1), text)"
                " END FROM chats_message m ORDER BY chat_id, seq"
            ).fetchall()
            last_seq = dict(conn.execute("SELECT id, last_seq FROM chats_chat").fetchall())
            dup_keys = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM chats_message WHERE client_id IS NOT NULL "
                "GROUP BY sender_id, client_id HAVING count(*) > 1) d"
            ).fetchone()[0]
            dup_seq = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM chats_message GROUP BY chat_id, seq HAVING count(*) > 1) d"
            ).fetchone()[0]
            changing = conn.execute(
                "SELECT m.chat_id, m.seq, m.id, m.text, m.deleted_at IS NOT NULL, m.reactions,"
                " m.seq = ANY(c.pinned_seqs), m.version, m.kind, m.sender_id"
                " FROM chats_message m JOIN chats_chat c ON c.id = m.chat_id"
            ).fetchall()
            versions = dict(conn.execute("SELECT id, version FROM chats_chat").fetchall())
            edits: dict[int, list[str]] = {}
            for message_id, text in conn.execute("SELECT message_id, text FROM chats_messageedit ORDER BY id"):
                edits.setdefault(message_id, []).append(text)
            reactions = set(conn.execute("SELECT message_id, user_id, emoji FROM chats_reaction").fetchall())
        changes = {"messages": changing, "versions": versions, "edits": edits, "reactions": reactions}
        return rows, last_seq, dup_keys, dup_seq, changes

    def _verify(self, *, drained: bool, catchup_ok: bool) -> dict:
        stats = self.pop.stats
        rows, last_seq, dup_keys, dup_seq, db_changes = self._load_db()
        change_report = self._verify_changes(db_changes)
        by_key = {
            (sender, cid): (chat, seq, mid, text) for chat, seq, mid, sender, cid, text in rows if cid is not None
        }
        by_chat: dict[int, dict[int, int]] = {}
        for chat, seq, mid, *_ in rows:
            by_chat.setdefault(chat, {})[seq] = mid

        lost, wrong = [], []
        for key, ack in stats.acks.items():
            row = by_key.get(key)
            if row is None:
                lost.append(key)
            elif row[:3] != (ack.chat_id, ack.seq, ack.id) or row[3] not in (None, ack.text):
                wrong.append((key, row, ack))
        unacked_rows = [key for key in by_key if key not in stats.acks]
        unknown_rows = [key for key in by_key if key not in stats.sent]
        gaps = 0
        for chat, last in last_seq.items():
            seqs = by_chat.get(chat, {})
            gaps += sum(1 for s in range(1, last + 1) if s not in seqs) + sum(1 for s in seqs if s > last)

        devices_ok = 0
        missing = extra = mismatched = 0
        for device in self.pop.devices:
            good = True
            for chat in device.chats:
                have, truth = device.known[chat], by_chat.get(chat, {})
                m = sum(1 for s in truth if s not in have)
                x = sum(1 for s in have if s not in truth)
                w = sum(1 for s, mid in have.items() if s in truth and truth[s] != mid)
                missing, extra, mismatched = missing + m, extra + x, mismatched + w
                good = good and not (m or x or w)
            devices_ok += good

        crashes = {d.name: d.log().count("Exception inside application") for d in self.daphnes}
        tracebacks = {d.name: d.log().count("Traceback (most recent call last)") for d in self.daphnes}
        survivors_alive = [d.name for d in self.daphnes if not d.killed and not d.alive()]
        live = sum(d.live_count for d in self.pop.devices)
        fetched = sum(d.fetched_count for d in self.pop.devices)
        error_codes: dict[str, int] = {}
        for _t, code, _server in stats.error_frames:
            error_codes[code] = error_codes.get(code, 0) + 1

        pg_records = [r for r in self.records if r.kind == "pg"]
        redis_records = [r for r in self.records if r.kind == "redis"]
        report = {
            "profile": self.profile.name,
            "duration_s": round(self.clock.now(), 1),
            "devices": len(self.pop.devices),
            "senders": sum(1 for d in self.pop.devices if d.sender),
            "sent": len(stats.sent),
            "send_attempts": stats.attempts,
            "acked": len(stats.acks),
            "acked_as_duplicate": stats.duplicate_acks
            + sum(1 for a in stats.acks.values() if a.device == "probe" and a.duplicate),
            "lost": len(lost),
            "ack_mismatch": len(wrong) + len(stats.bad_acks),
            "duplicated_rows": dup_keys + dup_seq,
            "duplicated_live_deliveries": stats.live_dups,
            "conflicting_deliveries": len(stats.conflicts) + mismatched,
            "ghost_messages_on_devices": extra,
            "foreign_events": len(stats.foreign),
            "seq_gaps": gaps,
            "rows_in_db": len(rows),
            "rows_never_acked": len(unacked_rows),
            "rows_never_sent": len(unknown_rows),
            "devices_converged": devices_ok,
            "messages_missing_on_devices": missing,
            "catchup_order_violations": len(stats.order_violations),
            "delivered_live": live,
            "delivered_by_catchup": fetched,
            "reconnects": stats.reconnects,
            "failures": dict(stats.failures.most_common()),
            "error_frames": error_codes,
            "close_codes": {str(k): v for k, v in stats.close_codes.items()},
            "catchup_failures": dict(stats.catchup_failures),
            "drained": drained,
            "final_catchup_ok": catchup_ok,
            "daphne_unhandled_exceptions": crashes,
            "daphne_tracebacks": tracebacks,
            "servers_died_unexpectedly": survivors_alive,
            "pg_outage_rest_503": any(
                any(s == 503 and c == "service_unavailable" for _, s, c in r.rest) for r in pg_records
            ),
            "pg_outage_socket_error": any(
                any(t == "error" and c == "service_unavailable" for _, t, c in r.socket) for r in pg_records
            ),
            "pg_outage_new_socket_4503": any(
                any(w == "service_unavailable" and c == 4503 for _, w, c in r.handshake) for r in pg_records
            ),
            "pg_outage_rest_non_503": sorted({(s, c) for r in pg_records for _, s, c in r.rest if s != 503}, key=str),
            "redis_live_resumed": bool(redis_records)
            and all(r.survivors_live == r.survivors and r.devices_live == r.devices for r in redis_records),
            "redis_outage_message_seen_by_all": bool(redis_records)
            and all(r.quiet_seen == r.quiet_devices for r in redis_records),
            "faults": [
                vars(r) | {"rest": _summary(r.rest), "socket": _summary(r.socket), "handshake": _summary(r.handshake)}
                for r in self.records
            ],
            "samples": {
                "lost": [list(k) for k in lost[:5]],
                "wrong": [repr(w) for w in wrong[:3]] + stats.bad_acks[:3],
                "conflicts": stats.conflicts[:5],
                "foreign": stats.foreign[:5],
                "order": stats.order_violations[:5],
            },
        }
        report.update(change_report)
        report["problems"] = problems(report)
        report["ok"] = not report["problems"]
        return report

    def _verify_changes(self, db: dict) -> dict:
        """Every device's message state against PostgreSQL; every answered change against the result."""
        stats = self.pop.stats
        truth: dict[int, dict[int, dict]] = {}
        ids: dict[tuple[int, int], int] = {}
        counts_wrong = 0
        for chat, seq, mid, text, deleted, reactions, pinned, version, kind, sender in db["messages"]:
            truth.setdefault(chat, {})[seq] = {
                "text": text,
                "deleted": deleted,
                "reactions": [(emoji, count) for emoji, count in reactions],
                "pinned": pinned,
                "version": version,
                "kind": kind,
                "sender_id": sender,
            }
            ids[(chat, seq)] = mid
            rows = Counter(emoji for m, _u, emoji in db["reactions"] if m == mid)
            counts_wrong += rows != Counter(dict(reactions))

        converged, state_samples = 0, []
        for device in self.pop.devices:
            bad = [
                chat
                for chat in device.chats
                if device.held[chat] != db["versions"][chat] or device.vstate[chat] != truth.get(chat, {})
            ]
            converged += not bad
            if bad and len(state_samples) < 3:
                chat = bad[0]
                diff = {
                    seq: (device.vstate[chat].get(seq), m)
                    for seq, m in truth.get(chat, {}).items()
                    if device.vstate[chat].get(seq) != m
                }
                state_samples.append(
                    f"{device.name} chat {chat}: holds {device.held[chat]} of {db['versions'][chat]}; "
                    f"{len(diff)} differ, e.g. {next(iter(diff.items()), None)}"
                )

        done = [c for c in stats.changes if c.refused is None]
        refused = Counter(c.refused for c in stats.changes if c.refused is not None)
        # Doubled: two answers claiming one version of a chat (a pin also claims its system message's).
        claims: Counter = Counter()
        for change in done:
            if change.changed:
                claims[(change.chat_id, change.version)] += 1
                if change.op == "pin" and change.arg:
                    claims[(change.chat_id, change.version + 1)] += 1
        for ack in stats.acks.values():
            if not ack.duplicate:
                claims[(ack.chat_id, ack.version)] += 1
        doubled = sum(n - 1 for n in claims.values() if n > 1)
        doubled += sum(1 for chat, version in claims if version > db["versions"][chat])

        lost, samples = 0, []
        original = {(a.chat_id, a.seq): a.text for a in stats.acks.values()}
        by_message: dict[tuple[int, int], list] = {}
        for change in sorted(done, key=lambda c: (c.device, c.order)):
            by_message.setdefault((change.chat_id, change.seq), []).append(change)
        for key, changes in by_message.items():
            now, mid = truth[key[0]][key[1]], ids[key]
            history = db["edits"].get(mid, [])
            own = [c for c in changes if c.op in ("edit", "delete")]
            if own:
                edits = [c.arg for c in own if c.op == "edit"]
                if any(c.op == "delete" for c in own):
                    wrong = (not now["deleted"]) + len(history)
                else:
                    expected = [original[key], *edits[:-1]]
                    wrong = (now["text"] != (edits[-1] if edits else original[key])) + (history != expected)
                    doubled += sum((Counter(history) - Counter(expected)).values())
                lost += wrong
                if wrong and len(samples) < 5:
                    samples.append(f"{key}: {[(c.op, c.arg, c.version) for c in own]} -> {now['text']!r} {history}")
            last_reaction: dict[tuple[int, str], bool] = {}
            for change in changes:
                if change.op == "react":
                    last_reaction[(change.user_id, change.arg[0])] = change.arg[1]
            for (user, emoji), present in last_reaction.items():
                if not now["deleted"] and ((mid, user, emoji) in db["reactions"]) != present:
                    lost += 1
                    samples.append(f"{key}: user {user} {emoji} should be {'on' if present else 'off'}")
            pins = [c for c in changes if c.op == "pin"]
            if pins:
                last = max(pins, key=lambda c: (c.version, c.changed))
                expected = bool(last.arg) and not now["deleted"]
                if now["pinned"] != expected:
                    lost += 1
                    samples.append(f"{key}: pinned {now['pinned']}, last pin answered {last.arg} at {last.version}")
        by_op = Counter(c.op for c in done if c.changed)
        return {
            "change_attempts": stats.change_attempts,
            "changes_answered": len(done),
            "changes_applied": dict(by_op),
            "changes_refused": dict(refused),
            "changes_lost": lost,
            "changes_doubled": doubled,
            "reaction_counts_wrong": counts_wrong,
            "devices_state_converged": converged,
            "version_repairs": stats.version_repairs,
            "change_samples": samples[:5] + state_samples,
        }


def _summary(pairs: list) -> dict:
    out: dict[str, int] = {}
    for item in pairs:
        key = "/".join(str(x) for x in item[1:])
        out[key] = out.get(key, 0) + 1
    return out


def problems(report: dict) -> list[str]:
    """Every broken guarantee, in words. Empty means the run passed."""
    out = []
    for key in (
        "lost",
        "ack_mismatch",
        "duplicated_rows",
        "duplicated_live_deliveries",
        "conflicting_deliveries",
        "ghost_messages_on_devices",
        "foreign_events",
        "seq_gaps",
        "rows_never_sent",
        "messages_missing_on_devices",
        "catchup_order_violations",
    ):
        if report[key]:
            out.append(f"{key} = {report[key]}")
    for key in ("changes_lost", "changes_doubled", "reaction_counts_wrong"):
        if report[key]:
            out.append(f"{key} = {report[key]}: {report['change_samples']}")
    if report["devices_state_converged"] != report["devices"]:
        out.append(
            f"only {report['devices_state_converged']} of {report['devices']} devices hold the stored message "
            f"state and version: {report['change_samples']}"
        )
    unexpected = set(report["changes_refused"]) - {"gone", "too_many_reactions", "too_many_pins"}
    if unexpected:
        out.append(f"changes refused with {sorted(unexpected)}: {report['changes_refused']}")
    if report["sent"] != report["acked"] or not report["drained"]:
        out.append(f"not every sent message was acked ({report['acked']} of {report['sent']})")
    if report["rows_never_acked"]:
        out.append(f"rows_never_acked = {report['rows_never_acked']}")
    if report["devices_converged"] != report["devices"]:
        out.append(f"only {report['devices_converged']} of {report['devices']} devices converged")
    if not report["final_catchup_ok"]:
        out.append("final catch-up failed for some device")
    if report["servers_died_unexpectedly"]:
        out.append(f"servers died: {report['servers_died_unexpectedly']}")
    kinds = {f["kind"] for f in report["faults"]}
    if "pg" in kinds and not report["pg_outage_rest_503"]:
        out.append("no REST 503 service_unavailable seen during a PostgreSQL outage")
    if "pg" in kinds and not report["pg_outage_socket_error"]:
        out.append("no socket error frame service_unavailable seen during a PostgreSQL outage")
    if "pg" in kinds and not report["pg_outage_new_socket_4503"]:
        out.append("no new socket during a PostgreSQL outage got error service_unavailable + close 4503")
    bad_rest = [pair for pair in report["pg_outage_rest_non_503"] if pair[0] not in (0,)]
    if bad_rest:
        out.append(f"REST during a PostgreSQL outage answered other than 503: {bad_rest}")
    for fault in report["faults"]:
        if fault["survivors"] and fault["survivors_live"] != fault["survivors"]:
            out.append(
                f"after {fault['label']}: only {fault['survivors_live']} of {fault['survivors']} open sockets got live events"
            )
        if fault["devices_live"] != fault["devices"]:
            out.append(
                f"after {fault['label']}: only {fault['devices_live']} of {fault['devices']} devices got live events again"
            )
        if any(status >= 500 and status != 503 for status, _ in fault["rest_session"]):
            out.append(
                f"{fault['label']}: REST with a login-session token answered {fault['rest_session']} during the outage"
            )
        if fault["quiet_devices"] and fault["quiet_seen"] != fault["quiet_devices"]:
            out.append(
                f"after {fault['label']}: the message committed during the outage reached only "
                f"{fault['quiet_seen']} of {fault['quiet_devices']} member devices (no resync)"
            )
        if fault["acks_while_down"]:
            out.append(f"{fault['label']}: {fault['acks_while_down']} acks while PostgreSQL was down")
    return out


def render(report: dict) -> str:
    """The report as two markdown tables (totals, then one row per fault)."""
    title = (
        f"Fault suite, profile `{report['profile']}`: {report['duration_s']} s, {report['devices']} devices "
        f"({report['senders']} sending), 2 daphne processes, private PostgreSQL + Redis"
    )
    lines = [title, ""]
    lines += ["| measure | value |", "|---|---|"]
    for key in (
        "sent",
        "send_attempts",
        "acked",
        "acked_as_duplicate",
        "lost",
        "ack_mismatch",
        "duplicated_rows",
        "duplicated_live_deliveries",
        "conflicting_deliveries",
        "ghost_messages_on_devices",
        "seq_gaps",
        "rows_in_db",
        "rows_never_acked",
        "devices_converged",
        "messages_missing_on_devices",
        "catchup_order_violations",
        "delivered_live",
        "delivered_by_catchup",
        "reconnects",
        "pg_outage_rest_503",
        "pg_outage_socket_error",
        "pg_outage_new_socket_4503",
        "redis_live_resumed",
        "redis_outage_message_seen_by_all",
        "change_attempts",
        "changes_answered",
        "changes_applied",
        "changes_refused",
        "changes_lost",
        "changes_doubled",
        "reaction_counts_wrong",
        "devices_state_converged",
        "version_repairs",
    ):
        lines.append(f"| {key} | {report[key]} |")
    lines.append(f"| error frames | {report['error_frames']} |")
    lines.append(f"| client-side failures | {report['failures']} |")
    lines.append(f"| daphne unhandled exceptions | {report['daphne_unhandled_exceptions']} |")
    header = (
        "| fault | down (s) | first ack after back (s) | every sender acking again (s after fault) | "
        "devices live again | all live again after back (s) | sockets kept open (deaf) | closed 4503 | "
        "outage message seen | outage evidence |"
    )
    lines += ["", header, "|---|---|---|---|---|---|---|---|---|---|"]
    for f in report["faults"]:
        down = round(f["t_back"] - f["t0"], 2)
        evidence = ""
        quiet = f"{f['quiet_seen']}/{f['quiet_devices']} after {f['quiet_after']} s" if f["quiet_devices"] else ""
        if f["kind"] == "pg":
            evidence = f"REST {f['rest']}; socket command {f['socket']}; new socket {f['handshake']}"
        elif f["kind"] == "redis" and f["rest_session"]:
            evidence = f"REST with session token during outage: {f['rest_session']}"
        lines.append(
            f"| {f['label']} | {down} | {f['first_ack_after']} | {f['all_senders_after']} | "
            f"{f['devices_live']}/{f['devices']} | {f['live_after']} | {f['survivors']} ({f['survivors'] - f['survivors_live']}) | "
            f"{f['resync_closes']} | {quiet} | {evidence} |"
        )
    lines.append("")
    lines.append("PASS" if report["ok"] else "FAIL:\n- " + "\n- ".join(report["problems"]))
    return "\n".join(lines)


def run_profile(profile: Profile, *, log=print, keep: bool = False) -> dict:
    """Set up, run, verify and tear down; the report dict (``report["ok"]``)."""
    suite = Suite(profile, log=log, keep=keep)
    ok = False
    try:
        suite.setup()
        report = asyncio.run(suite.run())
        ok = report["ok"]
        report["workdir"] = str(suite.workdir)
        return report
    finally:
        suite.teardown(ok)
