"""Races that only real parallelism shows: duplicate sends, seq allocation, direct-chat creation, reads.

Everything here runs concurrently for real against PostgreSQL: OS threads, each with its own
database connection (closed when the thread ends), released together by a barrier, plus
WebSocket commands running on the server's database thread pool at the same moment. The
ones that watch sockets receive events published from other threads, which needs the Redis
channel layer (the in-memory layer is bound to one event loop): ./test.sh always has one.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from chats import services
from chats.models import Chat, Membership, Message
from tests.conftest import ws_connect

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async
JOIN_TIMEOUT = 120


@pytest.fixture(autouse=True)
def _no_send_rate_limit(settings):
    settings.SEND_RATE_LIMIT = 0


class Workers:
    """OS threads released together by a barrier; each closes its own database connection."""

    def __init__(self, fns):
        self.fns = list(fns)
        self.results: list = [None] * len(self.fns)
        self.errors: list[BaseException] = []
        self.barrier = threading.Barrier(len(self.fns))
        self.go = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(len(self.fns))]

    def _run(self, index: int) -> None:
        try:
            self.go.wait(timeout=JOIN_TIMEOUT)
            self.barrier.wait(timeout=JOIN_TIMEOUT)
            self.results[index] = self.fns[index]()
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            connection.close()

    def start(self) -> Workers:
        """Start the threads; they wait for :meth:`release`."""
        for thread in self.threads:
            thread.start()
        return self

    def release(self) -> None:
        self.go.set()

    def join(self) -> list:
        for thread in self.threads:
            thread.join(timeout=JOIN_TIMEOUT)
        assert not any(t.is_alive() for t in self.threads), "worker threads hung"
        if self.errors:
            raise self.errors[0]
        return self.results

    def run(self) -> list:
        self.start()
        self.release()
        return self.join()


def rest_post(api, user, path: str, body: dict):
    def call():
        response = api(user).post(path, body, format="json")
        return response.status_code, response.json()

    return call


async def ping_barrier(communicator, ref: str = "barrier") -> None:
    await communicator.send_json_to({"type": "ping", "ref": ref})
    assert (await communicator.receive_json_from(timeout=5)) == {"type": "pong", "ref": ref}


# --- (a) one client_id, fifty senders -----------------------------------------------------


async def test_fifty_parallel_sends_of_one_client_id_store_one_message(make_user, api):
    """50 parallel sends of one (sender, client_id) from several sockets, REST and direct service calls
    store exactly one row and consume one seq; every reply carries that message's id (exactly one says
    it is new); every other socket gets exactly one message.new and the winning socket none."""
    alice = await db(make_user)()
    bob = await db(make_user)()
    chat = (await db(services.open_direct_chat)(user_id=alice.id, other_user_id=bob.id)).chat
    senders = [await ws_connect(alice) for _ in range(5)]
    passive = [await ws_connect(alice), await ws_connect(bob), await ws_connect(bob)]
    sockets = senders + passive
    client_id = "the-one-and-only"
    text = "exactly once"

    def service_call():
        result = services.send_message(user_id=alice.id, chat_id=chat.id, client_id=client_id, text=text)
        return ("service", result.message.id, not result.duplicate)

    def rest_call():
        status, body = rest_post(api, alice, f"/api/chats/{chat.id}/messages", {"client_id": client_id, "text": text})()
        assert status in (200, 201), body
        return ("rest", body["id"], status == 201)

    workers = Workers([service_call] * 20 + [rest_call] * 10)
    await asyncio.to_thread(workers.start)
    refs = {}
    for s_index, communicator in enumerate(senders):
        for n in range(4):
            ref = f"s{s_index}-{n}"
            refs[ref] = communicator
            await communicator.send_json_to(
                {"type": "message.send", "chat_id": chat.id, "client_id": client_id, "text": text, "ref": ref}
            )
    workers.release()
    thread_replies = await asyncio.to_thread(workers.join)

    frames: dict[int, list[dict]] = {id(c): [] for c in sockets}
    acks = {}
    for communicator in senders:
        while sum(f["type"] == "message.ack" for f in frames[id(communicator)]) < 4:
            frame = await communicator.receive_json_from(timeout=5)
            assert frame["type"] in ("message.ack", "message.new"), frame
            frames[id(communicator)].append(frame)
            if frame["type"] == "message.ack":
                acks[frame["ref"]] = frame
    assert set(acks) == set(refs)

    socket_winners = [ref for ref, ack in acks.items() if ack["duplicate"] is False]
    thread_winners = [reply for reply in thread_replies if reply[2]]
    assert len(socket_winners) + len(thread_winners) == 1, (socket_winners, thread_winners)
    winning_socket = refs[socket_winners[0]] if socket_winners else None

    message_ids = {ack["message"]["id"] for ack in acks.values()} | {reply[1] for reply in thread_replies}
    assert len(message_ids) == 1
    (message_id,) = message_ids
    assert all(ack["client_id"] == client_id for ack in acks.values())

    for communicator in sockets:
        expected = 0 if communicator is winning_socket else 1
        got = frames[id(communicator)]
        while sum(f["type"] == "message.new" for f in got) < expected:
            got.append(await communicator.receive_json_from(timeout=5))
        await ping_barrier(communicator)
    for communicator in sockets:
        assert await communicator.receive_nothing(timeout=0.3)
        news = [f for f in frames[id(communicator)] if f["type"] == "message.new"]
        assert len(news) == (0 if communicator is winning_socket else 1)
        assert all(f["message"]["id"] == message_id for f in news)

    rows = await db(
        lambda: list(Message.objects.filter(sender_id=alice.id, client_id=client_id).values_list("id", "seq"))
    )()
    assert rows == [(message_id, 1)]
    assert await db(Message.objects.filter(chat_id=chat.id).count)() == 1
    assert await db(lambda: Chat.objects.get(id=chat.id).last_seq)() == 1
    for communicator in sockets:
        await communicator.disconnect()


# --- (b) seq allocation under contention ----------------------------------------------------


def test_concurrent_senders_get_gap_free_seqs(make_user, api):
    """20 senders x 25 messages in one group, in parallel (services and REST), while members are added
    concurrently: seqs are exactly 1..N with no gap and no repeat, each sender's messages keep their
    order, and system messages (creation, adds) take their seqs from the same counter."""
    senders = [make_user() for _ in range(20)]
    owner = senders[0]
    late = [make_user() for _ in range(5)]
    group = services.create_group(user_id=owner.id, title="Busy", member_ids=[u.id for u in senders[1:]])
    per_sender = 25

    def via_service(user):
        def run():
            return [
                services.send_message(
                    user_id=user.id, chat_id=group.id, client_id=f"{user.id}-{n}", text=f"m{n}"
                ).message.seq
                for n in range(per_sender)
            ]

        return run

    def via_rest(user):
        def run():
            client = api(user)
            seqs = []
            for n in range(per_sender):
                response = client.post(
                    f"/api/chats/{group.id}/messages", {"client_id": f"{user.id}-{n}", "text": f"m{n}"}, format="json"
                )
                assert response.status_code == 201, response.content
                seqs.append(response.json()["seq"])
            return seqs

        return run

    def add_members():
        for user in late:
            services.add_member(actor_id=owner.id, chat_id=group.id, user_id=user.id)

    fns = [via_service(u) if i % 2 == 0 else via_rest(u) for i, u in enumerate(senders)] + [add_members]
    results = Workers(fns).run()

    expected_total = 1 + len(late) + len(senders) * per_sender
    rows = list(
        Message.objects.filter(chat_id=group.id).order_by("seq").values_list("seq", "kind", "sender_id", "client_id")
    )
    assert [row[0] for row in rows] == list(range(1, expected_total + 1))
    assert Chat.objects.get(id=group.id).last_seq == expected_total
    kinds = Counter(row[1] for row in rows)
    assert kinds == {Message.Kind.TEXT: len(senders) * per_sender, Message.Kind.SYSTEM: 1 + len(late)}

    for user, seqs in zip(senders, results, strict=False):
        assert seqs == sorted(seqs) and len(set(seqs)) == per_sender
        stored = [row for row in rows if row[2] == user.id]
        assert [row[3] for row in stored] == [f"{user.id}-{n}" for n in range(per_sender)]
        assert [row[0] for row in stored] == seqs
    assert Membership.objects.filter(chat_id=group.id).count() == len(senders) + len(late)


# --- (c) direct chat opened from both ends -------------------------------------------------------


def test_two_users_opening_the_same_direct_chat_at_once_get_one_chat(make_user, api):
    """Two users opening their direct chat at the same instant (REST and service, 10 pairs at once)
    end up with one chat per pair: exactly one caller creates it, the other gets the same chat."""
    pairs = [(make_user(), make_user()) for _ in range(10)]

    def via_rest(user, other):
        def run():
            status, body = rest_post(api, user, "/api/chats", {"kind": "direct", "user_id": other.id})()
            assert status in (200, 201), body
            return body["id"], status == 201

        return run

    def via_service(user, other):
        def run():
            result = services.open_direct_chat(user_id=user.id, other_user_id=other.id)
            return result.chat.id, result.created

        return run

    fns = []
    for index, (a, b) in enumerate(pairs):
        if index % 2 == 0:
            fns += [via_rest(a, b), via_rest(b, a)]
        else:
            fns += [via_service(a, b), via_rest(b, a)]
    results = Workers(fns).run()

    for index, (a, b) in enumerate(pairs):
        (id_a, created_a), (id_b, created_b) = results[2 * index], results[2 * index + 1]
        assert id_a == id_b
        assert [created_a, created_b].count(True) == 1
        chats = list(Chat.objects.filter(kind=Chat.Kind.DIRECT, memberships__user=a).filter(memberships__user=b))
        assert [c.id for c in chats] == [id_a]
        assert sorted(Membership.objects.filter(chat_id=id_a).values_list("user_id", flat=True)) == sorted([a.id, b.id])
    assert Chat.objects.filter(kind=Chat.Kind.DIRECT).count() == len(pairs)


# --- (d) everybody reads at once ------------------------------------------------------------------


async def test_parallel_reads_by_all_members_advance_read_all_without_lost_update(make_user, api):
    """All members of a group mark it read at the same moment (sockets and REST in parallel, some to an
    older seq): every watermark ends at its maximum, Chat.read_all_seq ends at last_seq, and chat.read_all
    is broadcast once per distinct growth, ending at last_seq."""
    owner = await db(make_user)()
    members = [await db(make_user)() for _ in range(11)]
    group = await db(services.create_group)(user_id=owner.id, title="Readers", member_ids=[u.id for u in members])
    for n in range(3):
        result = await db(services.send_message)(user_id=owner.id, chat_id=group.id, client_id=f"r-{n}", text=f"{n}")
    last_seq = result.message.seq
    owner_socket = await ws_connect(owner)
    member_sockets = [await ws_connect(u) for u in members]

    workers = Workers([rest_post(api, u, f"/api/chats/{group.id}/read", {"up_to_seq": last_seq - 1}) for u in members])
    await asyncio.to_thread(workers.start)
    for communicator in member_sockets:
        await communicator.send_json_to(
            {"type": "message.read", "chat_id": group.id, "up_to_seq": last_seq, "ref": "rd"}
        )
    workers.release()
    rest_replies = await asyncio.to_thread(workers.join)

    for status, body in rest_replies:
        assert status == 200, body
        assert body["last_read_seq"] in (last_seq - 1, last_seq)
    for communicator in member_sockets:
        got = []
        while not any(f["type"] == "chat.read" and f.get("ref") == "rd" for f in got):
            got.append(await communicator.receive_json_from(timeout=5))
        reply = next(f for f in got if f.get("ref") == "rd")
        assert reply["last_read_seq"] == last_seq

    read_all = await db(lambda: Chat.objects.get(id=group.id).read_all_seq)()
    assert read_all == last_seq
    watermarks = await db(
        lambda: set(Membership.objects.filter(chat_id=group.id).values_list("last_read_seq", flat=True))
    )()
    assert watermarks == {last_seq}

    # Events published from different threads may arrive in any order: drain until quiet.
    seen = []
    while last_seq not in seen or not await owner_socket.receive_nothing(timeout=0.5):
        frame = await owner_socket.receive_json_from(timeout=5)
        assert frame["type"] == "chat.read_all" and frame["chat_id"] == group.id, frame
        seen.append(frame["up_to_seq"])
    await ping_barrier(owner_socket)
    # Broadcast only when the watermark grows: never the same value twice, never beyond last_seq.
    assert len(seen) == len(set(seen))
    assert set(seen) <= {last_seq - 1, last_seq}
    for communicator in [owner_socket, *member_sockets]:
        await communicator.disconnect()
