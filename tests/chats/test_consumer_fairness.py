"""A socket whose client keeps sending still gets its events at once (found by tests/faults)."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from chats import services
from chats.exceptions import InvalidInput
from runtime import realtime
from tests.conftest import ws_connect

pytestmark = pytest.mark.django_db(transaction=True)

FRAMES = 8
EVENTS = 20
FRAME_SECONDS = 0.2


async def test_events_are_not_queued_behind_slow_client_frames(make_user, monkeypatch):
    """Channels' dispatch loop takes one channel-layer message per client frame; with slow
    frames (each waits on the database) a busy sender's events piled up without bound. Frames
    now run on the socket's own worker, in order, and events go out while they run."""

    async def slow_read(**kwargs):
        await asyncio.sleep(FRAME_SECONDS)  # a statement waiting on the database
        raise InvalidInput("slow")

    monkeypatch.setattr(services.mark_read, "run_async", slow_read)
    user = await database_sync_to_async(make_user)()
    ws = await ws_connect(user)
    try:
        for n in range(FRAMES):
            await ws.send_json_to({"type": "message.read", "chat_id": 1, "up_to_seq": 0, "ref": f"r{n}"})
        await asyncio.sleep(0.05)  # the first frame is being handled
        layer = get_channel_layer()
        for n in range(EVENTS):
            await layer.group_send(
                realtime.user_group(user.id), {"type": realtime.DELIVER, "text": f'{{"type": "e", "n": {n}}}'}
            )

        seen = []
        while len([f for f in seen if f.get("type") == "error"]) < FRAMES:
            seen.append(await ws.receive_json_from(timeout=FRAMES * FRAME_SECONDS + 5))
        replies = [f["ref"] for f in seen if f.get("type") == "error"]
        assert replies == [f"r{n}" for n in range(FRAMES)]  # still one at a time, in order
        last_event = max(i for i, f in enumerate(seen) if f.get("type") == "e")
        # Every event arrived while the frames were still being worked through.
        assert last_event < seen.index(next(f for f in seen if f.get("ref") == "r2")), seen
    finally:
        await ws.disconnect()
