"""The pub/sub layer with per-process fan-out delivers a multi-group send like N single sends."""

from __future__ import annotations

import asyncio
import os

import pytest

from messenger.layers import PipelinedPubSubChannelLayer
from tests.conftest import RUN_PREFIX

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL)")


async def test_group_send_many_reaches_every_group_once():
    """Every channel in every target group gets the message exactly once; others get nothing."""
    layer = PipelinedPubSubChannelLayer(hosts=[os.environ["REDIS_URL"]], prefix=f"{RUN_PREFIX}-layer")
    try:
        channels = [await layer.new_channel() for _ in range(6)]
        for n, channel in enumerate(channels):
            await layer.group_add(f"user.{n % 3}", channel)  # two sockets per user
        outsider = await layer.new_channel()
        await layer.group_add("user.99", outsider)

        await layer.group_send_many(["user.0", "user.1", "user.2"], {"type": "event.deliver", "text": "hi"})

        # Groups and socket channels are process-local: the process holds one subscription.
        import redis

        subscribed = redis.Redis.from_url(os.environ["REDIS_URL"]).pubsub_channels(f"{RUN_PREFIX}-layer*")
        assert subscribed == [f"{RUN_PREFIX}-layer__fanout__".encode()]

        for channel in channels:
            assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "event.deliver", "text": "hi"}
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(outsider), 0.3)
        for channel in channels:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(layer.receive(channel), 0.1)
    finally:
        await layer.flush()
