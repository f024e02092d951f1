"""Group commit (runtime/async_db.py, ``fetch_grouped``): sends written together keep the contract.

Real PostgreSQL, one event loop, many sends in flight at once (as a busy server process has):
every send is stored once, each chat's seqs stay gap-free and in order, a failing statement
fails only itself, and a key repeated inside one group is stored once.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from prometheus_client import REGISTRY

from chats import services, sql
from chats.models import Message
from runtime import async_db

pytestmark = pytest.mark.django_db(transaction=True)


def _groups() -> tuple[float, float]:
    """(groups committed, of which more than one statement) so far in this process."""
    count = REGISTRY.get_sample_value("messenger_db_group_commit_size_count") or 0.0
    singles = REGISTRY.get_sample_value("messenger_db_group_commit_size_bucket", {"le": "1.0"}) or 0.0
    return count, count - singles


@pytest.fixture
def chats(make_user, settings):
    settings.SEND_RATE_LIMIT = 0
    settings.DB_GROUP_COMMIT = True
    users = [make_user() for _ in range(6)]
    direct = [
        services.open_direct_chat(user_id=users[0].id, other_user_id=users[1].id).chat,
        services.open_direct_chat(user_id=users[2].id, other_user_id=users[3].id).chat,
    ]
    group = services.create_group(user_id=users[4].id, title="g", member_ids=[u.id for u in users[:4] + users[5:]])
    return users, [*direct, group]


async def test_sends_in_flight_together_are_committed_in_groups_gap_free(chats):
    users, rooms = chats
    senders = {rooms[0].id: users[:2], rooms[1].id: users[2:4], rooms[2].id: [users[4], users[5], users[0]]}
    before_groups, before_multi = _groups()

    async def send(n: int):
        chat = rooms[n % len(rooms)]
        sender = senders[chat.id][n % len(senders[chat.id])]
        result, _ = await services.send_message.run_async(
            user_id=sender.id, chat_id=chat.id, client_id=f"gc-{n}", text=f"m{n}"
        )
        return chat.id, result

    results = await asyncio.gather(*(send(n) for n in range(120)))
    assert all(not r.duplicate for _, r in results)
    groups, multi = _groups()
    assert multi > before_multi, "no group held more than one send"
    assert groups - before_groups < 120, "every send was committed alone"

    def stored():
        return {
            chat.id: list(
                Message.objects.filter(chat=chat, kind="text").order_by("seq").values_list("seq", "client_id")
            )
            for chat in rooms
        }

    by_chat = await database_sync_to_async(stored)()
    for chat in rooms:
        rows = by_chat[chat.id]
        acked = sorted(r.message.seq for cid, r in results if cid == chat.id)
        assert [seq for seq, _ in rows] == acked  # every acked seq stored, nothing else
        all_seqs = await database_sync_to_async(
            lambda chat=chat: list(Message.objects.filter(chat=chat).order_by("seq").values_list("seq", flat=True))
        )()
        assert all_seqs == list(range(1, len(all_seqs) + 1))  # gap-free, system messages included
    assert sum(len(rows) for rows in by_chat.values()) == 120


def _params(user, chat, client_id: str, text: str) -> dict:
    return {"chat": chat.id, "user": user.id, "text": text, "client_id": client_id, "reply": None, "uploads": None}


async def test_a_failing_statement_in_a_group_fails_only_itself(chats):
    users, rooms = chats
    direct = rooms[0]
    ok = [_params(users[n % 2], direct, f"ok-{n}", f"fine {n}") for n in range(6)]
    bad = _params(users[0], direct, "bad", "a NUL \x00 cannot be stored")
    outcomes = await asyncio.gather(
        *(async_db.fetch_grouped(sql.SEND.sql, params) for params in [*ok[:3], bad, *ok[3:]]), return_exceptions=True
    )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1 and outcomes.index(errors[0]) == 3
    assert all(isinstance(o, list) and len(o) == 1 for i, o in enumerate(outcomes) if i != 3)
    seqs = await database_sync_to_async(
        lambda: list(Message.objects.filter(chat=direct).order_by("seq").values_list("seq", "client_id"))
    )()
    assert [c for _, c in seqs if c] == [p["client_id"] for p in ok]
    assert [s for s, _ in seqs] == list(range(1, len(seqs) + 1))


async def test_a_key_repeated_inside_one_group_is_stored_once(chats):
    users, rooms = chats
    same = _params(users[0], rooms[0], "twice", "once only")
    others = [_params(users[1], rooms[0], f"o-{n}", "x") for n in range(4)]
    outcomes = await asyncio.gather(
        *(async_db.fetch_grouped(sql.SEND.sql, p) for p in [*others[:2], same, same, *others[2:]])
    )
    first, second = (sql.SEND.decode(rows, True) for rows in outcomes[2:4])
    assert first.stored_id is not None and second.stored_id is None  # the second is a repeat...
    assert second.original.id == first.stored_id  # ... answered with the first one's message
    count = await database_sync_to_async(
        lambda: Message.objects.filter(sender_id=users[0].id, client_id="twice").count()
    )()
    assert count == 1
