"""The channel layer: channels-redis' pub/sub layer, with fan-out per process.

Why pub/sub (``RedisPubSubChannelLayer``) and not the default ``RedisChannelLayer``:
no per-channel lists polled with BLPOP (4 unpipelined round trips per send and per
receive), no per-channel capacity that drops messages silently, and redis-py
re-subscribes by itself after Redis restarts.

What we change: **one channel-layer message per event and process, not per member.**
Every process holds a single SUBSCRIBE, to the fan-out channel. Groups (``user.<id>``)
and sockets' own channels are bookkeeping inside the process, so a handshake costs no
Redis round trip. :meth:`group_send_many` publishes one envelope (the message serialized
once, plus the group names); each process parses it once and queues it for its own
sockets in those groups. A message to a 1 000-member chat is one PUBLISH and one pub/sub
message per process instead of 1 000 of each. The price: every process parses every
event's envelope, including those with no local recipient -- fine for a handful of
processes (Mattermost's cluster broadcast works the same way); many processes would want
per-process routing instead. Nothing sends to a single socket's channel across processes.

And surviving a Redis restart (each point found by the fault suite, ``tests/faults``):

* **One owner for the pub/sub connection.** In the stock shard, whichever task touches the
  broken connection first reconnects it -- the receive loop, or a consumer's SUBSCRIBE in a
  handshake -- and under load two of them did at once: two sockets, interleaved handshakes,
  and sockets left deaf. Here the pub/sub object never reconnects by itself; only the
  receive loop does, holding the shard lock that SUBSCRIBE/UNSUBSCRIBE hold too. A command
  on a broken connection fails (the handshake is refused with 4503 and retried).
* **Resync.** The reconnect re-SUBSCRIBEs every channel and group, so live delivery
  resumes; but every event published while the connection was down is gone, and a socket
  notices a lost ``message.new`` only when a later one in the same chat shows a seq gap --
  the last message of a quiet chat would stay invisible. So after re-subscribing, every
  local consumer in a group gets ``layer.resync`` (:data:`RESYNC`); the chat consumer closes
  its socket with 4503 and the client reconnects and catches up by ``after_seq``.
* **No wake-up lost to a stale connection.** Pooled publishing connections die with the
  server and redis-py (no retry configured) fails the next PUBLISH on each of them, after
  the resync. A publish failing with a connection error drops the idle pooled connections
  and is sent once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from channels_redis.pubsub import (
    RedisPubSubChannelLayer,
    RedisPubSubLoopLayer,
    RedisSingleShardConnection,
)
from channels_redis.utils import _wrap_close
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from runtime.inbox import Inbox
from runtime.realtime import DELIVER

logger = logging.getLogger(__name__)

# Layer message type put into every local consumer's channel after the Redis connection came back.
RESYNC = "layer.resync"
# Events for fewer users than this take the per-consumer queues (see add_receiver).
DIRECT_MIN_GROUPS = 16
# Direct delivery gives the event loop back after this many sockets (see _deliver_loop).
DIRECT_YIELD_EVERY = 32
# Seconds one attempt to re-establish the pub/sub connection may hold the shard lock.
RECONNECT_TIMEOUT = 5.0


class _OwnedPubSub(PubSub):
    """redis-py's PubSub that never reconnects on its own: only :meth:`reconnect` does."""

    def __init__(self, *args, on_resubscribed, **kwargs):
        super().__init__(*args, **kwargs)
        self._on_resubscribed = on_resubscribed

    async def connect(self):
        if self.connection is not None and not self.connection.is_connected:
            raise RedisConnectionError("pub/sub connection to Redis is down; the receive loop re-establishes it")
        await super().connect()

    async def parse_response(self, block: bool = True, timeout: float = 0):  # noqa: ASYNC109 - redis-py's signature
        if self.connection is not None and not self.connection.is_connected:
            raise RedisConnectionError("pub/sub connection to Redis is down")
        return await super().parse_response(block=block, timeout=timeout)

    async def _reconnect(self, conn, error=None, failure_count=None, start_time=None, command_name=None):
        # redis-py's failure handler reconnects in whatever task hit the error; only disconnect.
        await conn.disconnect(error=error, failure_count=failure_count)

    async def reconnect(self) -> None:
        """Connect again; ``on_connect`` then re-SUBSCRIBEs everything and the shard resyncs."""
        await self.connection.connect()

    async def on_connect(self, connection):
        had_subscriptions = bool(self.channels or self.patterns)
        await super().on_connect(connection)  # re-SUBSCRIBE every channel and pattern
        if had_subscriptions:
            self._on_resubscribed()


class _ResyncingShard(RedisSingleShardConnection):
    def _ensure_redis(self):
        if self._redis is None:
            super()._ensure_redis()
            self._pubsub = _OwnedPubSub(self._redis.connection_pool, on_resubscribed=self._resync_local_channels)

    async def publish(self, channel, message):
        async with self._lock:
            self._ensure_redis()
            await _retry_stale(self._redis, lambda: self._redis.publish(channel, message))

    async def _do_receiving(self):
        """The stock receive loop, plus: a broken connection is re-established here only."""
        while True:
            try:
                pubsub = self._pubsub
                if pubsub is not None and pubsub.subscribed:
                    if pubsub.connection is not None and not pubsub.connection.is_connected:
                        async with self._lock:  # no SUBSCRIBE or PUBLISH meanwhile; bounded
                            try:
                                await asyncio.wait_for(pubsub.reconnect(), RECONNECT_TIMEOUT)
                            except BaseException:
                                with contextlib.suppress(Exception):
                                    await pubsub.connection.disconnect(nowait=True)
                                raise
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:  # noqa: BLE001 - Redis is down (or slow): keep trying, quietly
                logger.warning("pub/sub connection to Redis lost (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(0.5)

    def _receive_message(self, message):
        """Envelopes on the fan-out channel go to the local sockets of the groups they name."""
        if message is not None:
            name = message["channel"]
            if isinstance(name, bytes):
                name = name.decode()
            loop_layer = self.channel_layer
            if name == loop_layer.fanout_channel:
                envelope = loop_layer.channel_layer.deserialize(message["data"])
                payload = envelope["payload"]
                groups = envelope["groups"]
                receivers, decoded = {}, None
                if len(groups) >= DIRECT_MIN_GROUPS and loop_layer.receivers:
                    decoded = loop_layer.channel_layer.deserialize(payload)
                    if decoded.get("type") == DELIVER:  # other types go to the queues
                        receivers = loop_layer.receivers
                direct = []
                for group_channel in groups:
                    for channel_name in loop_layer.groups.get(group_channel, ()):
                        receiver = receivers.get(channel_name)
                        if receiver is not None:
                            direct.append(receiver)
                            continue
                        queue = loop_layer.channels.get(channel_name)
                        if queue is not None:
                            queue.put_nowait(payload)
                if direct:
                    loop_layer.deliver_directly(decoded, direct)
                return
        super()._receive_message(message)

    def _resync_local_channels(self) -> None:
        """Events may have been lost while disconnected: wake every local consumer in a group.

        Only group members listen for events (``ChatConsumer`` joins its user's group); other
        consumers have no handler for the message and never miss anything.
        """
        loop_layer = self.channel_layer
        payload = loop_layer.channel_layer.serialize({"type": RESYNC})
        members = {channel for channels in loop_layer.groups.values() for channel in channels}
        queues = [loop_layer.channels[channel] for channel in members if channel in loop_layer.channels]
        logger.warning("channel layer re-subscribed to Redis; asking %d local sockets to resync", len(queues))
        for queue in queues:
            queue.put_nowait(payload)


async def _retry_stale(redis, send):
    """Run a publishing command; on a connection error drop idle pooled connections, retry once."""
    try:
        return await send()
    except (RedisConnectionError, RedisTimeoutError):
        await redis.connection_pool.disconnect(inuse_connections=False)
        return await send()


class _ResyncingLoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._shards = [_ResyncingShard(shard.host, self) for shard in self._shards]
        # channel name -> async callable taking the message (see FanoutChannelLayer.add_receiver).
        self.receivers: dict[str, object] = {}
        self._direct: asyncio.Queue | None = None
        self._direct_task: asyncio.Task | None = None

    def deliver_directly(self, message: dict, receivers: list) -> None:
        """Queue one event for ``receivers``; a single task hands it to each, in arrival order."""
        if self._direct_task is None or self._direct_task.done():
            self._direct = asyncio.Queue()
            self._direct_task = asyncio.get_running_loop().create_task(self._deliver_loop(self._direct))
        self._direct.put_nowait((message, receivers))

    @staticmethod
    async def _deliver_loop(queue: asyncio.Queue) -> None:
        while True:
            message, receivers = await queue.get()
            for n, receiver in enumerate(receivers, 1):
                try:
                    await receiver(message)
                except Exception:
                    logger.exception("direct delivery to a local socket failed")
                if n % DIRECT_YIELD_EVERY == 0:
                    # A socket send does not suspend, so 1 000 of them would hold the loop for
                    # ~50 ms; let other sockets' frames and replies in between.
                    await asyncio.sleep(0)

    @property
    def fanout_channel(self) -> str:
        return f"{self.prefix}__fanout__"

    async def group_add(self, group: str, channel: str) -> None:
        """Group membership is process-local; the process holds one SUBSCRIBE, to the fan-out channel."""
        if channel not in self.channels:
            raise RuntimeError("You can only call group_add() on channels that exist in-process.")
        self.groups.setdefault(self._get_group_channel_name(group), set()).add(channel)
        shard = self._get_shard(self.fanout_channel)
        if self.fanout_channel not in shard._subscribed_to:
            await shard.subscribe(self.fanout_channel)

    async def group_discard(self, group: str, channel: str) -> None:
        group_channel = self._get_group_channel_name(group)
        members = self.groups.get(group_channel)
        if members is not None:
            members.discard(channel)
            if not members:
                del self.groups[group_channel]

    async def group_send(self, group: str, message: dict) -> None:
        await self.channel_layer.group_send_many([group], message)

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A consumer's own channel, local to this process: no Redis SUBSCRIBE.

        Nothing is ever sent to one socket's channel -- events go to per-user groups, and
        the group subscription delivers into this queue locally -- so the stock layer's
        SUBSCRIBE per socket cost a Redis round trip under the shard lock in every
        handshake and a subscription held for nothing. (``send()`` to such a channel from
        another process would not arrive; this project never does that.)
        """
        channel = f"{self.prefix}{prefix}{uuid.uuid4().hex}"
        self.channels[channel] = Inbox()  # asyncio.Queue's interface as used here, ~3 KiB lighter
        return channel


class FanoutChannelLayer(RedisPubSubChannelLayer):
    def _get_layer(self):
        """The base class' per-event-loop layer, with shards that resync after a reconnect."""
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = _ResyncingLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return layer

    def add_receiver(self, channel: str, receiver) -> None:
        """Deliver ``event.deliver`` (:data:`runtime.realtime.DELIVER`) messages for ``channel`` by calling ``await receiver(message)``.

        The stock path puts every event into each local consumer's queue, decoded once per
        consumer, and wakes each consumer's task to dispatch it: for a 1 000-member chat, 1 000
        decodes and 1 000 task switches per message. A receiver instead gets the message decoded
        once per process, from one delivery task that walks all local recipients in turn (in
        arrival order, so a socket's events never overtake each other). Other message types
        (``session.revoke``, ``layer.resync``) still go through the consumer's queue.
        """
        self._get_layer().receivers[channel] = receiver

    def remove_receiver(self, channel: str) -> None:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is not None:
            layer.receivers.pop(channel, None)

    async def group_send_many(self, groups: list[str], message: dict) -> None:
        """``group_send(group, message)`` for every group: ONE publish, whatever the number of groups.

        The message is serialized once, wrapped in an envelope naming the groups, and published
        to the fan-out channel every process subscribes to; each process hands it to its own
        sockets in those groups. A 1 000-member chat costs one PUBLISH and, per process, one
        pub/sub message to parse, instead of 1 000 of each.
        """
        if not groups:
            return
        layer = self._get_layer()
        envelope = self.serialize(
            {"groups": [layer._get_group_channel_name(group) for group in groups], "payload": self.serialize(message)}
        )
        await layer._get_shard(layer.fanout_channel).publish(layer.fanout_channel, envelope)
