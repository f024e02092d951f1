"""``chat.read_all`` coalesced per chat (READ_ALL_COALESCE_MS, docs/PROTOCOL.md §4) over the real
stack: sockets through ``messenger.asgi.application``, PostgreSQL and the Redis channel layer.

Every scenario is a burst of read-by-everyone advances: a group whose members have all read its
last message but one laggard, who then reads the messages one at a time.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.db import database_sync_to_async

from chats import services
from chats.models import Chat
from tests.conftest import ws_connect

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async
MESSAGES = 10


async def laggard_group(make_user, settings):
    """A 4-member group with MESSAGES messages after its creation message, read by all but the
    laggard (still at the creation message): (owner, others, laggard, chat, creation seq).

    Built with coalescing off, so nothing from the set-up is held when a test turns it on."""
    settings.READ_ALL_COALESCE_MS = 0
    owner, reader, laggard = [await db(make_user)() for _ in range(3)]
    chat = await db(services.create_group)(user_id=owner.id, title="Burst", member_ids=[reader.id, laggard.id])
    first = await db(lambda: Chat.objects.get(id=chat.id).last_seq)()
    for n in range(MESSAGES):
        await db(services.send_message)(user_id=owner.id, chat_id=chat.id, client_id=f"b-{n}", text=f"m{n}")
    await db(services.mark_read)(user_id=reader.id, chat_id=chat.id, up_to_seq=first + MESSAGES)
    assert await db(lambda: Chat.objects.get(id=chat.id).read_all_seq)() == first
    return owner, reader, laggard, chat, first


async def read_all_frames(communicator, *, chat_id: int, final: int, timeout: float = 5) -> list[int]:
    """The ``up_to_seq`` of every chat.read_all for ``chat_id`` up to the one carrying ``final``,
    then any arriving shortly after (none expected); fails when ``final`` never comes."""
    values: list[int] = []
    deadline = time.monotonic() + timeout
    while not values or values[-1] != final:
        frame = await communicator.receive_json_from(timeout=max(0.01, deadline - time.monotonic()))
        if frame["type"] == "chat.read_all" and frame["chat_id"] == chat_id:
            values.append(frame["up_to_seq"])
    await communicator.send_json_to({"type": "ping", "ref": "after"})
    while (frame := await communicator.receive_json_from(timeout=5))["type"] != "pong":
        if frame["type"] == "chat.read_all":
            values.append(frame["up_to_seq"])
    if not await communicator.receive_nothing(timeout=0.3):
        frame = await communicator.receive_json_from(timeout=1)
        values.append(frame.get("up_to_seq"))
    return values


async def burst(laggard_socket, *, chat_id: int, first: int) -> tuple[list[dict], list[int], float]:
    """The laggard reads the messages one by one, frames pipelined: the replies (in order), the
    chat.read_all values that reached the laggard's socket meanwhile, and the seconds it took."""
    started = time.monotonic()
    for n in range(1, MESSAGES + 1):
        await laggard_socket.send_json_to(
            {"type": "message.read", "chat_id": chat_id, "up_to_seq": first + n, "ref": f"r{n}"}
        )
    replies, seen = [], []
    while len(replies) < MESSAGES:
        frame = await laggard_socket.receive_json_from(timeout=5)
        if frame["type"] == "chat.read" and frame.get("ref"):
            replies.append(frame)
        elif frame["type"] == "chat.read_all":
            seen.append(frame["up_to_seq"])
    return replies, seen, time.monotonic() - started


async def test_a_burst_of_advances_is_one_event_now_and_one_with_the_latest_value_at_the_windows_end(
    make_user, settings
):
    """Ten advances within the window: every socket of every member gets chat.read_all at most
    twice (the first advance at once, the final value at the window's end), rising, the final
    value last; the readers' replies are not held back and carry the current read_all_seq; the
    chat object says the committed value."""
    owner, reader, laggard, chat, first = await laggard_group(make_user, settings)
    window_ms = 1000
    settings.READ_ALL_COALESCE_MS = window_ms
    sockets = [await ws_connect(owner), await ws_connect(owner), await ws_connect(reader), await ws_connect(laggard)]
    laggard_socket = sockets[-1]

    replies, seen_by_laggard, took = await burst(laggard_socket, chat_id=chat.id, first=first)
    assert [r["ref"] for r in replies] == [f"r{n}" for n in range(1, MESSAGES + 1)]
    assert [r["read_all_seq"] for r in replies] == [first + n for n in range(1, MESSAGES + 1)]
    final = first + MESSAGES
    assert await db(lambda: Chat.objects.get(id=chat.id).read_all_seq)() == final

    # Leading + trailing per window the burst touched (one, unless this machine took a second).
    allowed = 2 + int(took * 1000 // window_ms)
    for communicator in sockets:
        seen = seen_by_laggard if communicator is laggard_socket else []
        values = seen + await read_all_frames(communicator, chat_id=chat.id, final=final)
        assert values[0] == first + 1, values  # the leading edge: the first advance, at once
        assert values[-1] == final, values
        assert values == sorted(set(values)), values  # strictly rising
        assert len(values) <= allowed, (values, took)
    for communicator in sockets:
        await communicator.disconnect()


async def test_with_coalescing_off_every_advance_is_sent(make_user, settings):
    """READ_ALL_COALESCE_MS=0: each of the ten advances reaches every socket, in order."""
    owner, reader, laggard, chat, first = await laggard_group(make_user, settings)
    sockets = [await ws_connect(owner), await ws_connect(reader), await ws_connect(laggard)]
    laggard_socket = sockets[-1]

    _, seen_by_laggard, _ = await burst(laggard_socket, chat_id=chat.id, first=first)
    expected = [first + n for n in range(1, MESSAGES + 1)]
    for communicator in sockets:
        seen = seen_by_laggard if communicator is laggard_socket else []
        assert seen + await read_all_frames(communicator, chat_id=chat.id, final=expected[-1]) == expected
    for communicator in sockets:
        await communicator.disconnect()


async def test_a_chat_that_goes_quiet_gets_the_held_value(make_user, settings, api):
    """Two advances over REST (request threads, events after commit) inside one window, then
    nothing: the second still arrives, once the window ends, and only once."""
    owner, _reader, laggard, chat, first = await laggard_group(make_user, settings)
    settings.READ_ALL_COALESCE_MS = 1000
    owner_socket = await ws_connect(owner)

    def read_over_rest(seq: int) -> dict:
        response = api(laggard).post(f"/api/chats/{chat.id}/read", {"up_to_seq": seq}, format="json")
        assert response.status_code == 200, response.content
        return response.json()

    assert (await db(read_over_rest)(first + 1))["read_all_seq"] == first + 1
    assert (await db(read_over_rest)(first + 2))["read_all_seq"] == first + 2
    assert await read_all_frames(owner_socket, chat_id=chat.id, final=first + 2) == [first + 1, first + 2]
    await owner_socket.disconnect()


async def test_concurrent_advances_from_sockets_and_rest_end_at_the_committed_value(make_user, settings, api):
    """Advances from the event loop and from request threads at once: every socket ends at the
    committed read_all_seq, never seeing a value go down."""
    owner, _reader, laggard, chat, first = await laggard_group(make_user, settings)
    settings.READ_ALL_COALESCE_MS = 100
    owner_socket, laggard_socket = await ws_connect(owner), await ws_connect(laggard)

    def read_over_rest(seq: int) -> None:
        response = api(laggard).post(f"/api/chats/{chat.id}/read", {"up_to_seq": seq}, format="json")
        assert response.status_code == 200, response.content

    async def read_over_socket(seq: int) -> None:
        await laggard_socket.send_json_to({"type": "message.read", "chat_id": chat.id, "up_to_seq": seq})

    steps = []
    for n in range(1, MESSAGES + 1):
        steps.append(db(read_over_rest)(first + n) if n % 2 else read_over_socket(first + n))
    await asyncio.gather(*steps)
    final = first + MESSAGES
    deadline = time.monotonic() + 5
    while await db(lambda: Chat.objects.get(id=chat.id).read_all_seq)() != final:
        assert time.monotonic() < deadline, "read_all_seq never reached the last message"
        await asyncio.sleep(0.05)
    values = await read_all_frames(owner_socket, chat_id=chat.id, final=final)
    assert values == sorted(set(values)) and values[-1] == final, values
    await owner_socket.disconnect()
    await laggard_socket.disconnect()
