"""Per-process routing of the channel layer (runtime/layers.py, runtime/presence.py), with real
daphne processes, real Redis servers and real restarts.

An event goes only to the processes holding a socket of a recipient; Redis' presence map follows
connects and disconnects, forgets SIGKILLed processes after their TTL, comes back by the heartbeat
after a Redis restart, and works over two Redis shards (one of which restarts). Conditions that
become true eventually are polled with deadlines; nothing here measures speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
import urllib.request
from contextlib import ExitStack

import pytest
import redis
from channels_redis.utils import _consistent_hash
from prometheus_client import REGISTRY
from websockets.exceptions import ConnectionClosed

from chats import services
from runtime.layers import RESYNC, FanoutChannelLayer
from tests.conftest import RUN_PREFIX, access_token
from tests.faults.infra import PrivateRedis
from tests.live import NamedServer, assert_silent, recv_until, running, send

TIMEOUT = 10
# Short heartbeats so that a killed process is forgotten, and a lost presence re-announced, quickly.
HEARTBEAT = "0.3"
TTL = 2.0
SHORT_HEARTBEAT = {"CHANNEL_LAYER_HEARTBEAT_SECONDS": HEARTBEAT, "CHANNEL_LAYER_PROCESS_TTL_SECONDS": str(TTL)}


def serve_argv(port: int, module: str = "runtime.serve") -> list[str]:
    return [sys.executable, "-m", module, "-b", "127.0.0.1", "-p", str(port)]


class Daphne(NamedServer):
    def metric(self, name: str) -> float:
        """A counter of this process, from its /metrics (open to 127.0.0.1)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.port}/metrics", timeout=TIMEOUT) as response:
            text = response.read().decode()
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        assert found, f"{name} not in {self.name}'s /metrics"
        return float(found.group(1))


def eventually(condition, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def members(client, key: str) -> set[str]:
    return {m.decode() for m in client.smembers(key)}


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@pytest.fixture(scope="module")
def servers(django_db_setup, tmp_path_factory):
    """Two daphne processes on the test database and the shared Redis (this run's prefix)."""
    log_dir = tmp_path_factory.mktemp("routing")
    with running(Daphne("a", log_dir, **SHORT_HEARTBEAT), Daphne("b", log_dir, **SHORT_HEARTBEAT)) as started:
        yield started


@pytest.fixture
def shared_redis():
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    yield client
    client.close()


def presence_key(user_id: int, prefix: str = RUN_PREFIX) -> str:
    return f"{prefix}presence:user.{user_id}"


# --- (a) routing between two processes --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_event_is_published_only_to_the_process_holding_its_recipient(servers, make_user):
    """Bob on A, Carol on B: Alice's messages to Bob reach A and never reach B (B receives no
    envelope at all), and the other way round; no process gets an envelope it has no socket for."""
    a, b = servers
    alice, bob, carol = make_user(), make_user(), make_user()
    to_bob = services.open_direct_chat(user_id=alice.id, other_user_id=bob.id).chat
    to_carol = services.open_direct_chat(user_id=alice.id, other_user_id=carol.id).chat
    with ExitStack() as stack:
        bob_on_a = a.ws(access_token(bob), stack)
        carol_on_b = b.ws(access_token(carol), stack)
        before = {
            (server.name, name): server.metric(f"messenger_layer_envelopes_{name}_total")
            for server in servers
            for name in ("received", "unrouted")
        }
        for n in range(5):
            services.send_message(user_id=alice.id, chat_id=to_bob.id, client_id=f"b{n}", text=f"to bob {n}")
            assert recv_until(bob_on_a, "message.new")["message"]["text"] == f"to bob {n}"
        assert b.metric("messenger_layer_envelopes_received_total") == before["b", "received"]
        assert a.metric("messenger_layer_envelopes_received_total") >= before["a", "received"] + 5
        assert_silent(carol_on_b)

        received_on_a = a.metric("messenger_layer_envelopes_received_total")
        for n in range(3):
            services.send_message(user_id=alice.id, chat_id=to_carol.id, client_id=f"c{n}", text=f"to carol {n}")
            assert recv_until(carol_on_b, "message.new")["message"]["text"] == f"to carol {n}"
        assert a.metric("messenger_layer_envelopes_received_total") == received_on_a
        assert b.metric("messenger_layer_envelopes_received_total") >= before["b", "received"] + 3
        assert_silent(bob_on_a)
        for server in servers:
            assert server.metric("messenger_layer_envelopes_unrouted_total") == before[server.name, "unrouted"]


@pytest.mark.django_db(transaction=True)
def test_a_group_nobody_holds_costs_no_publish(make_user):
    """An event whose recipients have no socket anywhere is not published at all."""
    alice, bob = make_user(), make_user()
    chat = services.open_direct_chat(user_id=alice.id, other_user_id=bob.id).chat
    events, envelopes = (
        counter("messenger_layer_events_published_total"),
        counter("messenger_layer_envelopes_published_total"),
    )
    services.send_message(user_id=alice.id, chat_id=chat.id, client_id="nobody", text="into the void")
    assert counter("messenger_layer_events_published_total") == events
    assert counter("messenger_layer_envelopes_published_total") == envelopes


# --- (b) presence exactness ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_presence_sets_follow_connects_and_disconnects(servers, make_user, shared_redis):
    """A process is in a user's set from the handshake (before session.ready) while it holds one of
    the user's sockets, and leaves it when its last one closes."""
    a, b = servers
    bob = make_user()
    key = presence_key(bob.id)
    token = access_token(bob)
    assert members(shared_redis, key) == set()
    with ExitStack() as stack:
        first_on_a = a.ws(token, stack)
        (process_a,) = members(shared_redis, key)  # already there when session.ready arrived
        second_on_a = a.ws(token, stack)
        assert members(shared_redis, key) == {process_a}
        on_b = b.ws(token, stack)
        (process_b,) = members(shared_redis, key) - {process_a}

        first_on_a.close()
        assert_silent(second_on_a)  # A still holds bob: its id stays
        assert members(shared_redis, key) == {process_a, process_b}
        second_on_a.close()
        eventually(lambda: members(shared_redis, key) == {process_b}, "A leaves bob's set")
        on_b.close()
        eventually(lambda: not shared_redis.exists(key), "the set goes with its last process")
    registry = {m.decode() for m in shared_redis.zrange(f"{RUN_PREFIX}procs", 0, -1)}
    assert {process_a, process_b} <= registry


@pytest.mark.django_db(transaction=True)
def test_a_killed_process_is_skipped_after_its_ttl_and_removed(servers, make_user, shared_redis, tmp_path):
    """Bob on B and on C; C is SIGKILLed. Sends keep reaching bob on B; once C's heartbeat has
    expired, senders stop publishing to it and remove it from the sets and the registry."""
    _, b = servers
    c = Daphne("c", tmp_path, **SHORT_HEARTBEAT)
    c.start()
    try:
        alice, bob = make_user(), make_user()
        chat = services.open_direct_chat(user_id=alice.id, other_user_id=bob.id).chat
        key = presence_key(bob.id)
        with ExitStack() as stack:
            bob_on_b = b.ws(access_token(bob), stack)
            (process_b,) = members(shared_redis, key)
            with ExitStack() as on_c:
                c.ws(access_token(bob), on_c)
                (process_c,) = members(shared_redis, key) - {process_b}
                c.proc.kill()
                c.proc.wait(timeout=TIMEOUT)
                on_c.pop_all()  # its socket died with it

            n = 0

            def sent_and_cleaned() -> bool:
                nonlocal n
                n += 1
                services.send_message(user_id=alice.id, chat_id=chat.id, client_id=f"k{n}", text=f"k{n}")
                assert recv_until(bob_on_b, "message.new")["message"]["text"] == f"k{n}"
                time.sleep(0.1)
                return process_c not in members(shared_redis, key)

            eventually(sent_and_cleaned, "a sender removes the dead process from bob's set", TTL * 10 + 20)
            assert members(shared_redis, key) == {process_b}

            def registry() -> set[str]:
                return {m.decode() for m in shared_redis.zrange(f"{RUN_PREFIX}procs", 0, -1)}

            # The registry is cleaned by the live processes' heartbeats (its deadline has passed).
            eventually(lambda: process_c not in registry(), "the dead process dropped from the registry", TTL * 10)
            assert process_b in registry()

            envelopes = counter("messenger_layer_envelopes_published_total")
            services.send_message(user_id=alice.id, chat_id=chat.id, client_id="last", text="only B")
            assert recv_until(bob_on_b, "message.new")["message"]["text"] == "only B"
            assert counter("messenger_layer_envelopes_published_total") == envelopes + 1
    finally:
        c.stop()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("module", ["runtime.serve", "runtime.uvserve"])
def test_a_server_stopped_gracefully_leaves_the_presence_map_at_once(make_user, shared_redis, tmp_path, module):
    """Either production entry point (daphne's ``runtime.serve``, uvicorn's ``runtime.uvserve``)
    on SIGTERM removes its entries, its liveness key and its registry entry before exiting,
    instead of leaving them for the TTL (here ten minutes)."""
    server = Daphne(module, tmp_path, lambda port: serve_argv(port, module), CHANNEL_LAYER_PROCESS_TTL_SECONDS="600")
    server.start()
    try:
        bob = make_user()
        key = presence_key(bob.id)
        with ExitStack() as stack:
            server.ws(access_token(bob), stack)
            (process,) = members(shared_redis, key)
            assert shared_redis.exists(f"{RUN_PREFIX}proc:{process}")
            server.stop()
            stack.pop_all()
        assert members(shared_redis, key) == set()
        assert not shared_redis.exists(f"{RUN_PREFIX}proc:{process}")
        assert shared_redis.zscore(f"{RUN_PREFIX}procs", process) is None
    finally:
        server.stop()


# --- (c) presence comes back after Redis lost it --------------------------------------------------


def _layer(url: str, prefix: str) -> FanoutChannelLayer:
    return FanoutChannelLayer(hosts=[url], prefix=prefix, heartbeat_interval=float(HEARTBEAT), process_ttl=TTL)


async def _delivered_eventually(sender, receiver, channel: str, group: str, timeout: float = 30) -> None:
    """Send until one arrives (events sent while Redis was away are lost, by design). The receive
    is never cancelled: a cancelled ``receive`` drops the channel."""
    deadline = time.monotonic() + timeout
    pending = asyncio.ensure_future(receiver.receive(channel))
    n = 0
    while True:
        n += 1
        with contextlib.suppress(Exception):  # Redis not back yet
            await sender.group_send_many([group], {"type": "event.deliver", "text": f"try {n}"})
        await asyncio.wait({pending}, timeout=0.5)
        if pending.done():
            if pending.result().get("type") == "event.deliver":
                return
            pending = asyncio.ensure_future(receiver.receive(channel))
        assert time.monotonic() < deadline, f"nothing delivered within {timeout} s"


async def test_a_heartbeat_that_finds_its_presence_gone_announces_it_again_and_resyncs(shared_redis):
    """The process's liveness key and its entry in a set vanish (as when Redis loses its data or
    the process stalled past its TTL and was cleaned): the next heartbeat puts every local group
    back and asks the local sockets to resync; delivery works again."""
    prefix = f"{RUN_PREFIX}-lost"
    holder, sender = _layer(os.environ["REDIS_URL"], prefix), _layer(os.environ["REDIS_URL"], prefix)
    try:
        channel = await holder.new_channel()
        await holder.group_add("user.1", channel)
        await holder.group_add("user.2", channel)
        process = holder._get_layer().presence.id
        shared_redis.delete(f"{prefix}proc:{process}", f"{prefix}presence:user.1", f"{prefix}presence:user.2")

        assert await asyncio.wait_for(holder.receive(channel), TIMEOUT) == {"type": RESYNC}
        for group in ("user.1", "user.2"):
            assert members(shared_redis, f"{prefix}presence:{group}") == {process}
        await sender.group_send_many(["user.2"], {"type": "event.deliver", "text": "back"})
        assert await asyncio.wait_for(holder.receive(channel), TIMEOUT) == {"type": "event.deliver", "text": "back"}
    finally:
        await holder.flush()
        await sender.flush()
    assert not shared_redis.exists(f"{prefix}presence:user.1", f"{prefix}presence:user.2", f"{prefix}proc:{process}")
    assert shared_redis.zscore(f"{prefix}procs", process) is None


async def test_presence_is_registered_again_after_a_redis_restart(tmp_path):
    """A private Redis restarts (losing everything): the holding process resyncs its sockets, its
    heartbeat puts its groups back into the new server's presence map, and delivery resumes."""
    server = PrivateRedis(tmp_path)
    server.start()
    prefix = "routing-restart"
    holder, sender = _layer(server.url, prefix), _layer(server.url, prefix)
    client = redis.Redis.from_url(server.url)
    try:
        channel = await holder.new_channel()
        await holder.group_add("user.7", channel)
        process = holder._get_layer().presence.id
        await sender.group_send_many(["user.7"], {"type": "event.deliver", "text": "before"})
        assert await asyncio.wait_for(holder.receive(channel), TIMEOUT) == {"type": "event.deliver", "text": "before"}

        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        assert await asyncio.wait_for(holder.receive(channel), 30) == {"type": RESYNC}
        deadline = time.monotonic() + 30
        while members(client, f"{prefix}presence:user.7") != {process}:
            assert time.monotonic() < deadline, "presence not re-registered"
            await asyncio.sleep(0.05)
        await _delivered_eventually(sender, holder, channel, "user.7")
    finally:
        await holder.flush()
        await sender.flush()
        client.close()
        server.stop()


# --- (d) two Redis shards ------------------------------------------------------------------------


@pytest.fixture
def sharded(django_db_setup, tmp_path):
    """Two private Redis servers as the layer's shards, and two daphne processes using both."""
    shards = [PrivateRedis(tmp_path / "r1"), PrivateRedis(tmp_path / "r2")]
    daphnes = []
    try:
        for shard in shards:
            shard.start()
        urls = ",".join(shard.url for shard in shards)
        for name in ("a", "b"):
            daphne = Daphne(
                f"sharded-{name}", tmp_path, REDIS_URL=shards[0].url, CHANNEL_LAYER_REDIS_URLS=urls, **SHORT_HEARTBEAT
            )
            daphnes.append(daphne.start())
        yield shards, daphnes
    finally:
        for daphne in daphnes:
            daphne.stop()
        for shard in shards:
            shard.stop()


def _expect_resync(connection) -> None:
    """The socket is told to resync and closed with 4503."""
    frames = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            frames.append(json.loads(connection.recv(timeout=30)))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4503, frames
    assert frames and frames[-1]["code"] == "resync_required", frames


@pytest.mark.django_db(transaction=True)
def test_two_redis_shards_carry_events_between_processes_and_survive_one_restarting(sharded, make_user):
    """Users whose groups hash to both shards, on both processes, in one group chat: a message
    reaches every socket; the presence map is spread over both shards; when one shard restarts,
    every socket is asked to resync (4503), and after reconnecting delivery works again."""
    shards, (a, b) = sharded
    # Enough users that each process holds a group on each shard.
    placed: set[tuple[int, int]] = set()
    users = []
    for _ in range(64):
        user = make_user()
        shard = _consistent_hash(presence_key(user.id), 2)
        for process in (0, 1):
            if (process, shard) not in placed:
                placed.add((process, shard))
                users.append((user, (a, b)[process]))
                break
        if len(placed) == 4:
            break
    assert len(placed) == 4
    owner = users[0][0]
    group = services.create_group(user_id=owner.id, title="Sharded", member_ids=[u.id for u, _ in users[1:]])
    clients = [redis.Redis.from_url(shard.url) for shard in shards]  # each shard's own view
    try:
        with ExitStack() as stack:
            sockets = [server.ws(access_token(user), stack) for user, server in users]
            for client in clients:
                assert client.keys(f"{RUN_PREFIX}presence:*"), "a shard holds no presence set"
            send(sockets[0], {"type": "message.send", "chat_id": group.id, "client_id": "s1", "text": "one"})
            for connection in sockets[1:]:
                assert recv_until(connection, "message.new")["message"]["text"] == "one"

            shards[1].stop()
            shards[1].start()
            for connection in sockets:
                _expect_resync(connection)

        with ExitStack() as stack:
            sockets = [server.ws(access_token(user), stack) for user, server in users]
            for n in range(2):
                text = f"after {n}"
                send(sockets[0], {"type": "message.send", "chat_id": group.id, "client_id": f"a{n}", "text": text})
                for connection in sockets[1:]:
                    assert recv_until(connection, "message.new")["message"]["text"] == text
            for client in clients:
                assert client.keys(f"{RUN_PREFIX}presence:*"), "a shard holds no presence set"
    finally:
        for client in clients:
            client.close()
