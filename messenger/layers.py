"""The channel layer: channels-redis' pub/sub layer plus a pipelined multi-group send.

Why pub/sub (``RedisPubSubChannelLayer``) and not the default ``RedisChannelLayer``:
one SUBSCRIBE per group per process instead of per-channel lists polled with BLPOP
(4 unpipelined round trips per send and per receive), no per-channel capacity that
drops messages silently, and redis-py re-subscribes by itself after Redis restarts.

What we add: :meth:`group_send_many`. A message to a 1 000-member chat goes to 1 000
per-user groups; the stock layer would serialize it 1 000 times and publish it in
1 000 sequential round trips under the shard lock. Here it is serialized once and the
PUBLISHes go out in one pipeline per shard.
"""

from __future__ import annotations

from collections import defaultdict

from channels_redis.pubsub import RedisPubSubChannelLayer


class PipelinedPubSubChannelLayer(RedisPubSubChannelLayer):
    async def group_send_many(self, groups: list[str], message: dict) -> None:
        """``group_send(group, message)`` for every group, in one round trip per shard."""
        if not groups:
            return
        layer = self._get_layer()
        payload = self.serialize(message)
        by_shard = defaultdict(list)
        for group in groups:
            channel = layer._get_group_channel_name(group)
            by_shard[layer._get_shard(channel)].append(channel)
        for shard, channels in by_shard.items():
            async with shard._lock:
                shard._ensure_redis()
                pipe = shard._redis.pipeline(transaction=False)
                for channel in channels:
                    pipe.publish(channel, payload)
                await pipe.execute()
