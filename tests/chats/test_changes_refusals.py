"""Refusals of the messages that change (PROTOCOL.md §6 and §8), through REST and a socket alike.

Complements test_changes.py (the success paths with a few refusals) and the authorization matrix
in tests/security/test_authorization.py (every operation by a non-member answers ``not_found``
and changes nothing). Every refusal here asserts its documented code and that nothing changed:
the chat's ``version`` is where it was.
"""

from __future__ import annotations

import datetime as dt

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chats import services
from chats.models import Chat, Membership, Message, Reaction
from tests.chats.test_changes import TRANSPORTS, _caller, _key

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async
TWENTY_EMOJI = ["👍", "❤️", "😂", "🔥", "🎉", "👀", "😮", "😢", "🙏", "👏",
                "💯", "🤔", "😎", "🥳", "😡", "🤝", "✅", "❌", "🚀", "⭐"]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    settings.SEND_RATE_LIMIT = 0
    settings.MESSAGE_CHANGE_RATE_LIMIT = 0


@db
def _version(chat_id: int) -> int:
    return Chat.objects.get(id=chat_id).version


@db
def _send(user, chat_id: int, text: str = "hello"):
    return services.send_message(user_id=user.id, chat_id=chat_id, client_id=_key(), text=text).message


@db
def _group(owner, members, admins=()):
    group = services.create_group(user_id=owner.id, title="G", member_ids=[u.id for u in members])
    for admin in admins:
        services.add_member(actor_id=owner.id, chat_id=group.id, user_id=admin.id, role=Membership.Role.ADMIN)
    return group


@db
def _system_seq(chat_id: int) -> int:
    return Message.objects.filter(chat_id=chat_id, kind=Message.Kind.SYSTEM).order_by("seq").first().seq


async def _users(make_user, n):
    return [await db(make_user)() for _ in range(n)]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_deleting_others_messages_needs_a_groups_owner_or_admin(transport, make_user):
    """In a group a plain member cannot delete another's message (``forbidden``, the whole batch
    refused even with their own in it); an admin and the owner can; nobody deletes a system message,
    and a batch naming one is refused whole."""
    owner, admin, member, other = await _users(make_user, 4)
    group = await _group(owner, [member, other], admins=[admin])
    others = [await _send(other, group.id, f"o{i}") for i in range(3)]
    mine = await _send(member, group.id, "mine")
    system = await _system_seq(group.id)
    plain, manager, boss = [await _caller(transport, u) for u in (member, admin, owner)]
    try:
        v = await _version(group.id)
        assert (await plain.delete(group.id, [others[0].seq]))["error"] == "forbidden"
        assert (await plain.delete(group.id, [mine.seq, others[0].seq]))["error"] == "forbidden"
        assert (await manager.delete(group.id, [others[0].seq, system]))["error"] == "forbidden"
        assert (await boss.delete(group.id, [system]))["error"] == "forbidden"
        assert await _version(group.id) == v
        assert not await db(Message.objects.filter(chat_id=group.id, deleted_at__isnull=False).exists)()

        by_admin = await manager.delete(group.id, [others[0].seq, mine.seq])
        assert by_admin["changed"] is True and by_admin["seqs"] == [others[0].seq, mine.seq]
        by_owner = await boss.delete(group.id, [others[1].seq])
        assert by_owner["changed"] is True and by_owner["version"] == by_admin["version"] + 1
        deleted = await db(
            lambda: set(
                Message.objects.filter(chat_id=group.id, deleted_at__isnull=False).values_list("seq", flat=True)
            )
        )()
        assert deleted == {others[0].seq, mine.seq, others[1].seq}
    finally:
        for caller in (plain, manager, boss):
            await caller.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_system_messages_cannot_be_edited_deleted_reacted_to_or_forwarded(transport, make_user):
    """A system message ("x created the group") refuses an edit, a delete and a reaction with
    ``forbidden`` and a forward with ``validation_error``, even from the group's owner."""
    owner, member = await _users(make_user, 2)
    group = await _group(owner, [member])
    direct = (await db(services.open_direct_chat)(user_id=owner.id, other_user_id=member.id)).chat
    system = await _system_seq(group.id)
    caller = await _caller(transport, owner)
    try:
        v, v_direct = await _version(group.id), await _version(direct.id)
        assert (await caller.edit(group.id, system, "rewritten"))["error"] == "forbidden"
        assert (await caller.delete(group.id, [system]))["error"] == "forbidden"
        assert (await caller.react(group.id, system, "👍"))["error"] == "forbidden"
        assert (await caller.forward(group.id, [system], direct.id, [_key()]))["error"] == "validation_error"
        assert (await _version(group.id), await _version(direct.id)) == (v, v_direct)
        assert await db(Message.objects.filter(chat_id=direct.id).count)() == 0
    finally:
        await caller.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_edit_window_expired_and_zero_means_always(transport, make_user, settings):
    """With EDIT_WINDOW_HOURS=2 a message sent 3 hours ago refuses an edit with
    ``edit_window_expired`` and one sent 1 hour ago takes it; with 0 the old one is editable too."""
    settings.EDIT_WINDOW_HOURS = 2
    alice, bob = await _users(make_user, 2)
    chat = (await db(services.open_direct_chat)(user_id=alice.id, other_user_id=bob.id)).chat
    old, recent = await _send(alice, chat.id, "old"), await _send(alice, chat.id, "recent")
    now = timezone.now()
    # Only the clock is faked: the messages were sent through the service.
    await db(lambda: Message.objects.filter(id=old.id).update(created_at=now - dt.timedelta(hours=3)))()
    await db(lambda: Message.objects.filter(id=recent.id).update(created_at=now - dt.timedelta(hours=1)))()
    caller = await _caller(transport, alice)
    try:
        v = await _version(chat.id)
        assert (await caller.edit(chat.id, old.seq, "too late"))["error"] == "edit_window_expired"
        assert await _version(chat.id) == v
        assert (await db(Message.objects.get)(id=old.id)).text == "old"
        assert (await caller.edit(chat.id, recent.seq, "in time"))["message"]["version"] == v + 1
        settings.EDIT_WINDOW_HOURS = 0
        assert (await caller.edit(chat.id, old.seq, "no limit"))["message"]["text"] == "no limit"
    finally:
        await caller.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_batches_need_one_to_a_hundred_distinct_seqs(transport, make_user):
    """A delete or forward of 101 seqs, of a repeated seq, or of none is ``validation_error``;
    100 distinct seqs are accepted, in one version."""
    alice, bob = await _users(make_user, 2)
    chat = (await db(services.open_direct_chat)(user_id=alice.id, other_user_id=bob.id)).chat
    other = (
        await db(services.open_direct_chat)(user_id=alice.id, other_user_id=(await _users(make_user, 1))[0].id)
    ).chat
    seqs = [(await _send(alice, chat.id, f"{i}")).seq for i in range(101)]
    caller = await _caller(transport, alice)
    try:
        v = await _version(chat.id)
        for bad in (seqs, [seqs[0], seqs[0]], [seqs[0], seqs[1], seqs[0]]):
            assert (await caller.delete(chat.id, bad))["error"] == "validation_error", len(bad)
            keys = [_key() for _ in bad]
            assert (await caller.forward(chat.id, bad, other.id, keys))["error"] == "validation_error"
        assert (await caller.forward(chat.id, [seqs[0], seqs[1]], other.id, [_key()]))["error"] == "validation_error"
        same_key = _key()
        assert (await caller.forward(chat.id, seqs[:2], other.id, [same_key, same_key]))["error"] == "validation_error"
        assert await _version(chat.id) == v and await _version(other.id) == 0
        whole = await caller.delete(chat.id, seqs[:100])
        assert whole["changed"] is True and whole["seqs"] == seqs[:100] and whole["version"] == v + 1
    finally:
        await caller.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_message_takes_at_most_twenty_different_reactions(transport, make_user):
    """Once a message has 20 different emoji, a 21st is ``too_many_reactions`` for anyone, while
    adding one of the 20 still works."""
    owner, *reactors = await _users(make_user, 8)
    group = await _group(owner, reactors)
    sent = await _send(owner, group.id, "popular")
    for i, emoji in enumerate(TWENTY_EMOJI):  # 3 different each at most: 7 people
        await db(services.set_reaction)(
            user_id=reactors[i // 3].id, chat_id=group.id, seq=sent.seq, emoji=emoji, add=True
        )
    caller = await _caller(transport, owner)
    try:
        v = await _version(group.id)
        assert (await caller.react(group.id, sent.seq, "🍕"))["error"] == "too_many_reactions"
        assert await _version(group.id) == v
        assert await db(Reaction.objects.filter(message_id=sent.id).count)() == 20
        joined = await caller.react(group.id, sent.seq, "🚀")
        assert joined["changed"] is True and joined["version"] == v + 1
        assert {r["emoji"]: r["count"] for r in joined["reactions"]}["🚀"] == 2
    finally:
        await caller.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_chat_holds_at_most_a_hundred_pins(transport, make_user):
    """With 100 pinned messages a 101st pin is ``too_many_pins`` and changes nothing; after an
    unpin it succeeds. Re-pinning a pinned message is still a no-op, not a refusal."""
    alice, bob = await _users(make_user, 2)
    chat = (await db(services.open_direct_chat)(user_id=alice.id, other_user_id=bob.id)).chat
    seqs = [(await _send(alice, chat.id, f"{i}")).seq for i in range(101)]

    @db
    def pin_hundred():
        for seq in seqs[:100]:
            assert services.set_pin(user_id=bob.id, chat_id=chat.id, seq=seq, pinned=True).changed

    await pin_hundred()
    caller = await _caller(transport, alice)
    try:
        v = await _version(chat.id)
        assert (await caller.pin(chat.id, seqs[100]))["error"] == "too_many_pins"
        assert (await caller.pin(chat.id, seqs[0]))["changed"] is False
        assert await _version(chat.id) == v
        assert len((await db(Chat.objects.get)(id=chat.id)).pinned_seqs) == 100
        assert (await caller.pin(chat.id, seqs[0], pinned=False))["changed"] is True
        pinned = await caller.pin(chat.id, seqs[100])
        assert pinned["changed"] is True and pinned["pinned_seqs"][0] == seqs[100] and len(pinned["pinned_seqs"]) == 100
    finally:
        await caller.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_forwarding_a_deleted_message_is_gone_and_stores_nothing(transport, make_user):
    """A forward naming a deleted message is ``gone`` whole (its live companions are not forwarded
    either); the same keys then work for live messages only."""
    alice, bob, carol = await _users(make_user, 3)
    source = (await db(services.open_direct_chat)(user_id=alice.id, other_user_id=bob.id)).chat
    target = (await db(services.open_direct_chat)(user_id=alice.id, other_user_id=carol.id)).chat
    live, doomed = await _send(bob, source.id, "live"), await _send(bob, source.id, "doomed")
    await db(services.delete_messages)(user_id=bob.id, chat_id=source.id, seqs=[doomed.seq])
    caller = await _caller(transport, alice)
    keys = [_key(), _key()]
    try:
        assert (await caller.forward(source.id, [live.seq, doomed.seq], target.id, keys))["error"] == "gone"
        assert await _version(target.id) == 0
        assert await db(Message.objects.filter(chat_id=target.id).count)() == 0
        done = await caller.forward(source.id, [live.seq], target.id, keys[:1])
        assert done["duplicate"] is False and [m["text"] for m in done["messages"]] == ["live"]
    finally:
        await caller.close()
