"""Two real daphne processes sharing one PostgreSQL database and one Redis behave as one server.

The processes are started from this module (``daphne messenger.asgi:application``) against the
test database, with this run's channel-layer and cache prefix, and are killed when the module
ends. Clients are the ``websockets`` library over real TCP, and plain HTTP via urllib.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from contextlib import ExitStack

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from chats import services
from tests.conftest import access_token
from tests.live import (
    NamedServer,
    assert_silent,
    recv,
    recv_until,
    running,
    send,
)

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 5


# --- the two processes ---------------------------------------------------------------------


class Daphne(NamedServer):
    def get(self, path: str, token: str) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers={"Authorization": f"Bearer {token}"}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=TIMEOUT) as response:
            assert response.status == 200
            return json.loads(response.read())


@pytest.fixture(scope="module")
def daphnes(django_db_setup, tmp_path_factory):
    """Two daphne processes on the test database and this run's Redis prefixes; killed at the end."""
    log_dir = tmp_path_factory.mktemp("daphne")
    with running(Daphne("a", log_dir), Daphne("b", log_dir)) as servers:
        yield servers


@pytest.fixture
def tokens_not_logged(daphnes):
    """Collects tokens used by a test and checks that neither process ever logged one."""
    used: list[str] = []
    yield used
    for server in daphnes:
        text = server.log()
        for token in used:
            assert token not in text, f"a token appears in daphne {server.name}'s log"
            # The signature alone would be enough to replay it.
            assert token.rsplit(".", 1)[-1] not in text


# --- tests -----------------------------------------------------------------------------------


def test_events_cross_processes_through_redis(daphnes, make_user, tokens_not_logged):
    """A message sent to process A reaches the recipient and the sender's other device on process B
    (and back); a duplicate sent to B is recognised; reads and typing (with its throttle) cross too."""
    a, b = daphnes
    alice, bob = make_user(), make_user()
    chat = services.open_direct_chat(user_id=alice.id, other_user_id=bob.id).chat
    alice_token, bob_token = access_token(alice), access_token(bob)
    tokens_not_logged += [alice_token, bob_token]
    with ExitStack() as stack:
        alice_on_a, alice_on_b, bob_on_b = a.ws(alice_token, stack), b.ws(alice_token, stack), b.ws(bob_token, stack)
        send(alice_on_a, {"type": "message.send", "chat_id": chat.id, "client_id": "x-1", "text": "across", "ref": "s"})
        ack = recv(alice_on_a)
        assert ack["type"] == "message.ack" and ack["duplicate"] is False and ack["ref"] == "s"
        message = ack["message"]
        for connection in (bob_on_b, alice_on_b):
            assert recv(connection) == {"type": "message.new", "message": message}

        # The same client_id sent to the other process: the original, and no second broadcast.
        send(alice_on_b, {"type": "message.send", "chat_id": chat.id, "client_id": "x-1", "text": "across"})
        again = recv(alice_on_b)
        assert again["type"] == "message.ack" and again["duplicate"] is True
        assert again["message"]["id"] == message["id"]
        for connection in (alice_on_a, alice_on_b, bob_on_b):
            assert_silent(connection)

        # Bob answers on B. Sending marks his read up to his own message, so the read-by-everyone
        # watermark reaches alice's message: alice (on A and B) hears the reply and chat.read_all
        # (the protocol orders messages by seq, not events of different types against each other).
        send(bob_on_b, {"type": "message.send", "chat_id": chat.id, "client_id": "y-1", "text": "back"})
        reply = recv(bob_on_b)
        assert reply["type"] == "message.ack"
        reply = reply["message"]
        first_receipt = {"type": "chat.read_all", "chat_id": chat.id, "up_to_seq": message["seq"]}
        assert recv(bob_on_b) == first_receipt
        for connection in (alice_on_a, alice_on_b):
            frames = {f["type"]: f for f in (recv(connection), recv(connection))}
            assert frames == {"chat.read_all": first_receipt, "message.new": {"type": "message.new", "message": reply}}

        # Alice reads on A: her sockets get chat.read (reply on A, event on B); everyone gets chat.read_all.
        send(alice_on_a, {"type": "message.read", "chat_id": chat.id, "up_to_seq": reply["seq"]})
        second_receipt = {"type": "chat.read_all", "chat_id": chat.id, "up_to_seq": reply["seq"]}
        for connection in (alice_on_a, alice_on_b):
            frames = {f["type"]: f for f in (recv(connection), recv(connection))}
            assert frames["chat.read_all"] == second_receipt
            assert frames["chat.read"]["user_id"] == alice.id
            assert frames["chat.read"]["last_read_seq"] == reply["seq"]
        assert recv(bob_on_b) == second_receipt

        # Typing crosses processes, and its throttle is shared: a second typing through A is dropped.
        send(bob_on_b, {"type": "typing", "chat_id": chat.id})
        assert recv(alice_on_a) == {"type": "typing", "chat_id": chat.id, "user_id": bob.id}
        assert recv(alice_on_b) == {"type": "typing", "chat_id": chat.id, "user_id": bob.id}
        bob_on_a = a.ws(bob_token, stack)
        send(bob_on_a, {"type": "typing", "chat_id": chat.id})
        for connection in (alice_on_a, alice_on_b, bob_on_b, bob_on_a):
            assert_silent(connection)


def test_catch_up_after_reconnect_returns_exactly_the_missed_messages(daphnes, make_user, tokens_not_logged):
    """A recipient who disconnects while K messages are sent (on another process) reconnects and gets
    exactly those K, in order, from GET /api/chats/{id}/messages?after_seq=<last seen>; live events follow."""
    a, b = daphnes
    alice, bob = make_user(), make_user()
    chat = services.open_direct_chat(user_id=alice.id, other_user_id=bob.id).chat
    alice_token, bob_token = access_token(alice), access_token(bob)
    tokens_not_logged += [alice_token, bob_token]
    k = 7

    with ExitStack() as stack:
        alice_on_a = a.ws(alice_token, stack)
        bob_on_b = b.ws(bob_token, stack)
        send(alice_on_a, {"type": "message.send", "chat_id": chat.id, "client_id": "before", "text": "seen live"})
        recv_until(alice_on_a, "message.ack")
        last_seen = recv_until(bob_on_b, "message.new")["message"]["seq"]
        bob_on_b.close()

        sent = []
        for n in range(k):
            send(
                alice_on_a,
                {"type": "message.send", "chat_id": chat.id, "client_id": f"missed-{n}", "text": f"missed {n}"},
            )
            sent.append(recv_until(alice_on_a, "message.ack")["message"])

        # Subscribe first, then fetch what was missed.
        bob_on_b = b.ws(bob_token, stack)
        page = b.get(f"/api/chats/{chat.id}/messages?after_seq={last_seen}", bob_token)
        assert [m["id"] for m in page["results"]] == [m["id"] for m in sent]
        assert [m["seq"] for m in page["results"]] == list(range(last_seen + 1, last_seen + k + 1))
        assert [m["text"] for m in page["results"]] == [f"missed {n}" for n in range(k)]
        assert page["has_more"] is False
        # The same answer from the other process: the database is the truth, not the process.
        assert a.get(f"/api/chats/{chat.id}/messages?after_seq={last_seen}", bob_token) == page

        send(alice_on_a, {"type": "message.send", "chat_id": chat.id, "client_id": "after", "text": "live again"})
        recv_until(alice_on_a, "message.ack")
        live = recv_until(bob_on_b, "message.new")["message"]
        assert live["seq"] == last_seen + k + 1


def test_bad_token_on_a_real_server_closes_4401(daphnes, make_user, tokens_not_logged):
    """Through a real daphne, a bad token is accepted then closed with 4401, and is not logged."""
    a, _ = daphnes
    alice = make_user()
    bad = access_token(alice)[:-6] + "AAAAAA"
    tokens_not_logged.append(bad)
    with connect(f"ws://127.0.0.1:{a.port}/ws/?token={bad}", open_timeout=TIMEOUT, proxy=None) as connection:
        with pytest.raises(ConnectionClosed) as closed:
            connection.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


# --- reactions racing over both processes ------------------------------------------------------

EMOJI = ["👍", "❤️", "😂", "🔥", "🎉"]


class VersionedClient:
    """One socket that keeps one message's reactions by the protocol's version rule (§3, §9).

    ``version <= K``: ignore; ``K + 1``: apply; a jump: fetch ``/changes?after_version=K`` from the
    same server and apply that. Records every version a live frame carried, and every repair.
    """

    def __init__(self, server: Daphne, token: str, stack: ExitStack, *, chat_id: int, seq: int, version: int):
        self.server, self.token, self.chat_id, self.seq = server, token, chat_id, seq
        self.connection = server.ws(token, stack)
        self.held = version
        self.reactions: list[dict] = []
        self.delivered: list[int] = []
        self.repairs = 0

    @staticmethod
    def _counts(reactions: list[dict]) -> list[dict]:
        return [{"emoji": r["emoji"], "count": r["count"]} for r in reactions]

    def _on(self, frame: dict) -> None:
        if frame.get("type") != "message.reactions" or frame["chat_id"] != self.chat_id:
            raise AssertionError(f"unexpected frame {frame}")
        version = frame["version"]
        self.delivered.append(version)
        if version <= self.held:
            return
        if version == self.held + 1:
            self.reactions, self.held = self._counts(frame["reactions"]), version
            return
        self.repairs += 1
        after = self.held
        while True:
            page = self.server.get(f"/api/chats/{self.chat_id}/changes?after_version={after}&limit=200", self.token)
            for message in page["results"]:
                assert message["seq"] == self.seq
                self.reactions = self._counts(message["reactions"])
            after = page["version"]
            if not page["has_more"]:
                break
        self.held = after

    def call(self, frame: dict, ref: str) -> dict:
        send(self.connection, {**frame, "ref": ref})
        while True:
            answer = recv(self.connection)
            self._on(answer)
            if answer.get("ref") == ref:
                assert answer["changed"] is True, answer
                return answer

    def wait_for(self, version: int, first: int) -> None:
        """Until it holds ``version`` and was delivered every version from ``first`` (a repair may
        have run ahead of events still on their way); a lost event fails on the receive timeout."""
        while self.held < version or not set(range(first, version + 1)) <= set(self.delivered):
            self._on(recv(self.connection))


def test_fifty_reactors_on_two_processes_converge_on_every_socket(daphnes, make_user):
    """50 members react at once over WebSocket, half on each process, while the owner watches from
    both: every socket ends with the stored reactions and the chat's version, every socket was
    delivered every version exactly once (its own changes as replies, the others' as events: none
    lost, none doubled), and a socket that saw a version jump (events of two processes may arrive
    out of order) repaired it from /changes rather than skipping a change."""
    from concurrent.futures import ThreadPoolExecutor

    from chats.models import Chat, Message

    a, b = daphnes
    owner = make_user()
    reactors = [make_user() for _ in range(50)]
    group = services.create_group(user_id=owner.id, title="Across", member_ids=[u.id for u in reactors])
    sent = services.send_message(user_id=owner.id, chat_id=group.id, client_id="x", text="react").message
    v0 = Chat.objects.get(id=group.id).version

    def plan(i: int) -> list[tuple[str, str]]:
        steps = [("reaction.add", EMOJI[i % 5]), ("reaction.add", EMOJI[(i + 1) % 5])]
        return [*steps, ("reaction.remove", EMOJI[(i + 1) % 5])] if i % 3 == 0 else steps

    total = sum(len(plan(i)) for i in range(50))
    with ExitStack() as stack:
        clients = [
            VersionedClient((a, b)[i % 2], access_token(user), stack, chat_id=group.id, seq=sent.seq, version=v0)
            for i, user in enumerate(reactors)
        ]
        watchers = [
            VersionedClient(server, access_token(owner), stack, chat_id=group.id, seq=sent.seq, version=v0)
            for server in (a, b)
        ]
        start = threading.Barrier(50)

        def react(i: int) -> None:
            start.wait(timeout=TIMEOUT * 6)
            for n, (kind, emoji) in enumerate(plan(i)):
                clients[i].call({"type": kind, "chat_id": group.id, "seq": sent.seq, "emoji": emoji}, f"r{n}")

        with ThreadPoolExecutor(max_workers=50) as pool:
            for future in [pool.submit(react, i) for i in range(50)]:
                future.result()
            final = Chat.objects.get(id=group.id).version
            assert final == v0 + total
            for future in [pool.submit(c.wait_for, final, v0 + 1) for c in clients + watchers]:
                future.result()

        stored = Message.objects.get(id=sent.id).reactions
        expected = [{"emoji": emoji, "count": count} for emoji, count in stored]
        for client in clients + watchers:
            assert client.held == final
            assert client.reactions == expected
            assert sorted(client.delivered) == list(range(v0 + 1, final + 1)), client.server.name
        assert sum(c["count"] for c in expected) == sum(2 - (i % 3 == 0) for i in range(50))
        for client in clients + watchers:
            assert_silent(client.connection)
        print(f"repairs: {sum(c.repairs for c in clients + watchers)} of {len(clients) + len(watchers)} sockets")
