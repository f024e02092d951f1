"""Which server processes hold a socket in which layer group: the map the channel layer routes by.

Used by :mod:`runtime.layers` only. A *process* here is one event loop's layer (one per daphne
process), named by a random id. Keys, under the layer's prefix; each lives on the Redis shard its
name hashes to (channels-redis' ``_get_shard``), except the liveness keys:

* ``<prefix>presence:<group>`` -- set of the ids of the processes holding a local socket in
  ``<group>``. A process SADDs itself when its first local socket joins the group and SREMs itself
  when its last one leaves (serialized per group, so a leave and a re-join cannot reach Redis in
  the wrong order).
* ``<prefix>proc:<id>`` -- ``1`` with a TTL, on **every** shard, refreshed by the heartbeat. Its
  absence on a shard at a heartbeat means that shard lost this process's presence (it restarted,
  or the process stalled past the TTL and was cleaned): the process SADDs every local group
  again (pipelined, in chunks) and the layer resyncs its sockets.
* ``<prefix>procs`` -- sorted set id -> deadline (Redis time in ms of its last heartbeat plus
  *its own* TTL), on the *registry shard* (the one ``<prefix>procs`` hashes to). Ids past their
  deadline are dead: senders skip them and the live-set read drops them from the registry.

A routed send is one script call per shard its groups' sets are on (``_ROUTE``): Redis reads the
sets, keeps the ids whose proc key is on that shard, removes the others from the sets (a process
that died, or stalled past its TTL, on that shard's own evidence -- a live process whose key was
just re-set is never removed), and PUBLISHes one envelope per holder naming the groups it holds,
on that shard -- every process SUBSCRIBEs its channel on every shard. No lookup round trip,
no live-set cache that could hide a new process: the proc key is written before the first SADD.
Broadcasts (big fan-outs) read the registry for the live ids.

Exactness: every local group is SADDed (or being SADDed) at any time, except between a shard's
loss and the next heartbeat (at most one interval), which is followed by a resync. A stale
entry (a SADD racing the group's last leave) costs stray envelopes until the next heartbeat
removes it; the receiving side also notes groups it got an envelope for but holds no socket in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

# Commands per pipeline when re-announcing or removing many groups at once.
CHUNK = 500
# Seconds the best-effort cleanup at shutdown may take.
CLOSE_TIMEOUT = 2.0

# KEYS[1] proc key, KEYS[2] the registry (only on the registry shard, whose dead entries -- past
# their deadline -- every heartbeat drops); ARGV id, TTL (ms).
# Returns 1 when the proc key was there (presence intact), 0 when it was not.
_HEARTBEAT = """
local had = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
if KEYS[2] then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
end
return had
"""
# KEYS[1] the registry. Drops the dead (their deadline passed), returns the live ids.
_LIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
# The whole routed send, on one shard, in one round trip: KEYS the groups' presence sets (those
# on this shard); ARGV[1] the proc key prefix, ARGV[2] the process channel prefix, ARGV[3] the
# payload, ARGV[3 + i] the group channel of KEYS[i]. For every live holder (its proc key is on this
# shard: the heartbeat writes one on each) one envelope naming the groups it holds, PUBLISHed here
# (every process SUBSCRIBEs its channel on every shard); a holder whose proc key is gone *here* is
# removed from the set. Returns the number of envelopes published.
_ROUTE = """
local targets, order, alive = {}, {}, {}
for i, key in ipairs(KEYS) do
  for _, id in ipairs(redis.call('SMEMBERS', key)) do
    local live = alive[id]
    if live == nil then
      live = redis.call('EXISTS', ARGV[1] .. id) == 1
      alive[id] = live
    end
    if live then
      local held = targets[id]
      if held == nil then
        held = {}
        targets[id] = held
        table.insert(order, id)
      end
      table.insert(held, ARGV[3 + i])
    else
      redis.call('SREM', key, id)
    end
  end
end
for _, id in ipairs(order) do
  redis.call('PUBLISH', ARGV[2] .. id, table.concat(targets[id], ',') .. '\\n' .. ARGV[3])
end
return #order
"""


async def run(shard, command: Callable):
    """``await command(redis)`` on the shard's pooled client; a stale pooled connection (the
    server restarted) is dropped and the command sent once more."""
    shard._ensure_redis()
    redis = shard._redis
    try:
        return await command(redis)
    except (RedisConnectionError, RedisTimeoutError):
        await redis.connection_pool.disconnect(inuse_connections=False)
        return await command(redis)


def _chunks(items: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Presence:
    """This loop layer's id, its entries in the presence map, its heartbeat; and the lookups
    senders make. ``layer`` is the ``runtime.layers`` loop layer (its shards, groups, prefix)."""

    def __init__(self, layer, *, interval: float, ttl: float):
        self.layer = layer
        self.id = uuid.uuid4().hex
        self.interval = interval
        self.ttl_ms = max(1, int(ttl * 1000))
        prefix = layer.prefix
        self._channel_prefix = f"{prefix}__proc__"
        self.channel = self.channel_of(self.id)
        self._group_prefix = layer._get_group_channel_name("")
        self._presence_prefix = f"{prefix}presence:"
        self._proc_prefix = f"{prefix}proc:"
        self.registry = f"{prefix}procs"
        # Group channels whose SADD of this id completed (and no SREM since).
        self._present: set[str] = set()
        # Group channels to SREM at the next heartbeat if they hold no local socket by then.
        self._stale: set[str] = set()
        self._locks: dict[str, list] = {}  # group channel -> [asyncio.Lock, users]
        self._register_lock = asyncio.Lock()
        self._beat_lock = asyncio.Lock()
        self._beaten: set[int] = set()  # indexes of the shards a heartbeat reached
        self._task: asyncio.Task | None = None

    # --- names -----------------------------------------------------------------------------

    def channel_of(self, process: str) -> str:
        """The channel process ``process`` receives its envelopes on."""
        return self._channel_prefix + process

    def key(self, group_channel: str) -> str:
        return self._presence_prefix + group_channel[len(self._group_prefix) :]

    def shard_of(self, group_channel: str):
        return self.layer._get_shard(self.key(group_channel))

    @property
    def registered(self) -> bool:
        return self._task is not None and not self._task.done()

    # --- this process's entries ---------------------------------------------------------------

    async def register(self) -> None:
        """Before the first SADD: SUBSCRIBE this process's channel and heartbeat into the registry,
        so a sender that finds this id in a set can reach it and knows it is alive."""
        if self.registered:
            return
        async with self._register_lock:
            if self.registered:
                return
            for shard in self.layer._shards:  # a routed send publishes on the groups' shard
                await shard.subscribe(self.channel)
            failed, _ = await self._heartbeat()
            registry = self.layer._get_shard(self.registry)
            if registry in failed:
                raise failed[registry]
            self._task = asyncio.get_running_loop().create_task(self._beat_forever())

    def is_present(self, group_channel: str) -> bool:
        return group_channel in self._present and group_channel not in self._locks

    async def reconcile(self, group_channel: str, *, force_remove: bool = False) -> None:
        """Make this id's entry in the group's set match whether a local socket is in the group.

        Serialized per group: a join waits for a leave still on its way to Redis (and the other
        way round), so the last command sent is the right one.
        """
        entry = self._locks.get(group_channel)
        if entry is None:
            entry = self._locks[group_channel] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                wanted = group_channel in self.layer.groups
                shard, key = self.shard_of(group_channel), self.key(group_channel)
                if wanted and group_channel not in self._present:
                    await run(shard, lambda redis: redis.sadd(key, self.id))
                    self._present.add(group_channel)
                    self._stale.discard(group_channel)
                elif not wanted and (group_channel in self._present or force_remove):
                    self._present.discard(group_channel)
                    self._stale.add(group_channel)  # until the SREM went through
                    await run(shard, lambda redis: redis.srem(key, self.id))
                    self._stale.discard(group_channel)
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[group_channel]

    def note_unrouted(self, group_channels: Iterable[str]) -> None:
        """Envelopes came for these groups but no local socket is in them: remove this id from
        their sets at the next heartbeat unless a socket joined by then."""
        for group_channel in group_channels:
            if group_channel not in self.layer.groups:
                self._stale.add(group_channel)

    async def _beat_forever(self) -> None:
        delay = self.interval  # register() just beat
        while True:
            await asyncio.sleep(delay)
            delay = self.interval
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis is down: keep trying, sooner
                logger.warning("channel layer heartbeat failed (%s); retrying", type(exc).__name__)
                delay = min(self.interval, 1.0)

    async def beat(self, *, resubscribed: bool = False) -> None:
        """One heartbeat: liveness on every shard; on a shard that lost this process's presence,
        every local group announced again, then the local sockets resynced. Announces groups whose
        SADD failed before, removes stale entries. Raises if some shard could not be reached
        (after doing what it could on the others).

        ``resubscribed``: the pub/sub connection of this process's channel just came back, so the
        sockets resync in any case (after the presence map is whole). When the heartbeat finds the
        map lost on the shard of this process's channel, that shard restarted and envelopes to the
        channel were lost too: the pub/sub connection is re-established first (if it has not been
        since this beat began) and the resync follows its re-SUBSCRIBE -- one resync, not two.
        """
        async with self._beat_lock:
            await self._beat(resubscribed)

    async def _beat(self, resubscribed: bool) -> None:
        shards = self.layer._shards
        reconnects = [shard.reconnects for shard in shards]
        failed, lost = await self._heartbeat()
        errors = list(failed.values())
        try:
            await self._announce_missing()
        except Exception as exc:  # noqa: BLE001 - retried at the next heartbeat
            errors.append(exc)
        for group_channel in list(self._stale | (self._present - self.layer.groups.keys())):
            try:
                await self.reconcile(group_channel, force_remove=True)
            except Exception as exc:  # noqa: BLE001 - retried at the next heartbeat
                errors.append(exc)
                break
        if lost:
            logger.warning("channel layer presence lost on Redis shard(s) %s; announced again", lost)
        if resubscribed:
            self.layer.resync_local()
        elif lost:
            # Every shard carries this process's channel, so a shard that lost the presence map
            # restarted and lost envelopes too: its pub/sub connection is re-established and the
            # resync follows the re-SUBSCRIBE (one resync, not two).
            for index in lost:
                if shards[index].reconnects == reconnects[index]:
                    await self.layer.resubscribe(shards[index])
            # else: a reconnect happened meanwhile; its beat (waiting for this one) resyncs
        if errors:
            raise errors[0]

    async def _heartbeat(self) -> tuple[dict, list[int]]:
        """Refresh the proc key on every shard (and the registry). Returns {shard: error} of those
        that failed, and the indexes of the shards that had lost the key while holding some of our
        groups (those groups are no longer taken as present, so they are announced again) or,
        for the registry's shard, after an earlier heartbeat there (broadcasts missed us)."""
        shards = self.layer._shards
        registry = self.layer._get_shard(self.registry)
        proc_key = self._proc_prefix + self.id

        async def one(shard):
            keys = [proc_key, self.registry] if shard is registry else [proc_key]
            return await run(shard, lambda redis: redis.eval(_HEARTBEAT, len(keys), *keys, self.id, self.ttl_ms))

        results = await asyncio.gather(*(one(shard) for shard in shards), return_exceptions=True)
        failed, lost = {}, []
        for index, (shard, result) in enumerate(zip(shards, results, strict=True)):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                failed[shard] = result
            else:
                if not int(result):
                    gone = {g for g in self._present if self.shard_of(g) is shard}
                    self._present -= gone
                    if gone or (shard is registry and index in self._beaten):
                        lost.append(index)
                self._beaten.add(index)
        return failed, lost

    async def _announce_missing(self) -> None:
        """SADD this id to every local group not known to be present (pipelined per shard)."""
        missing = [g for g in self.layer.groups if g not in self._present and g not in self._locks]
        if not missing:
            return
        by_shard: dict = {}
        for group_channel in missing:
            by_shard.setdefault(self.shard_of(group_channel), []).append(group_channel)

        async def announce(shard, group_channels):
            for chunk in _chunks(group_channels):

                async def send(redis, chunk=chunk):
                    pipe = redis.pipeline(transaction=False)
                    for group_channel in chunk:
                        pipe.sadd(self.key(group_channel), self.id)
                    return await pipe.execute()

                await run(shard, send)
                # Marked even if the last socket left meanwhile: the next heartbeat removes it.
                self._present.update(chunk)

        results = await asyncio.gather(*(announce(s, g) for s, g in by_shard.items()), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def close(self) -> None:
        """Graceful shutdown: stop the heartbeat, remove this id from every set and the registry,
        delete its proc keys (best effort, bounded: a leftover expires with the TTL)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        else:
            return
        try:
            await asyncio.wait_for(self._remove_everything(), CLOSE_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - shutdown goes on; the entries expire
            logger.warning("channel layer could not remove its presence (%s)", type(exc).__name__)

    async def _remove_everything(self) -> None:
        groups = self._present | set(self.layer.groups) | self._stale
        self._present, self._stale = set(), set()
        by_shard: dict = {shard: [] for shard in self.layer._shards}
        for group_channel in groups:
            by_shard[self.shard_of(group_channel)].append(group_channel)
        registry = self.layer._get_shard(self.registry)

        async def remove(shard, group_channels):
            async def send(redis):
                pipe = redis.pipeline(transaction=False)
                for chunk in _chunks(group_channels):
                    for group_channel in chunk:
                        pipe.srem(self.key(group_channel), self.id)
                pipe.delete(self._proc_prefix + self.id)
                if shard is registry:
                    pipe.zrem(self.registry, self.id)
                return await pipe.execute()

            await run(shard, send)

        await asyncio.gather(*(remove(s, g) for s, g in by_shard.items()), return_exceptions=True)

    # --- lookups for senders ------------------------------------------------------------------

    async def live(self) -> frozenset[str]:
        """Ids of the processes whose heartbeat is younger than their TTL (read from the registry,
        which drops the dead); for broadcasts, whose one read replaces a lookup."""
        shard = self.layer._get_shard(self.registry)
        ids = await run(shard, lambda redis: redis.eval(_LIVE, 1, self.registry))
        return frozenset(i.decode() if isinstance(i, bytes) else i for i in ids)

    async def route_and_publish(self, group_channels: list[str], payload: bytes) -> tuple[int, BaseException | None]:
        """Publish ``payload`` to every live process holding one of the groups, one envelope per
        process naming the groups it holds: one script call (one round trip) per shard the groups'
        sets live on. Returns the envelopes published and the error of a shard that could not be
        reached (its groups are left out), if any."""
        by_shard: dict = {}
        for group_channel in group_channels:
            by_shard.setdefault(self.shard_of(group_channel), []).append(group_channel)

        async def one(shard, chunk):
            keys = [self.key(group_channel) for group_channel in chunk]
            args = [self._proc_prefix, self._channel_prefix, payload, *chunk]

            def call(redis):
                script = getattr(shard, "route_script", None)
                if script is None or script.registered_client is not redis:
                    script = shard.route_script = redis.register_script(_ROUTE)  # EVALSHA, loaded if missing
                return script(keys=keys, args=args)

            async with shard._lock:  # as the stock publish: one command of this process at a time
                return await run(shard, call)

        items = list(by_shard.items())
        results = await asyncio.gather(*(one(shard, chunk) for shard, chunk in items), return_exceptions=True)
        published, error = 0, None
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                error = error or result
            else:
                published += int(result)
        return published, error
