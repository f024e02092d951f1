"""The client population: devices that send continuously and catch up like a real client.

Each :class:`Device` is one socket of one user. It connects to one of the servers; a
sending device sends one message at a time, each with a fresh ``client_id``, and on
*any* failure (an ``error`` frame for it, no ack within the timeout, the socket closing,
a failed handshake) it reconnects -- to the other server -- and resends the *same*
``client_id`` until it gets ``message.ack``. Every device keeps what it has seen per
chat as ``seq -> message id``; on (re)connect and whenever it notices a hole it fetches
``GET /api/chats/{id}/messages?after_seq=N``, exactly as docs/PROTOCOL.md §9 asks.

Sending devices also change messages (issue 12): between sends they edit and delete their
own messages, react to and unreact from any text message, and pin and unpin in direct chats;
each change is retried after any failure until it gets its reply (a repeat changes nothing).
Every device also keeps every message's changing state (text, deleted, reactions, pinned,
version) by the version rule of §3: ``version <= K`` is ignored, ``K + 1`` applied, a jump
repaired from ``GET /api/chats/{id}/changes?after_version=K``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

ACK_TIMEOUT = 5.0
HTTP_TIMEOUT = 5.0
OPEN_TIMEOUT = 5.0


class Clock:
    """Seconds since the run started (monotonic)."""

    def __init__(self):
        self.start = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.start


class Reconnect(Exception):
    """Give up on this socket: reconnect and resend."""


class HttpError(Exception):
    def __init__(self, status: int, body):
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {body!r}"[:300])


async def http(port: int, method: str, path: str, token: str, body: dict | None = None, timeout: float = HTTP_TIMEOUT):
    """A minimal HTTP/1.1 JSON request (no client library needed); returns (status, json or None)."""

    async def _do():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            data = json.dumps(body).encode() if body is not None else b""
            head = (
                f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                "Accept: application/json\r\nConnection: close\r\n"
            )
            if body is not None:
                head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            writer.write(head.encode() + b"\r\n" + data)
            await writer.drain()
            header = await reader.readuntil(b"\r\n\r\n")
            lines = header.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    key, value = line.split(":", 1)
                    headers[key.strip().lower()] = value.strip()
            if "content-length" in headers:
                payload = await reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                payload = b""
                while True:
                    size = int((await reader.readline()).strip() or b"0", 16)
                    if size == 0:
                        break
                    payload += await reader.readexactly(size)
                    await reader.readline()
            else:
                payload = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload[:200].decode("utf-8", "replace")
        return status, parsed

    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that arrives as
    # the request fails, and a catch-up loop being cancelled would then run on forever.
    async with asyncio.timeout(timeout):
        return await _do()


@dataclass
class Ack:
    chat_id: int
    seq: int
    id: int
    text: str
    t: float
    duplicate: bool
    device: str
    version: int = 0


@dataclass
class Change:
    """One change a device made, as its reply told it (or the refusal that ended it)."""

    device: str
    user_id: int
    order: int  # the device's program order
    op: str  # edit, delete, react, pin
    chat_id: int
    seq: int
    arg: object  # edit: text; react: (emoji, add); pin: pinned
    t: float
    version: int = 0
    changed: bool = False
    refused: str | None = None


# A refusal that ends a change for good (another device's delete raced it, a limit): not retried.
FINAL_REFUSALS = {"gone", "too_many_reactions", "too_many_pins", "forbidden"}
EMOJI = ("👍", "❤️", "😂", "🔥")


def message_state(message: dict) -> dict:
    """The part of a message that changes, as the version rule tracks it."""
    return {
        "text": message["text"],
        "deleted": message["deleted"],
        "reactions": [(r["emoji"], r["count"]) for r in message["reactions"]],
        "pinned": message["pinned"],
        "version": message["version"],
        "kind": message["kind"],
        "sender_id": message["sender_id"],
    }


@dataclass
class Session:
    """One open socket of a device, from ``session.ready`` to close."""

    server: int
    t_open: float
    t_close: float | None = None
    seen: set = field(default_factory=set)
    # tag -> time the first live message carrying that probe tag arrived on this socket
    probe_hits: dict = field(default_factory=dict)


class Stats:
    """Everything the population observed, for the report."""

    def __init__(self):
        self.sent: dict[tuple[int, str], tuple[int, str, float]] = {}  # (user, client_id) -> (chat, text, t)
        self.acks: dict[tuple[int, str], Ack] = {}
        self.ack_log: list[tuple[float, str]] = []  # (t, device)
        self.attempts = 0
        self.duplicate_acks = 0
        self.bad_acks: list[str] = []
        self.reconnects = 0
        self.failures: Counter = Counter()
        self.error_frames: list[tuple[float, str, int]] = []  # (t, code, server)
        self.close_codes: Counter = Counter()
        self.sessions_opened: list[tuple[float, str, int]] = []
        self.live_dups = 0  # same (chat, seq) twice on one socket
        self.conflicts: list[str] = []  # same (chat, seq), different message id
        self.foreign: list[str] = []  # an event for a chat the device's user is not in
        self.order_violations: list[str] = []  # catch-up page not strictly ascending
        self.catchup_failures: Counter = Counter()
        self.changes: list[Change] = []  # answered changes, refusals included
        self.change_attempts = 0
        self.version_repairs = 0  # /changes fetches a version jump caused


class Population:
    """All devices plus the shared state that steers them (phase, live servers)."""

    def __init__(
        self,
        *,
        users: list[dict],
        chats: list[dict],
        ports: list[int],
        devices_per_user: int,
        senders_per_user: int,
        send_interval: float,
        clock: Clock,
        seed: int = 1,
        change_ratio: float = 0.45,
    ):
        self.ports = ports
        self.clock = clock
        self.change_ratio = change_ratio
        self.direct = {chat["id"] for chat in chats if chat["kind"] == "direct"}
        self.stats = Stats()
        self.rng = random.Random(seed)
        self.sending = True  # False once draining: finish pending sends, start no new ones
        self.stop = asyncio.Event()
        self.chats_of: dict[int, list[int]] = {u["id"]: [] for u in users}
        self.quiet = {chat["id"] for chat in chats if chat.get("quiet")}
        for chat in chats:
            for member in chat["members"]:
                if member in self.chats_of:
                    self.chats_of[member].append(chat["id"])
        self.devices: list[Device] = []
        for n, user in enumerate(users):
            for d in range(devices_per_user):
                self.devices.append(
                    Device(
                        self,
                        user,
                        index=d,
                        sender=d < senders_per_user,
                        preferred=(n + d) % len(ports),
                        interval=send_interval,
                    )
                )
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(device.run(), name=device.name) for device in self.devices]
        for device, task in zip(self.devices, self._tasks, strict=True):
            device.task = task

    def pending(self) -> int:
        return sum(1 for d in self.devices if d.pending is not None or d.pending_change is not None)

    async def drain(self, timeout: float) -> bool:
        """Stop creating messages; wait until every sent message is acked."""
        self.sending = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending() == 0:
                return True
            await asyncio.sleep(0.1)
        return self.pending() == 0

    async def close(self) -> None:
        self.stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Device:
    def __init__(self, pop: Population, user: dict, *, index: int, sender: bool, preferred: int, interval: float):
        self.pop = pop
        self.user_id = user["id"]
        self.token = user["token"]
        self.name = f"{user['username']}/{index}"
        self.sender = sender
        self.server = preferred
        self.interval = interval
        self.chats = pop.chats_of[self.user_id]
        self.writable = [chat for chat in self.chats if chat not in pop.quiet]
        self.known: dict[int, dict[int, int]] = {chat: {} for chat in self.chats}
        self.contig: dict[int, int] = dict.fromkeys(self.chats, 0)
        self.max_seen: dict[int, int] = dict.fromkeys(self.chats, 0)
        self.live_count = 0
        self.fetched_count = 0
        self.session: Session | None = None
        self.probe_hits: dict[str, float] = {}  # probe tag -> first live arrival on any socket
        self.sessions: list[Session] = []
        self.pending: tuple[str, int, str] | None = None  # (client_id, chat, text)
        self.pending_change: tuple[Change, dict] | None = None  # (the change, its frame without ref)
        self.changes_made = 0
        # The version rule's state per chat: the version held, each message's changing state.
        self.held: dict[int, int] = dict.fromkeys(self.chats, 0)
        self.vstate: dict[int, dict[int, dict]] = {chat: {} for chat in self.chats}
        self.version_gaps: set[int] = set()
        self.own: list[tuple[int, int]] = []  # (chat, seq) of this user's live messages (this device's sends)
        self.mine: dict[tuple[int, int], set[str]] = {}  # (chat, seq) -> my emoji on it
        self._seq = itertools.count(1)
        self._rng = random.Random(zlib.crc32(self.name.encode()) ^ 0x5EED)
        self._waiter: tuple[str, str, asyncio.Future] | None = None  # (ref, client_id, future)
        self.state = "new"  # what the device is waiting for (diagnostics)

    # --- the connection loop ------------------------------------------------------------

    async def run(self) -> None:
        rng = random.Random(zlib.crc32(self.name.encode()))
        while not self.pop.stop.is_set():
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Reconnect as exc:
                self.pop.stats.failures[f"reconnect:{exc}"] += 1
            except InvalidStatus as exc:
                self.pop.stats.failures[f"handshake:{exc.response.status_code}"] += 1
            except (InvalidHandshake, ConnectionClosed, OSError, TimeoutError) as exc:
                self.pop.stats.failures[f"socket:{type(exc).__name__}"] += 1
            if self.pop.stop.is_set():
                return
            self.pop.stats.reconnects += 1
            # Try the other server next: a real client rotates through its endpoints.
            self.server = (self.server + 1) % len(self.pop.ports)
            await asyncio.sleep(rng.uniform(0.1, 0.4))

    async def _session(self) -> None:
        port = self.pop.ports[self.server]
        url = f"ws://127.0.0.1:{port}/ws/?token={self.token}"
        self.state = "connecting"
        async with connect(
            url,
            open_timeout=OPEN_TIMEOUT,
            close_timeout=2,
            ping_interval=5,
            ping_timeout=10,
            max_size=2**22,
            proxy=None,
        ) as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT))
            if first.get("type") != "session.ready":
                raise Reconnect(f"first frame {first.get('type')}")
            session = Session(server=self.server, t_open=self.pop.clock.now())
            self.session = session
            self.sessions.append(session)
            self.pop.stats.sessions_opened.append((session.t_open, self.name, self.server))
            reader = asyncio.create_task(self._read(ws, session))
            # Subscribed first (session.ready), then fetch what was missed: no race with the stream.
            holes = asyncio.create_task(self._fill_holes(port, session))
            self.state = "open"
            try:
                if self.sender:
                    await self._send_loop(ws, reader)
                else:
                    stop = asyncio.create_task(self.pop.stop.wait())
                    await asyncio.wait({reader, stop}, return_when=asyncio.FIRST_COMPLETED)
                    stop.cancel()
                    if reader.done() and not self.pop.stop.is_set():
                        raise Reconnect("closed")
            finally:
                self.state = "closing"
                session.t_close = self.pop.clock.now()
                self.session = None
                holes.cancel()
                reader.cancel()
                await asyncio.wait({holes, reader}, timeout=10)

    # --- receiving ----------------------------------------------------------------------------

    async def _read(self, ws, session: Session) -> None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "message.new":
                    self._on_live(frame["message"], session)
                elif kind == "message.ack":
                    waiter = self._waiter
                    if waiter is not None and frame.get("client_id") == waiter[1] and not waiter[2].done():
                        waiter[2].set_result(frame)
                elif kind in ("message.edited", "message.deleted", "message.reactions", "chat.pins"):
                    waiter = self._waiter
                    if "ref" in frame:  # the reply to this device's change
                        if waiter is not None and frame["ref"] == waiter[0] and not waiter[2].done():
                            waiter[2].set_result(frame)
                    else:
                        self._on_change(frame)
                elif kind == "error":
                    self.pop.stats.error_frames.append((self.pop.clock.now(), frame.get("code"), session.server))
                    waiter = self._waiter
                    if waiter is not None and frame.get("ref") == waiter[0] and not waiter[2].done():
                        waiter[2].set_result(frame)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else (exc.sent.code if exc.sent is not None else 1006)
            self.pop.stats.close_codes[code] += 1
        else:  # the iterator ends quietly on a normal close (1000, 1001)
            self.pop.stats.close_codes[ws.close_code or 1006] += 1

    def _on_live(self, message: dict, session: Session) -> None:
        key = (message["chat_id"], message["seq"])
        if key in session.seen:
            self.pop.stats.live_dups += 1
        session.seen.add(key)
        self.live_count += 1
        text = message.get("text") or ""
        if text.startswith("probe:"):
            tag = text.split(":")[1]
            session.probe_hits.setdefault(tag, self.pop.clock.now())
            self.probe_hits.setdefault(tag, self.pop.clock.now())
        self._store(message, source="live")
        self._versioned(message["chat_id"], message["version"], lambda: self._put(message))

    # --- the version rule (PROTOCOL.md §3) ------------------------------------------------------

    def _put(self, message: dict) -> None:
        """Keep a message's state unless what is held is newer (a catch-up page can be older
        than a live event applied while it was in flight)."""
        state = self.vstate[message["chat_id"]]
        have = state.get(message["seq"])
        if have is None or have["version"] <= message["version"]:
            state[message["seq"]] = message_state(message)

    def _versioned(self, chat: int, version: int, apply) -> None:
        held = self.held.get(chat)
        if held is None:
            self.pop.stats.foreign.append(f"{self.name} got a change of chat {chat}")
            return
        if version <= held:
            return
        if version == held + 1:
            apply()
            self.held[chat] = version
            return
        self.version_gaps.add(chat)  # apply nothing: /changes repairs it

    def _on_change(self, frame: dict) -> None:
        """A change event, or the reply to one of this device's changes that changed something."""
        kind = frame["type"]
        if kind == "message.edited":
            message = frame["message"]
            self._versioned(message["chat_id"], message["version"], lambda: self._put(message))
            return
        chat, version = frame["chat_id"], frame["version"]
        state = self.vstate.get(chat)

        def apply():
            if kind == "message.deleted":
                for seq in frame["seqs"]:
                    have = state.setdefault(seq, {"kind": "text", "sender_id": None})
                    have.update(text="", deleted=True, reactions=[], pinned=False, version=version)
            elif kind == "message.reactions":
                have = state.setdefault(frame["seq"], {})
                have.update(reactions=[(r["emoji"], r["count"]) for r in frame["reactions"]], version=version)
            else:  # chat.pins: the pinned set is absolute; the message that flipped takes the version
                now = set(frame["pinned_seqs"])
                for seq, have in state.items():
                    if have.get("pinned") != (seq in now):
                        have.update(pinned=seq in now, version=version)

        self._versioned(chat, version, apply)

    async def catch_up_changes(self, port: int, chat: int) -> None:
        """Fetch the current state of everything changed after the version held (§9 step 3)."""
        self.version_gaps.discard(chat)
        after = self.held[chat]
        for _page in range(10_000):
            status, body = await http(
                port, "GET", f"/api/chats/{chat}/changes?after_version={after}&limit=200", self.token
            )
            if status != 200:
                self.version_gaps.add(chat)
                raise HttpError(status, body)
            for message in body["results"]:
                self._put(message)
            after = body["version"]
            if not body["has_more"]:
                break
        self.held[chat] = max(self.held[chat], after)

    def _store(self, message: dict, *, source: str) -> None:
        chat, seq, mid = message["chat_id"], message["seq"], message["id"]
        known = self.known.get(chat)
        if known is None:
            self.pop.stats.foreign.append(f"{self.name} got chat {chat} seq {seq}")
            return
        have = known.get(seq)
        if have is not None:
            if have != mid:
                self.pop.stats.conflicts.append(f"{self.name} chat {chat} seq {seq}: {have} vs {mid}")
            return
        known[seq] = mid
        if source == "fetch":
            self.fetched_count += 1
        self.max_seen[chat] = max(self.max_seen[chat], seq)
        contig = self.contig[chat]
        while contig + 1 in known:
            contig += 1
        self.contig[chat] = contig

    # --- catching up --------------------------------------------------------------------------

    async def catch_up(self, port: int, chat: int) -> None:
        """Fetch everything after the contiguous watermark, page by page (ascending seq)."""
        after = self.contig[chat]
        for _page in range(10_000):
            status, body = await http(
                port, "GET", f"/api/chats/{chat}/messages?after_seq={after}&limit=200", self.token
            )
            if status != 200:
                raise HttpError(status, body)
            results = body["results"]
            last = after
            for message in results:
                if message["seq"] <= last or message["chat_id"] != chat:
                    self.pop.stats.order_violations.append(
                        f"{self.name} chat {chat}: seq {message['seq']} after {last}"
                    )
                last = message["seq"]
                self._store(message, source="fetch")
            if not body["has_more"] or not results:
                return
            after = results[-1]["seq"]

    async def _fill_holes(self, port: int, session: Session) -> None:
        """On connect: catch up every chat. Then, every second: any chat with a hole."""
        todo, versions = list(self.chats), list(self.chats)
        while session.t_close is None:
            for chat in todo:
                try:
                    await self.catch_up(port, chat)
                except (HttpError, OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                    key = f"http:{exc.status}" if isinstance(exc, HttpError) else type(exc).__name__
                    self.pop.stats.catchup_failures[key] += 1
            for chat in versions:
                try:
                    await self.catch_up_changes(port, chat)
                except (HttpError, OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                    self.version_gaps.add(chat)
                    key = f"http:{exc.status}" if isinstance(exc, HttpError) else type(exc).__name__
                    self.pop.stats.catchup_failures[f"changes:{key}"] += 1
            await asyncio.sleep(1.0)
            todo = [chat for chat in self.chats if self.max_seen[chat] > self.contig[chat]]
            versions = sorted(self.version_gaps)
            self.pop.stats.version_repairs += len(versions)

    # --- sending ------------------------------------------------------------------------------

    async def _send_loop(self, ws, reader: asyncio.Task) -> None:
        rng = self._rng
        attempt = 0
        while True:
            idle = self.pending is None and self.pending_change is None and self.pop.sending
            if idle and rng.random() < self.pop.change_ratio:
                self.pending_change = self._next_change(rng)
            if self.pending_change is not None:
                attempt += 1
                await self._change(ws, reader, attempt)
                if self.interval:
                    self.state = "pausing"
                    await asyncio.sleep(rng.uniform(0.5, 1.5) * self.interval)
                continue
            if self.pending is None:
                if not self.pop.sending:
                    stop = asyncio.create_task(self.pop.stop.wait())
                    await asyncio.wait({reader, stop}, return_when=asyncio.FIRST_COMPLETED)
                    stop.cancel()
                    if reader.done() and not self.pop.stop.is_set():
                        raise Reconnect("closed")
                    return
                n = next(self._seq)
                client_id = f"{self.name}-{n}-{rng.getrandbits(32):08x}"
                chat = rng.choice(self.writable)
                text = f"{self.name} #{n}"
                self.pending = (client_id, chat, text)
                self.pop.stats.sent[(self.user_id, client_id)] = (chat, text, self.pop.clock.now())
            client_id, chat, text = self.pending
            attempt += 1
            ref = f"{client_id}#{attempt}"
            future = asyncio.get_running_loop().create_future()
            self._waiter = (ref, client_id, future)
            self.pop.stats.attempts += 1
            self.state = "sending"
            await ws.send(
                json.dumps({"type": "message.send", "chat_id": chat, "client_id": client_id, "text": text, "ref": ref})
            )
            self.state = "awaiting ack"
            await asyncio.wait({future, reader}, timeout=ACK_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            self._waiter = None
            if not future.done():
                future.cancel()
                raise Reconnect("closed" if reader.done() else "ack_timeout")
            frame = future.result()
            if frame["type"] == "error":
                raise Reconnect(f"error:{frame.get('code')}")
            self._on_ack(frame, client_id, chat, text)
            self.pending = None
            if self.interval:
                self.state = "pausing"
                await asyncio.sleep(rng.uniform(0.5, 1.5) * self.interval)

    # --- changing messages --------------------------------------------------------------------

    def _next_change(self, rng: random.Random) -> tuple[Change, dict] | None:
        """A random change of a message this device knows: edit or delete its own, react, pin."""
        roll = rng.random()
        self.changes_made += 1
        order = self.changes_made
        now = self.pop.clock.now()
        if roll < 0.35 and self.own:
            chat, seq = rng.choice(self.own)
            if roll < 0.08:
                change = Change(self.name, self.user_id, order, "delete", chat, seq, None, now)
                return change, {"type": "message.delete", "chat_id": chat, "seqs": [seq]}
            text = f"{self.name} edit {order}"
            change = Change(self.name, self.user_id, order, "edit", chat, seq, text, now)
            return change, {"type": "message.edit", "chat_id": chat, "seq": seq, "text": text}
        chat = rng.choice(self.writable)
        live = [s for s, m in self.vstate[chat].items() if m.get("kind") == "text" and not m.get("deleted")]
        if not live:
            return None
        seq = rng.choice(live)
        if roll > 0.85 and chat in self.pop.direct:
            pinned = not self.vstate[chat][seq].get("pinned", False)
            change = Change(self.name, self.user_id, order, "pin", chat, seq, pinned, now)
            return change, {"type": "message.pin", "chat_id": chat, "seq": seq, "pinned": pinned}
        mine = self.mine.get((chat, seq), set())
        emoji = rng.choice(EMOJI)
        add = emoji not in mine and len(mine) < 3
        change = Change(self.name, self.user_id, order, "react", chat, seq, (emoji, add), now)
        kind = "reaction.add" if add else "reaction.remove"
        return change, {"type": kind, "chat_id": chat, "seq": seq, "emoji": emoji}

    async def _change(self, ws, reader: asyncio.Task, attempt: int) -> None:
        """Send the pending change and wait for its reply; any failure reconnects and repeats it."""
        change, frame = self.pending_change
        ref = f"{self.name}-c{change.order}#{attempt}"
        future = asyncio.get_running_loop().create_future()
        self._waiter = (ref, None, future)
        self.pop.stats.change_attempts += 1
        self.state = f"changing ({change.op})"
        await ws.send(json.dumps({**frame, "ref": ref}))
        await asyncio.wait({future, reader}, timeout=ACK_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        self._waiter = None
        if not future.done():
            future.cancel()
            raise Reconnect("closed" if reader.done() else "change_timeout")
        reply = future.result()
        now = self.pop.clock.now()
        if reply["type"] == "error":
            if reply.get("code") not in FINAL_REFUSALS:
                raise Reconnect(f"error:{reply.get('code')}")
            change.refused = reply["code"]
        else:
            change.changed = reply["changed"]
            change.version = (reply["message"] if change.op == "edit" else reply)["version"]
            if change.changed:
                self._on_change(reply)
            key = (change.chat_id, change.seq)
            if change.op == "delete":
                self.own = [own for own in self.own if own != key]
            elif change.op == "react":
                self.mine[key] = {r["emoji"] for r in reply["reactions"] if r.get("me")}
        change.t = now
        self.pop.stats.changes.append(change)
        self.pop.stats.ack_log.append((now, self.name))
        self.pending_change = None

    def _on_ack(self, frame: dict, client_id: str, chat: int, text: str) -> None:
        message = frame["message"]
        stats = self.pop.stats
        now = self.pop.clock.now()
        if (message["chat_id"], message["sender_id"], message["client_id"], message["text"]) != (
            chat,
            self.user_id,
            client_id,
            text,
        ):
            stats.bad_acks.append(f"{self.name} {client_id}: {message}")
        if frame.get("duplicate"):
            stats.duplicate_acks += 1
        stats.acks[(self.user_id, client_id)] = Ack(
            chat_id=message["chat_id"],
            seq=message["seq"],
            id=message["id"],
            text=message["text"],
            t=now,
            duplicate=bool(frame.get("duplicate")),
            device=self.name,
            version=message["version"],
        )
        stats.ack_log.append((now, self.name))
        # The sending device gets the ack instead of message.new: it now has its own message.
        self._store(message, source="ack")
        if not frame.get("duplicate"):
            self._versioned(chat, message["version"], lambda: self._put(message))
        if not message["deleted"]:
            self.own.append((chat, message["seq"]))
