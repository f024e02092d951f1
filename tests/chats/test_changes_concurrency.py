"""Messages that change, under real parallelism: edits, reactions, deletes, pins and forwards racing.

As in test_concurrency.py, every racer is an OS thread with its own PostgreSQL connection
(released together by a barrier) or a WebSocket command running on the server's executor at the
same moment. What is checked is the invariant the protocol promises (PROTOCOL.md §3): every
change bumps the chat's ``version`` by exactly one under the chat lock, so the versions the
callers were told are exactly ``v0+1 .. v0+n``; the stored state agrees with the rows it is
derived from; and ``/changes`` reproduces, page by page, exactly what REST history shows.
"""

from __future__ import annotations

import asyncio
import random
import threading
import urllib.parse
from collections import Counter

import pytest
from channels.db import database_sync_to_async

from chats import services
from chats.exceptions import MessengerError
from chats.models import Chat, Membership, Message, MessageEdit, Reaction
from tests.chats.test_concurrency import Workers
from tests.conftest import ws_connect

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async
EMOJI = ["👍", "❤️", "😂", "🔥", "🎉", "👀"]
RECEIVE_TIMEOUT = 60  # a guard against a hang, not a threshold: the replies come as the lock frees


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    settings.SEND_RATE_LIMIT = 0
    settings.MESSAGE_CHANGE_RATE_LIMIT = 0


def _q(emoji: str) -> str:
    return urllib.parse.quote(emoji)


def _outcome(fn):
    """Run a service call; its result, or ``{"error": code}`` for a refusal."""
    try:
        return fn()
    except MessengerError as exc:
        return {"error": exc.code}


def _rest(api, user, method: str, path: str, body: dict | None = None):
    """A REST call in a thread: ``(status, body)``."""

    def call():
        response = getattr(api(user), method)(path, body, format="json")
        return response.status_code, response.json()

    return call


async def _socket_calls(communicator, frames: list[dict]) -> list[dict]:
    """Send ``frames`` one after another on one socket; each one's reply (or error) by its ref."""
    replies = []
    for index, frame in enumerate(frames):
        ref = f"c{index}"
        await communicator.send_json_to({**frame, "ref": ref})
        while True:
            answer = await communicator.receive_json_from(timeout=RECEIVE_TIMEOUT)
            if answer.get("ref") == ref:
                replies.append(answer)
                break
    return replies


async def _race(thread_fns, socket_plans):
    """Start the threads, queue every socket's first frame, release the threads; all results.

    ``socket_plans`` is a list of ``(communicator, frames)``; a socket runs its frames in order.
    """
    workers = Workers(thread_fns)
    await asyncio.to_thread(workers.start)
    tasks = [asyncio.ensure_future(_socket_calls(c, frames)) for c, frames in socket_plans]
    workers.release()
    thread_results = await asyncio.to_thread(workers.join)
    socket_results = await asyncio.gather(*tasks)
    return thread_results, socket_results


def _assert_contiguous(versions: list[int], *, after: int, last: int) -> None:
    """Each change got its own version and together they are exactly ``after+1 .. last``."""
    assert len(versions) == len(set(versions)), Counter(versions).most_common(3)
    assert sorted(versions) == list(range(after + 1, last + 1))


def _reaction_counts(message_id: int) -> dict[str, int]:
    return dict(Counter(Reaction.objects.filter(message_id=message_id).values_list("emoji", flat=True)))


# --- 20 parallel edits ------------------------------------------------------------------------


async def test_twenty_parallel_edits_of_one_message_take_twenty_versions_in_order(make_user, api):
    """20 edits of one message by its sender at once (service, REST and sockets): the chat's version
    rose by exactly 20, each edit was told its own version, the message carries the last one, there
    are 20 MessageEdit rows, and the history is the chain of texts in version order (each edit
    replaced the text the previous version left), ending with the text of the highest version."""
    alice, bob = await db(make_user)(), await db(make_user)()
    chat = (await db(services.open_direct_chat)(user_id=alice.id, other_user_id=bob.id)).chat
    sent = (await db(services.send_message)(user_id=alice.id, chat_id=chat.id, client_id="e", text="original")).message
    v0 = (await db(Chat.objects.get)(id=chat.id)).version
    texts = [f"edit-{i}" for i in range(20)]

    def via_service(text):
        return lambda: services.edit_message(user_id=alice.id, chat_id=chat.id, seq=sent.seq, text=text).payload()

    def via_rest(text):
        call = _rest(api, alice, "patch", f"/api/chats/{chat.id}/messages/{sent.seq}", {"text": text})

        def run():
            status, body = call()
            assert status == 200, body
            return body

        return run

    thread_fns = [via_service(t) if i % 2 == 0 else via_rest(t) for i, t in enumerate(texts[:10])]
    sockets = [await ws_connect(alice) for _ in range(5)]
    plans = [
        (s, [{"type": "message.edit", "chat_id": chat.id, "seq": sent.seq, "text": t} for t in texts[10 + 2 * i :][:2]])
        for i, s in enumerate(sockets)
    ]
    thread_results, socket_results = await _race(thread_fns, plans)

    replies = list(thread_results)
    for frames in socket_results:
        for frame in frames:
            assert frame["type"] == "message.edited" and frame["changed"] is True, frame
            replies.append(frame["message"])
    assert sorted(r["text"] for r in replies) == sorted(texts)
    versions = [r["version"] for r in replies]
    chat_row = await db(Chat.objects.get)(id=chat.id)
    assert chat_row.version == v0 + 20
    _assert_contiguous(versions, after=v0, last=chat_row.version)

    message = await db(Message.objects.get)(id=sent.id)
    assert message.version == chat_row.version
    in_order = [r["text"] for r in sorted(replies, key=lambda r: r["version"])]
    assert message.text == in_order[-1] and message.text in texts
    history = await db(lambda: list(MessageEdit.objects.filter(message_id=sent.id).order_by("id")))()
    assert len(history) == 20
    assert [h.text for h in history] == ["original", *in_order[:-1]]
    for s in sockets:
        await s.disconnect()


# --- 50 parallel reactors ---------------------------------------------------------------------


@pytest.mark.parametrize("mix", ["same", "mixed"])
async def test_fifty_parallel_reactors_are_counted_exactly_with_gap_free_versions(mix, make_user, api):
    """50 members react to one message at once (threads via service and REST, sockets), with one
    emoji or several (adds and removes): the message's stored counts equal the Reaction rows and
    what each user ended with, every change that happened was told its own version and together
    they are exactly v0+1..v0+n, and the chat's and the message's version is v0+n."""
    owner = await db(make_user)()
    users = [await db(make_user)() for _ in range(50)]
    group = await db(services.create_group)(user_id=owner.id, title="R", member_ids=[u.id for u in users])
    sent = (await db(services.send_message)(user_id=owner.id, chat_id=group.id, client_id="r", text="react")).message
    v0 = (await db(Chat.objects.get)(id=group.id)).version

    def plan(i: int) -> list[tuple[str, bool]]:
        if mix == "same":
            return [("👍", True)]
        first, second = EMOJI[i % 5], EMOJI[(i + 1) % 5]
        steps = [(first, True), (second, True)]
        if i % 3 == 0:
            steps.append((second, False))
        return steps

    expected = Counter()
    for i in range(50):
        for emoji, add in plan(i):
            expected[emoji] += 1 if add else -1
    expected = {e: n for e, n in expected.items() if n}

    def thread_fn(i: int, user):
        def run():
            out = []
            for emoji, add in plan(i):
                if i % 2 == 0:
                    result = services.set_reaction(
                        user_id=user.id, chat_id=group.id, seq=sent.seq, emoji=emoji, add=add
                    )
                    out.append(result.payload())
                else:
                    method = "put" if add else "delete"
                    status, body = _rest(
                        api, user, method, f"/api/chats/{group.id}/messages/{sent.seq}/reactions/{_q(emoji)}"
                    )()
                    assert status == 200, body
                    out.append(body)
            return out

        return run

    thread_fns = [thread_fn(i, u) for i, u in enumerate(users[:25])]
    plans = []
    for i, user in enumerate(users[25:], start=25):
        frames = [
            {"type": "reaction.add" if add else "reaction.remove", "chat_id": group.id, "seq": sent.seq, "emoji": e}
            for e, add in plan(i)
        ]
        plans.append((await ws_connect(user), frames))
    thread_results, socket_results = await _race(thread_fns, plans)

    replies = [r for rs in thread_results for r in rs]
    for frames in socket_results:
        for frame in frames:
            assert frame["type"] == "message.reactions", frame
            replies.append(frame)
    assert all(r["changed"] is True for r in replies)  # every step changed something
    n = sum(len(plan(i)) for i in range(50))
    assert len(replies) == n

    chat_row = await db(Chat.objects.get)(id=group.id)
    message = await db(Message.objects.get)(id=sent.id)
    assert chat_row.version == message.version == v0 + n
    _assert_contiguous([r["version"] for r in replies], after=v0, last=chat_row.version)
    rows = await db(_reaction_counts)(sent.id)
    assert rows == expected
    assert dict(message.reactions) == expected
    # The most used first, as documented.
    counts = [count for _, count in message.reactions]
    assert counts == sorted(counts, reverse=True)
    # The reply with the highest version carries the final counts.
    last = max(replies, key=lambda r: r["version"])
    assert {item["emoji"]: item["count"] for item in last["reactions"]} == expected
    for communicator, _ in plans:
        await communicator.disconnect()


# --- delete racing edits and reactions ---------------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_delete_racing_edits_reactions_and_an_unpin_leaves_a_whole_tombstone(round_, make_user, api):
    """A pinned message is deleted while its sender edits it and 20 members react to it, all at
    once: every racer either changed it before the delete (a version below the delete's) or was
    refused with ``gone``; the versions told are exactly v0+1..final; the result is a tombstone with
    no text, no edit history, no reactions, not pinned (an unpin racing it is applied first or
    refused too), carrying the delete's version. Afterwards
    edits, reactions and pins are refused with ``gone`` and a second delete changes nothing."""
    owner = make_user()
    author = make_user()
    reactors = [make_user() for _ in range(20)]
    group = services.create_group(user_id=owner.id, title="D", member_ids=[author.id, *[u.id for u in reactors]])
    sent = services.send_message(user_id=author.id, chat_id=group.id, client_id="d", text="doomed").message
    services.set_pin(user_id=owner.id, chat_id=group.id, seq=sent.seq, pinned=True)
    v0 = Chat.objects.get(id=group.id).version
    path = f"/api/chats/{group.id}/messages/{sent.seq}"

    def delete():
        status, body = _rest(api, author, "delete", path)()
        assert status == 200, body
        return ("delete", body)

    def edit(i):
        if i % 2:
            return lambda: ("edit", _outcome(lambda: services.edit_message(
                user_id=author.id, chat_id=group.id, seq=sent.seq, text=f"v{i}").payload()))  # fmt: skip

        def run():
            status, body = _rest(api, author, "patch", path, {"text": f"v{i}"})()
            assert status in (200, 410), body
            return ("edit", body if status == 200 else {"error": body["code"]})

        return run

    def react(i, user):
        def run():
            result = _outcome(
                lambda: services.set_reaction(
                    user_id=user.id, chat_id=group.id, seq=sent.seq, emoji=EMOJI[i % 3], add=True
                ).payload()
            )
            return ("react", result)

        return run

    def unpin():
        return ("unpin", _outcome(lambda: services.set_pin(
            user_id=owner.id, chat_id=group.id, seq=sent.seq, pinned=False).payload()))  # fmt: skip

    fns = [edit(i) for i in range(10)] + [react(i, u) for i, u in enumerate(reactors)] + [unpin]
    fns.insert(5 + round_ * 4, delete)  # the delete starts among the racers, not first or last
    results = Workers(fns).run()

    (deleted,) = [body for kind, body in results if kind == "delete"]
    assert deleted["changed"] is True and deleted["seqs"] == [sent.seq]
    applied = [body for kind, body in results if kind != "delete" and "error" not in body]
    refused = [body for kind, body in results if kind != "delete" and "error" in body]
    assert {body["error"] for body in refused} <= {"gone"}
    assert len(applied) + len(refused) == 31
    assert all(body["version"] < deleted["version"] for body in applied)
    chat_row = Chat.objects.get(id=group.id)
    assert chat_row.version == deleted["version"]
    _assert_contiguous([b["version"] for b in applied] + [deleted["version"]], after=v0, last=chat_row.version)

    message = Message.objects.get(id=sent.id)
    assert message.deleted_at is not None and message.text == "" and message.edited_at is None
    assert message.reactions == [] and message.version == deleted["version"]
    assert not Reaction.objects.filter(message_id=sent.id).exists()
    assert not MessageEdit.objects.filter(message_id=sent.id).exists()
    assert sent.seq not in chat_row.pinned_seqs
    shown = api(owner).get(path).json()
    assert shown["deleted"] is True and shown["text"] == "" and shown["reactions"] == []
    assert shown["pinned"] is False and shown["edited_at"] is None and shown["version"] == deleted["version"]
    assert api(owner).get(f"{path}/edits").json() == []

    # Afterwards: refused with gone, nothing bumps.
    for response in (
        api(author).patch(path, {"text": "back"}, format="json"),
        api(owner).put(f"{path}/reactions/{_q('👍')}"),
        api(owner).put(f"/api/chats/{group.id}/pins/{sent.seq}"),
    ):
        assert response.status_code == 410 and response.json()["code"] == "gone", response.content
    again = api(author).delete(path)
    assert again.status_code == 200 and again.json()["changed"] is False
    assert Chat.objects.get(id=group.id).version == deleted["version"]


# --- parallel identical forwards -------------------------------------------------------------


async def test_parallel_identical_forwards_are_stored_once(make_user, api):
    """20 identical forwards (same seqs, same client_ids) at once from threads, REST and sockets:
    the messages are stored once (one seq and one version each), exactly one caller is told it
    stored them and every caller gets the same messages."""
    alice, bob, carol = [await db(make_user)() for _ in range(3)]
    source = (await db(services.open_direct_chat)(user_id=alice.id, other_user_id=bob.id)).chat
    target = await db(services.create_group)(user_id=alice.id, title="T", member_ids=[carol.id])
    originals = [
        (await db(services.send_message)(user_id=bob.id, chat_id=source.id, client_id=f"o{i}", text=f"o{i}")).message
        for i in range(3)
    ]
    seqs = [m.seq for m in originals]
    keys = ["fw-a", "fw-b", "fw-c"]
    before = await db(Chat.objects.get)(id=target.id)

    def via_service():
        result = services.forward_messages(
            user_id=alice.id, from_chat_id=source.id, seqs=seqs, to_chat_id=target.id, client_ids=keys
        )
        return result.payload()

    def via_rest():
        body = {"from_chat_id": source.id, "seqs": seqs, "client_ids": keys}
        status, answer = _rest(api, alice, "post", f"/api/chats/{target.id}/forward", body)()
        assert status == (200 if answer["duplicate"] else 201), answer
        return answer

    frame = {"type": "message.forward", "from_chat_id": source.id, "seqs": seqs, "to_chat_id": target.id}
    plans = [(await ws_connect(alice), [{**frame, "client_ids": keys}]) for _ in range(5)]
    thread_results, socket_results = await _race([via_service, via_rest] * 8, plans)
    replies = list(thread_results)
    for frames in socket_results:
        assert frames[0]["type"] == "message.forwarded", frames
        replies.append(frames[0])

    assert [r["duplicate"] for r in replies].count(False) == 1
    stored = [[(m["id"], m["seq"], m["version"]) for m in r["messages"]] for r in replies]
    assert all(s == stored[0] for s in stored)
    rows = await db(
        lambda: list(Message.objects.filter(chat_id=target.id, client_id__in=keys).order_by("seq").values_list("id"))
    )()
    assert [row[0] for row in rows] == [m[0] for m in stored[0]]
    after = await db(Chat.objects.get)(id=target.id)
    assert after.last_seq == before.last_seq + 3 and after.version == before.version + 3
    assert [m[2] for m in stored[0]] == [before.version + 1, before.version + 2, before.version + 3]
    assert [m["text"] for m in replies[0]["messages"]] == ["o0", "o1", "o2"]
    for communicator, _ in plans:
        await communicator.disconnect()


# --- 500 mixed changes, then (and during) catch-up --------------------------------------------


def _catch_up(client, chat_id: int, after: int, limit: int, state: dict) -> tuple[int, list[dict]]:
    """Page /changes from ``after`` into ``state`` (by seq); the version held at the end, the pages."""
    pages = []
    while True:
        response = client.get(f"/api/chats/{chat_id}/changes?after_version={after}&limit={limit}")
        assert response.status_code == 200, response.content
        page = response.json()
        pages.append(page)
        versions = [m["version"] for m in page["results"]]
        assert versions == sorted(versions) and all(v > after for v in versions)
        if page["results"]:
            assert page["version"] >= versions[-1]
        if page["has_more"]:
            assert page["version"] == versions[-1]  # the cursor is the last result's version
        for message in page["results"]:
            state[message["seq"]] = message
        after = page["version"]
        if not page["has_more"]:
            return after, pages


def _assert_pages_never_split_a_version(pages: list[dict]) -> None:
    seen: dict[int, int] = {}
    for index, page in enumerate(pages):
        for message in page["results"]:
            assert seen.setdefault(message["version"], index) == index, f"version {message['version']} split"


def _history(client, chat_id: int) -> dict[int, dict]:
    out, after = {}, 0
    while True:
        page = client.get(f"/api/chats/{chat_id}/messages?after_seq={after}&limit=200").json()
        for message in page["results"]:
            out[message["seq"]] = message
        if not page["has_more"]:
            return out
        after = page["results"][-1]["seq"]


def _without(message: dict, *fields: str) -> dict:
    return {k: v for k, v in message.items() if k not in fields}


class Mixer:
    """One member's random stream of changes; the version of every change it was told."""

    def __init__(self, user, chat_id: int, *, manager: bool, ops: int, seed: int, shared: dict):
        self.user, self.chat_id, self.manager, self.ops = user, chat_id, manager, ops
        self.rng = random.Random(seed)
        self.shared = shared  # {"lock", "seqs": every seq known to exist}
        self.own: list[int] = []
        self.versions: list[int] = []
        self.refusals: Counter = Counter()
        self.changed = 0

    def _any_seq(self) -> int:
        with self.shared["lock"]:
            return self.rng.choice(self.shared["seqs"])

    def _call(self, fn) -> None:
        try:
            result = fn()
        except MessengerError as exc:
            self.refusals[exc.code] += 1
            return
        if result is not None:
            self.changed += 1

    def _send(self, n: int):
        result = services.send_message(
            user_id=self.user.id, chat_id=self.chat_id, client_id=f"{self.user.id}-{n}", text=f"m{n} by {self.user.id}"
        )
        self.own.append(result.message.seq)
        with self.shared["lock"]:
            self.shared["seqs"].append(result.message.seq)
        self.versions.append(result.message.version)
        return result

    def _changed(self, result, version: int, extra: int = 0):
        if not result.changed:
            return None
        self.versions.append(version)
        self.versions.extend(version + k for k in range(1, extra + 1))
        return result

    def step(self, n: int) -> None:
        roll = self.rng.random()
        uid, chat = self.user.id, self.chat_id
        if roll < 0.3 or not self.own:
            self._call(lambda: self._send(n))
        elif roll < 0.5:
            seq = self.rng.choice(self.own)

            def edit():
                r = services.edit_message(user_id=uid, chat_id=chat, seq=seq, text=f"e{n} by {uid}")
                return self._changed(r, r.message.version)

            self._call(edit)
        elif roll < 0.58:
            pool = [self._any_seq() for _ in range(3)] if self.manager else self.rng.sample(self.own, 1)
            seqs = sorted(set(pool))

            def delete():
                r = services.delete_messages(user_id=uid, chat_id=chat, seqs=seqs)
                return self._changed(r, r.version)

            self._call(delete)
        elif roll < 0.88 or not self.manager:
            seq, emoji, add = self._any_seq(), self.rng.choice(EMOJI[:4]), self.rng.random() < 0.65

            def react():
                r = services.set_reaction(user_id=uid, chat_id=chat, seq=seq, emoji=emoji, add=add)
                return self._changed(r, r.version)

            self._call(react)
        else:
            seq, pinned = self._any_seq(), self.rng.random() < 0.6

            def pin():
                r = services.set_pin(user_id=uid, chat_id=chat, seq=seq, pinned=pinned)
                return self._changed(r, r.version, extra=1 if pinned else 0)  # + the system message

            self._call(pin)

    def run(self) -> None:
        for n in range(self.ops):
            self.step(n)


def test_five_hundred_mixed_changes_catch_up_through_changes_to_exactly_the_history(make_user, api):
    """6 members make 500 random changes at once (sends, edits, deletes, reactions, pins) while a
    seventh pages /changes live. Every change was told its own version, together exactly
    v0+1..final. Catching up from version 0 in pages of 37 reproduces exactly every message REST
    history returns (every field), no version is ever split across pages, and the live reader,
    finishing with one more catch-up, holds the same state. A client holding version K gets
    exactly the messages whose version is above K."""
    owner = make_user()
    members = [make_user() for _ in range(5)]
    reader = make_user()
    group = services.create_group(user_id=owner.id, title="Mixed", member_ids=[*[u.id for u in members[1:]], reader.id])
    # The owner and one admin may pin and delete others' messages.
    services.add_member(actor_id=owner.id, chat_id=group.id, user_id=members[0].id, role=Membership.Role.ADMIN)
    seed = services.send_message(user_id=owner.id, chat_id=group.id, client_id="seed", text="seed").message
    v0 = Chat.objects.get(id=group.id).version
    shared = {"lock": threading.Lock(), "seqs": [seed.seq]}
    writers = [
        Mixer(user, group.id, manager=i < 2, ops=84 if i < 2 else 83, seed=1000 + i, shared=shared)
        for i, user in enumerate([owner, *members])
    ]
    assert sum(w.ops for w in writers) == 500
    running = threading.Semaphore(0)
    live_state: dict[int, dict] = {}
    live = {"rounds": 0, "version": 0}

    def writer(w):
        def run():
            try:
                w.run()
            finally:
                running.release()

        return run

    def live_reader():
        client = api(reader)
        held = 0
        finished = 0
        while finished < len(writers):
            held, pages = _catch_up(client, group.id, held, 37, live_state)
            _assert_pages_never_split_a_version(pages)
            live["rounds"] += 1
            while running.acquire(blocking=False):
                finished += 1
        live["version"], pages = _catch_up(client, group.id, held, 37, live_state)
        _assert_pages_never_split_a_version(pages)

    Workers([writer(w) for w in writers] + [live_reader]).run()

    chat_row = Chat.objects.get(id=group.id)
    told = [v for w in writers for v in w.versions]
    _assert_contiguous(told, after=v0, last=chat_row.version)
    refusals = sum((w.refusals for w in writers), Counter())
    assert set(refusals) <= {"gone", "forbidden", "too_many_reactions"}, refusals
    assert sum(w.changed for w in writers) > 300  # most of the 500 changed something
    kinds = Counter(Message.objects.filter(chat_id=group.id).values_list("kind", flat=True))
    assert kinds[Message.Kind.SYSTEM] > 1  # pins wrote system messages
    assert Message.objects.filter(chat_id=group.id, deleted_at__isnull=False).exists()
    assert Reaction.objects.filter(message__chat_id=group.id).exists()

    client = api(reader)
    history = _history(client, group.id)
    assert sorted(history) == list(range(1, chat_row.last_seq + 1))
    caught: dict[int, dict] = {}
    held, pages = _catch_up(client, group.id, 0, 37, caught)
    assert held == chat_row.version
    assert len(pages) >= len(history) // (37 + 3)  # paged for real (a page may finish a batch of 3)
    _assert_pages_never_split_a_version(pages)
    assert pages[-1]["pinned_seqs"] == chat_row.pinned_seqs
    assert caught == history  # every message, every field
    for message in history.values():  # and each message's stored reactions match its rows
        if not message["deleted"]:
            expected = _reaction_counts(message["id"])
            assert {r["emoji"]: r["count"] for r in message["reactions"]} == expected
    assert {seq for seq, m in history.items() if m["pinned"]} == set(chat_row.pinned_seqs)

    # The live reader converged too (is_read may lag: read receipts are not versioned changes).
    assert live["version"] == chat_row.version and live["rounds"] >= 1
    assert {s: _without(m, "is_read") for s, m in live_state.items()} == {
        s: _without(m, "is_read") for s, m in history.items()
    }

    # A client holding K gets exactly the messages with version > K, as history shows them.
    rng = random.Random(7)
    for k in [0, v0, *rng.sample(range(v0, chat_row.version), 8), chat_row.version]:
        got: dict[int, dict] = {}
        held, pages = _catch_up(client, group.id, k, 37, got)
        assert held == chat_row.version
        assert set(got) == {seq for seq, m in history.items() if m["version"] > k}, k
        assert all(got[seq] == history[seq] for seq in got)


def test_changes_pages_never_split_a_delete_batch(make_user, api):
    """Delete batches of 30, 5 and 17 messages, each one version, between edits: paged with limits
    1, 7 and 37, every version lies in exactly one page (a page grows past its limit instead of
    splitting a batch), the cursors ascend and the pages add up to every changed message once."""
    alice, bob = make_user(), make_user()
    chat = services.open_direct_chat(user_id=alice.id, other_user_id=bob.id).chat
    seqs = [
        services.send_message(user_id=alice.id, chat_id=chat.id, client_id=f"b{i}", text=f"{i}").message.seq
        for i in range(70)
    ]
    batches = [seqs[0:30], seqs[30:35], seqs[40:57]]
    for i, batch in enumerate(batches):
        services.edit_message(user_id=alice.id, chat_id=chat.id, seq=seqs[60 + i], text=f"edited {i}")
        result = services.delete_messages(user_id=alice.id, chat_id=chat.id, seqs=batch)
        assert result.seqs == batch
    delete_versions = set(Message.objects.filter(chat_id=chat.id, seq__in=seqs[:57]).exclude(deleted_at=None)
                          .values_list("version", flat=True))  # fmt: skip
    assert len(delete_versions) == 3
    client = api(bob)
    for limit in (1, 7, 37):
        state: dict[int, dict] = {}
        held, pages = _catch_up(client, chat.id, 0, limit, state)
        _assert_pages_never_split_a_version(pages)
        assert held == Chat.objects.get(id=chat.id).version
        assert sorted(state) == seqs
        assert sum(len(p["results"]) for p in pages) == len(seqs)  # each message once
        cursors = [p["version"] for p in pages if p["results"]]
        assert cursors == sorted(set(cursors))
        # Only the last page may be empty: when a page finished the final batch, has_more could
        # not know that nothing followed it.
        assert all(p["results"] for p in pages[:-1])
        for page in pages:
            batch_sizes = Counter(m["version"] for m in page["results"])
            # A page exceeds its limit only by finishing the one batch it ended in.
            if len(page["results"]) > limit:
                assert page["results"][-1]["version"] in delete_versions
                assert len(page["results"]) - batch_sizes[page["results"][-1]["version"]] < limit
        if limit < 30:
            assert any(len(p["results"]) > limit for p in pages)
    # The batch shares one version and fills the page that holds it.
    for batch in batches:
        assert len(set(Message.objects.filter(chat_id=chat.id, seq__in=batch).values_list("version", flat=True))) == 1


def test_a_pin_committing_while_changes_is_read_cannot_leave_the_client_with_stale_pins(make_user, api, monkeypatch):
    """A pin that commits between the two reads of /changes (the chat's version and pins, then the
    changed messages) must not hand out a page whose ``version`` covers the pin but whose
    ``pinned_seqs`` predates it: the client would ignore the later chat.pins event (version <= K)
    and keep the wrong pins. Both reads see one snapshot, so the page agrees with itself."""
    from chats import selectors, sql

    owner, other = make_user(), make_user()
    chat = services.open_direct_chat(user_id=owner.id, other_user_id=other.id).chat
    sent = services.send_message(user_id=owner.id, chat_id=chat.id, client_id="p", text="pin me").message
    real_fetch = selectors.fetch
    injected = []

    def fetch_then_pin(step):
        answer = real_fetch(step)
        if step.statement is sql.CHAT_VERSION and not injected:
            # Another connection pins and commits right after the version was read.
            injected.append(
                Workers([lambda: services.set_pin(user_id=other.id, chat_id=chat.id, seq=sent.seq, pinned=True)]).run()
            )
        return answer

    monkeypatch.setattr(selectors, "fetch", fetch_then_pin)
    page = api(owner).get(f"/api/chats/{chat.id}/changes?after_version=0").json()
    assert injected, "the pin was not injected"
    pin_version = injected[0][0].version
    assert page["has_more"] is False
    by_seq = {m["seq"]: m for m in page["results"]}
    assert (sent.seq in page["pinned_seqs"]) == (page["version"] >= pin_version)
    assert by_seq[sent.seq]["pinned"] == (sent.seq in page["pinned_seqs"])
    assert page["version"] == max(m["version"] for m in page["results"])
    # Holding that page's version, the rest comes through /changes and agrees with the chat.
    monkeypatch.setattr(selectors, "fetch", real_fetch)
    state = dict(by_seq)
    held, pages = _catch_up(api(owner), chat.id, page["version"], 50, state)
    assert held == Chat.objects.get(id=chat.id).version
    assert pages[-1]["pinned_seqs"] == [sent.seq] and state[sent.seq]["pinned"] is True
