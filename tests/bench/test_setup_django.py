"""``bench.setup_django``: the bulk-filled bench chats are what sends would have left, versions included."""

from __future__ import annotations

import pytest
from django.db.models import F, Max

from chats import selectors, services
from chats.models import Chat, Message, Reaction

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


def test_history_changes_are_made_once_through_the_services_and_found_by_changes(make_user, monkeypatch):
    """S8's fixture: reactions, then edits of some of the reacted messages, each one version;
    the jsonb counts are the rows; /changes after the version before them gives exactly the
    reacted messages once each; an interrupted setup goes on from its last whole batch."""
    from bench.setup_django import ensure_history_changes, fill_messages

    owner, member = make_user(), make_user()
    chat = services.create_group(user_id=owner.id, title="bench-history", member_ids=[member.id])
    fill_messages(chat=chat, sender_id=owner.id, upto_seq=60, analyze=False)
    make = {
        "chat": chat,
        "reactor_id": member.id,
        "editor_id": owner.id,
        "reactions": 20,
        "edits": 5,
        "stride": 2,
        "batch_groups": 2,
    }

    real_edit, calls = services.edit_message, []

    def edit_then_fail(**kwargs):
        calls.append(kwargs["seq"])
        if len(calls) == 3:  # in the second batch (2 groups of 4 reactions and 1 edit each)
            raise RuntimeError("interrupted")
        return real_edit(**kwargs)

    monkeypatch.setattr(services, "edit_message", edit_then_fail)
    with pytest.raises(RuntimeError):
        ensure_history_changes(**make)
    assert Reaction.objects.filter(message__chat=chat).count() == 8  # the first batch only
    monkeypatch.setattr(services, "edit_message", real_edit)

    out = ensure_history_changes(**make)
    assert "error" not in out
    chat.refresh_from_db()
    assert out["version"] == chat.version and out["version"] - out["version_before"] == 25
    assert ensure_history_changes(**make) == out  # once
    assert Reaction.objects.filter(message__chat=chat, user=member, emoji="👍").count() == 20
    changed = Message.objects.filter(chat=chat, seq__in=out["seqs"])
    assert all(m.reactions == [["👍", 1]] for m in changed)
    assert sorted(changed.filter(edited_at__isnull=False).values_list("seq", flat=True)) == out["edited_seqs"]
    assert len(out["edited_seqs"]) == 5

    page = selectors.changes_after(chat=chat, reader=member.id, after_version=out["version_before"], limit=200)
    assert sorted(m.seq for m in page.results) == out["seqs"] and len(page.results) == 20
    assert page.version == chat.version and not page.has_more
    versions = [m.version for m in page.results]
    assert versions == sorted(set(versions)) and versions[-1] == chat.version
