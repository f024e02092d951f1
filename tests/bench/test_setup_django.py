"""``bench.setup_django``: the bulk-filled bench chats are what sends would have left, versions included."""

from __future__ import annotations

import pytest
from django.db.models import F, Max

from chats import selectors, services
from chats.models import Chat, Message

pytestmark = pytest.mark.django_db


def test_filled_messages_take_the_next_versions_as_sends_would(make_user, settings):
    """fill_messages continues the chat's change counter: version = the chat's version before
    plus the message's place, the chat's version its newest message's; a rerun adds nothing, and
    a change afterwards is found by /changes after the filled version."""
    from bench.setup_django import fill_messages

    settings.MESSAGE_CHANGE_RATE_LIMIT = 0
    owner, member = make_user(), make_user()
    chat = services.create_group(user_id=owner.id, title="bench-history", member_ids=[member.id])
    before = Chat.objects.get(id=chat.id)
    assert fill_messages(chat=chat, sender_id=owner.id, upto_seq=40) == 40
    assert fill_messages(chat=chat, sender_id=owner.id, upto_seq=40) == 40  # once
    chat.refresh_from_db()
    filled = Message.objects.filter(chat=chat, seq__gt=before.last_seq)
    assert filled.count() == 40 - before.last_seq
    offset = before.version - before.last_seq
    assert filled.exclude(version=F("seq") + offset).count() == 0
    assert (chat.last_seq, chat.version) == (40, offset + 40)
    assert chat.version == chat.messages.aggregate(v=Max("version"))["v"]
    assert filled.exclude(reactions=[]).count() == 0 and chat.pinned_seqs == []

    reacted = services.set_reaction(user_id=member.id, chat_id=chat.id, seq=20, emoji="👍", add=True)
    assert reacted.version == chat.version + 1
    changes = selectors.changes_after(chat=chat, reader=member.id, after_version=chat.version, limit=10)
    assert [m.seq for m in changes.results] == [20]
