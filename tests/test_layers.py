"""The pub/sub layer with per-process fan-out delivers a multi-group send like N single sends."""

from __future__ import annotations

import asyncio
import os

import pytest

from runtime.layers import FanoutChannelLayer
from tests.conftest import RUN_PREFIX


@pytest.mark.parametrize("routing", [True, False], ids=["routed", "fanout"])
async def test_group_send_many_reaches_every_group_once(routing):
    """Every channel in every target group gets the message exactly once; others get nothing
    (routed per process, and with routing off through the one fan-out channel)."""
    prefix = f"{RUN_PREFIX}-layer-{routing}"
    layer = FanoutChannelLayer(hosts=[os.environ["REDIS_URL"]], prefix=prefix, routing=routing)
    try:
        channels = [await layer.new_channel() for _ in range(6)]
        for n, channel in enumerate(channels):
            await layer.group_add(f"user.{n % 3}", channel)  # two sockets per user
        outsider = await layer.new_channel()
        await layer.group_add("user.99", outsider)

        await layer.group_send_many(["user.0", "user.1", "user.2"], {"type": "event.deliver", "text": "hi"})

        # Groups and socket channels are process-local: the process holds one subscription, to
        # its own channel (routed) or the fan-out channel; routed, Redis knows who holds a group.
        import redis

        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        subscribed = client.pubsub_channels(f"{prefix}*")
        loop_layer = layer._get_layer()
        if routing:
            process = loop_layer.presence.id
            assert subscribed == [f"{prefix}__proc__{process}".encode()]
            for group in ("user.0", "user.1", "user.2", "user.99"):
                assert client.smembers(f"{prefix}presence:{group}") == {process.encode()}
        else:
            assert subscribed == [f"{prefix}__fanout__".encode()]
            assert client.keys(f"{prefix}presence:*") == []

        for channel in channels:
            assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "event.deliver", "text": "hi"}
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(outsider), 0.3)
        for channel in channels:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(layer.receive(channel), 0.1)
    finally:
        await layer.flush()


async def test_registered_receivers_get_big_fanouts_directly_and_in_order():
    """Events for many users go to each registered receiver in order, decoded once per process;
    small ones and other message types keep going through the consumers' queues."""
    from runtime.layers import DIRECT_MIN_GROUPS

    layer = FanoutChannelLayer(hosts=[os.environ["REDIS_URL"]], prefix=f"{RUN_PREFIX}-direct")
    try:
        users = DIRECT_MIN_GROUPS + 4
        got: dict[str, list] = {}
        channels = []
        for n in range(users):
            channel = await layer.new_channel()
            await layer.group_add(f"user.{n}", channel)
            got[channel] = []

            async def receiver(message, channel=channel):
                got[channel].append(message)

            layer.add_receiver(channel, receiver)
            channels.append(channel)
        everyone = [f"user.{n}" for n in range(users)]
        for k in range(5):
            await layer.group_send_many(everyone, {"type": "event.deliver", "text": f"m{k}"})
        await layer.group_send_many(["user.0"], {"type": "event.deliver", "text": "small"})
        await layer.group_send_many(everyone, {"type": "session.revoke", "sid": None})

        async def all_arrived():
            while any(len(messages) < 5 for messages in got.values()):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(all_arrived(), 5)
        for channel in channels:
            assert [m["text"] for m in got[channel]] == [f"m{k}" for k in range(5)]
        # The same dict for everyone: decoded once.
        assert all(got[c][0] is got[channels[0]][0] for c in channels)
        # A small fan-out and a non-delivery message take the queue.
        assert await asyncio.wait_for(layer.receive(channels[0]), 5) == {"type": "event.deliver", "text": "small"}
        for channel in channels:
            assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "session.revoke", "sid": None}
        # A removed receiver gets nothing more directly; its events go to its queue again.
        layer.remove_receiver(channels[1])
        await layer.group_send_many(everyone, {"type": "event.deliver", "text": "after"})
        assert await asyncio.wait_for(layer.receive(channels[1]), 5) == {"type": "event.deliver", "text": "after"}
        await asyncio.wait_for(all_arrived(), 5)
        assert len(got[channels[1]]) == 5
    finally:
        await layer.flush()


async def test_a_big_direct_delivery_lets_other_tasks_run_between_sockets():
    """Socket sends do not suspend; direct delivery yields every DIRECT_YIELD_EVERY receivers, so
    one fan-out to a big group cannot hold the event loop (and every other socket) for its whole length."""
    from runtime.layers import DIRECT_YIELD_EVERY

    layer = FanoutChannelLayer(hosts=[os.environ["REDIS_URL"]], prefix=f"{RUN_PREFIX}-yield")
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    try:
        users = 4 * DIRECT_YIELD_EVERY
        seen: list[tuple[int, int]] = []  # (receiver index, ticks when it ran)
        for n in range(users):
            channel = await layer.new_channel()
            await layer.group_add(f"user.{n}", channel)

            async def receiver(message, n=n):
                seen.append((n, ticks))

            layer.add_receiver(channel, receiver)
        task = asyncio.get_running_loop().create_task(ticker())
        await layer.group_send_many([f"user.{n}" for n in range(users)], {"type": "event.deliver", "text": "x"})

        async def delivered():
            while len(seen) < users:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(delivered(), 5)
        task.cancel()
        assert sorted(n for n, _ in seen) == list(range(users))
        # Within a run of DIRECT_YIELD_EVERY sockets nothing else runs; between runs, the ticker does.
        runs = [seen[i : i + DIRECT_YIELD_EVERY] for i in range(0, users, DIRECT_YIELD_EVERY)]
        assert all(len({t for _, t in run}) == 1 for run in runs), seen
        assert len({run[0][1] for run in runs}) == len(runs), seen
    finally:
        await layer.flush()


def _routed(prefix: str, **options) -> FanoutChannelLayer:
    return FanoutChannelLayer(hosts=[os.environ["REDIS_URL"]], prefix=f"{RUN_PREFIX}-{prefix}", **options)


async def test_a_sender_reaches_a_process_that_just_joined():
    """A process that registers after a sender's last send is found in a group's set (its proc key
    is written before its first SADD, so the routing script takes it for alive) and reached at
    once, for a routed event and for a broadcast to many groups."""
    from runtime.layers import ROUTE_BROADCAST_MIN

    sender, first = _routed("cached"), _routed("cached")
    late = None
    try:
        early = await first.new_channel()
        await first.group_add("user.1", early)
        await sender.group_send_many(["user.1"], {"type": "event.deliver", "text": "warm"})
        assert await asyncio.wait_for(first.receive(early), 5) == {"type": "event.deliver", "text": "warm"}
        assert await sender._get_layer().presence.live() == {first._get_layer().presence.id}

        late = _routed("cached")
        channel = await late.new_channel()
        await late.group_add("user.2", channel)
        await sender.group_send_many(["user.2"], {"type": "event.deliver", "text": "routed"})
        assert await asyncio.wait_for(late.receive(channel), 5) == {"type": "event.deliver", "text": "routed"}
        many = ["user.2"] + [f"user.{n}" for n in range(100, 100 + ROUTE_BROADCAST_MIN)]
        await sender.group_send_many(many, {"type": "event.deliver", "text": "broadcast"})
        assert await asyncio.wait_for(late.receive(channel), 5) == {"type": "event.deliver", "text": "broadcast"}
    finally:
        for layer in (sender, first, late):
            if layer is not None:
                await layer.flush()


async def test_a_stale_entry_is_removed_after_its_process_gets_an_envelope_it_cannot_route():
    """This process's id left in a set it no longer holds (a SADD that raced the last leave):
    the stray envelope counts as unrouted and the next heartbeat removes the entry."""
    import redis
    from prometheus_client import REGISTRY

    holder, sender = _routed("stale", heartbeat_interval=0.2), _routed("stale")
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    key = f"{RUN_PREFIX}-stalepresence:user.5"
    try:
        channel = await holder.new_channel()
        await holder.group_add("user.4", channel)
        process = holder._get_layer().presence.id
        client.sadd(key, process)
        unrouted = REGISTRY.get_sample_value("messenger_layer_envelopes_unrouted_total")
        await sender.group_send_many(["user.5"], {"type": "event.deliver", "text": "stray"})
        deadline = asyncio.get_running_loop().time() + 10
        while client.exists(key):
            assert asyncio.get_running_loop().time() < deadline, "the stale entry stayed"
            await asyncio.sleep(0.05)
        assert REGISTRY.get_sample_value("messenger_layer_envelopes_unrouted_total") == unrouted + 1
        assert client.smembers(f"{RUN_PREFIX}-stalepresence:user.4") == {process.encode()}
    finally:
        await holder.flush()
        await sender.flush()
        client.close()


async def test_concurrent_joins_and_leaves_leave_the_presence_set_exact():
    """Sockets joining and leaving one group at once, many times: whenever things settle, the
    process is in the group's set exactly when it holds a socket in the group."""
    import random

    import redis

    layer = _routed("churn")
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    key = f"{RUN_PREFIX}-churnpresence:user.1"
    rng = random.Random(15)
    try:
        channels = [await layer.new_channel() for _ in range(8)]
        process = None

        async def churn(channel):
            for _ in range(15):
                await layer.group_add("user.1", channel)
                await asyncio.sleep(rng.random() * 0.005)
                await layer.group_discard("user.1", channel)
                await asyncio.sleep(rng.random() * 0.005)

        for round_ in range(4):
            await asyncio.gather(*(churn(channel) for channel in channels))
            process = layer._get_layer().presence.id
            assert client.smembers(key) == set(), round_
            await layer.group_add("user.1", channels[round_])
            assert client.smembers(key) == {process.encode()}, round_
            await layer.group_discard("user.1", channels[round_])
    finally:
        await layer.flush()
        client.close()


async def test_losing_the_registry_loses_no_routed_event_and_the_heartbeat_repairs_it(tmp_path):
    """Two shards; the one holding the registry of live processes loses its data (as in a
    restart): senders still reach the holders they find in sets on the other shard (whose
    liveness keys say they are alive); the holder's next heartbeat registers it again and resyncs
    its sockets (broadcasts meanwhile missed it)."""
    import redis
    from channels_redis.utils import _consistent_hash

    from runtime.layers import RESYNC
    from tests.faults.infra import PrivateRedis

    servers = [PrivateRedis(tmp_path / "one"), PrivateRedis(tmp_path / "two")]
    for server in servers:
        server.start()
    prefix = "registry-"
    registry_shard = _consistent_hash(f"{prefix}procs", 2)
    group = next(f"user.{n}" for n in range(100) if _consistent_hash(f"{prefix}presence:user.{n}", 2) != registry_shard)
    hosts = [server.url for server in servers]
    holder = FanoutChannelLayer(hosts=hosts, prefix=prefix, heartbeat_interval=0.2)
    sender = FanoutChannelLayer(hosts=hosts, prefix=prefix)
    clients = [redis.Redis.from_url(server.url) for server in servers]
    try:
        channel = await holder.new_channel()
        await holder.group_add(group, channel)
        process = holder._get_layer().presence.id
        clients[registry_shard].delete(f"{prefix}procs", f"{prefix}proc:{process}")
        await sender.group_send_many([group], {"type": "event.deliver", "text": "still"})
        assert await asyncio.wait_for(holder.receive(channel), 5) == {"type": "event.deliver", "text": "still"}
        assert clients[1 - registry_shard].smembers(f"{prefix}presence:{group}") == {process.encode()}
        assert await asyncio.wait_for(holder.receive(channel), 10) == {"type": RESYNC}
        assert clients[registry_shard].zscore(f"{prefix}procs", process) is not None
    finally:
        await holder.flush()
        await sender.flush()
        for client in clients:
            client.close()
        for server in servers:
            server.stop()
