"""``manage.py seed_data``: the demo stays small and idempotent and shows messages that changed;
load mode builds data the services accept, versions included.

Load mode is the development tool ``devtools.loadgen`` (COPY into PostgreSQL); without the
``devtools`` app, as in the production image, its options are refused and the demo still works.
"""

from __future__ import annotations

import io
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import Count, F, Max, Min, Q

from chats import selectors, services
from chats.management.commands.seed_data import LOAD_OPTIONS
from chats.models import Chat, Membership, Message, MessageEdit, Reaction
from devtools.loadgen import LOAD_PASSWORD, LoadPlan, username
from devtools.loadgen.plan import watermarks

pytestmark = pytest.mark.django_db

User = get_user_model()
SMALL = ["--users", "50", "--chats", "5", "--messages", "500"]


@pytest.fixture(autouse=True)
def _no_send_rate_limit(settings, tmp_path):
    settings.SEND_RATE_LIMIT = 0
    settings.STORAGES = {  # the demo photo goes to this test's own directory
        **settings.STORAGES,
        "attachments": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": tmp_path}},
    }


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_data", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        "users": User.objects.count(),
        "chats": Chat.objects.count(),
        "memberships": Membership.objects.count(),
        "messages": Message.objects.count(),
    }


def changes() -> dict[str, object]:
    """What the message changes left: every version, the edit history, reactions and pins."""
    return {
        "chats": sorted(Chat.objects.values_list("id", "version", "pinned_seqs")),
        "messages": sorted(Message.objects.values_list("id", "version", "text", "edited_at", "reactions")),
        "edits": sorted(MessageEdit.objects.values_list("message_id", "text", "edited_at")),
        "reactions": sorted(Reaction.objects.values_list("message_id", "user_id", "emoji")),
    }


def assert_invariants() -> None:
    """What the services maintain, checked over every chat in the database."""
    for chat in Chat.objects.annotate(
        n=Count("messages"), low=Min("messages__seq"), high=Max("messages__seq"), newest=Max("messages__created_at")
    ):
        assert chat.n == chat.last_seq, chat  # with unique (chat, seq): 1..last_seq, no gaps
        # Every change stamps the changed messages with the chat's new version; each send is one.
        assert chat.version == (chat.messages.aggregate(v=Max("version"))["v"] or 0), chat
        assert chat.version >= chat.last_seq, chat
        assert chat.messages.filter(version__gt=chat.version).count() == 0, chat
        if chat.last_seq:
            assert (chat.low, chat.high) == (1, chat.last_seq), chat
            assert chat.last_activity_at == chat.newest, chat
        marks = list(chat.memberships.values_list("last_read_seq", flat=True))
        assert marks and all(0 <= mark <= chat.last_seq for mark in marks), chat
        assert chat.read_all_seq == min(marks), chat
        roles = Counter(chat.memberships.values_list("role", flat=True))
        if chat.kind == Chat.Kind.DIRECT:
            member_ids = list(chat.memberships.values_list("user_id", flat=True))
            assert len(member_ids) == 2 and chat.direct_key == Chat.make_direct_key(*member_ids), chat
        else:
            assert chat.direct_key is None and roles[Membership.Role.OWNER] == 1, chat
            assert chat.memberships.get(role=Membership.Role.OWNER).user_id == chat.created_by_id
        # Sending marks read: nobody's watermark is below their own newest message.
        for membership in chat.memberships.all():
            own = chat.messages.filter(sender_id=membership.user_id).aggregate(m=Max("seq"))["m"] or 0
            assert membership.last_read_seq >= own, membership


def test_demo_is_idempotent():
    """Running the demo seed twice creates nothing the second time."""
    output = seed()
    first = counts()
    assert "password=messenger-demo-1" in output
    # Six scripted messages plus whatever system messages the services add (group created, ...).
    assert {**first, "messages": None} == {"users": 4, "chats": 2, "memberships": 6, "messages": None}
    assert first["messages"] >= 6
    changed = changes()
    seed()
    assert counts() == first
    assert changes() == changed  # no edit, reaction, pin or version moved either
    assert_invariants()


def test_demo_has_messages_that_changed():
    """The demo shows each change the services make: an edit with its history, replies,
    reactions whose cached counts match their rows, a forward, a pin; versions add up."""
    seed()
    edited = Message.objects.filter(edited_at__isnull=False)
    assert edited.count() == 2
    for message in edited:
        history = list(MessageEdit.objects.filter(message=message).values_list("text", flat=True))
        assert len(history) == 1 and history[0] != message.text
    replies = Message.objects.filter(reply_to_seq__isnull=False)
    assert replies.count() == 2
    for reply in replies:
        assert Message.objects.filter(chat_id=reply.chat_id, seq=reply.reply_to_seq, kind="text").exists()
    reacted = Message.objects.exclude(reactions=[])
    assert reacted.count() == 3
    for message in reacted:
        rows = Counter(Reaction.objects.filter(message=message).values_list("emoji", flat=True))
        assert dict(message.reactions) == rows
    group = Chat.objects.get(title="Demo group")
    assert group.messages.get(client_id="seed-group-1").reactions == [["👍", 2], ["🎉", 1]]
    forward = Message.objects.get(client_id="seed-forward-1")
    origin = Message.objects.get(client_id="seed-direct-2")
    assert (forward.chat_id, forward.forward_chat_id, forward.forward_seq) == (group.id, origin.chat_id, origin.seq)
    assert forward.forward_sender_username == "bob" and forward.text == origin.text
    assert group.pinned_seqs == [group.messages.get(client_id="seed-group-1").seq]
    assert group.messages.filter(kind="system", text__startswith="alice pinned").count() == 1
    for chat in Chat.objects.all():
        assert chat.version == chat.messages.aggregate(v=Max("version"))["v"] > 0
    assert_invariants()


def test_load_mode_builds_the_planned_data_and_is_idempotent():
    """Load mode creates N users, M chats, K messages with every invariant holding; a rerun adds nothing."""
    output = seed(*SMALL)
    loaded = counts()
    plan = LoadPlan.build(users=50, chats=5, messages=500)
    assert loaded == {"users": 50, "chats": 5, "memberships": plan.group_size + 2 * plan.directs, "messages": 500}
    assert "Created 50 users, 5 chats" in output
    assert_invariants()

    big = Chat.objects.get(title="Load group 1")
    assert big.kind == Chat.Kind.GROUP and big.last_seq == plan.big_chat_messages == 50
    assert Chat.objects.filter(kind=Chat.Kind.DIRECT).count() == 4
    assert list(big.messages.order_by("seq").values_list("client_id", flat=True)[:2]) == ["load-1-1", "load-1-2"]
    user = User.objects.get(username=username(0))
    assert user.username == "load_0000001" and user.check_password(LOAD_PASSWORD)
    assert User.objects.filter(password=user.password).count() == 50  # one hash for all

    output = seed(*SMALL)
    assert counts() == loaded
    assert "Created 0 users, 0 chats, 0 memberships, 0 messages" in output


def test_loaded_rows_are_what_sends_alone_leave():
    """Loaded messages have version = seq and each chat version = last_seq, as if each had been
    sent; none is edited, deleted, a reply or a forward; no reactions, edit history or pins."""
    seed(*SMALL)
    assert Message.objects.exclude(version=F("seq")).count() == 0
    assert Chat.objects.exclude(version=F("last_seq")).count() == 0
    assert Chat.objects.exclude(pinned_seqs=[]).count() == 0
    assert Message.objects.exclude(reactions=[]).count() == 0
    assert (
        Message.objects.filter(
            Q(edited_at__isnull=False)
            | Q(deleted_at__isnull=False)
            | Q(reply_to_seq__isnull=False)
            | Q(forward_seq__isnull=False)
            | Q(forward_chat__isnull=False)
            | Q(forward_sender_username__isnull=False)
        ).count()
        == 0
    )
    assert (MessageEdit.objects.count(), Reaction.objects.count()) == (0, 0)


def test_load_mode_resumes_missing_chats_and_keeps_other_data():
    """A chat lost mid-run (or never written) is recreated whole; demo data and existing chats stay as they are."""
    seed()
    seed(*SMALL)
    before = counts()
    lost = Chat.objects.filter(kind=Chat.Kind.DIRECT, direct_key__isnull=False).order_by("-id").first()
    lost_key, lost_seq = lost.direct_key, lost.last_seq
    lost.delete()  # cascades to its memberships and messages

    output = seed(*SMALL)

    assert "Created 0 users, 1 chats" in output
    assert counts() == before
    again = Chat.objects.get(direct_key=lost_key)
    assert again.last_seq == lost_seq
    assert_invariants()


def test_loaded_chats_work_with_the_services():
    """A send into a loaded chat gets seq last_seq + 1; reads and direct-chat lookups see the loaded rows."""
    seed(*SMALL)
    big = Chat.objects.get(title="Load group 1")
    sender = big.memberships.order_by("last_read_seq").first().user
    last_seq = big.last_seq

    result = services.send_message(user_id=sender.id, chat_id=big.id, client_id="after-load-1", text="Still works")

    assert result.duplicate is False and result.message.seq == last_seq + 1
    big.refresh_from_db()
    assert big.last_seq == last_seq + 1
    for membership in big.memberships.all():
        services.mark_read(user_id=membership.user_id, chat_id=big.id, up_to_seq=big.last_seq)
    big.refresh_from_db()
    assert big.read_all_seq == big.last_seq
    # Changes to loaded messages take the next version; /changes after the loaded version finds them.
    services.edit_message(user_id=sender.id, chat_id=big.id, seq=big.last_seq, text="Edited")
    reacted = services.set_reaction(user_id=sender.id, chat_id=big.id, seq=1, emoji="👍", add=True)
    assert reacted.version == last_seq + 3 and reacted.reactions == [["👍", 1]]
    big.refresh_from_db()
    assert big.version == last_seq + 3
    changed = selectors.changes_after(chat=big, reader=sender.id, after_version=last_seq, limit=10)
    assert [m.seq for m in changed.results] == [big.last_seq, 1] and changed.version == big.version
    # A loaded client_id repeated by its sender is a duplicate, not a new message.
    first = big.messages.get(seq=1)
    repeat = services.send_message(user_id=first.sender_id, chat_id=big.id, client_id="load-1-1", text="again")
    assert repeat.duplicate is True and repeat.message.id == first.id

    direct = Chat.objects.filter(kind=Chat.Kind.DIRECT).first()
    a, b = direct.memberships.values_list("user_id", flat=True)
    opened = services.open_direct_chat(user_id=a, other_user_id=b)
    assert opened.chat.id == direct.id and opened.created is False
    sent = services.send_message(user_id=b, chat_id=direct.id, client_id="after-load-2", text="Hi")
    assert sent.message.seq == direct.last_seq + 1
    assert_invariants()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "10"], "needs --chats, --messages"),
        (["--users", "1", "--chats", "1", "--messages", "1"], "--users must be at least 2"),
        (["--users", "3", "--chats", "10", "--messages", "1", "--groups", "0"], "at most 3 distinct direct chats"),
        (["--users", "10", "--chats", "2", "--messages", "5", "--big-chat-messages", "6"], "--big-chat-messages"),
    ],
)
def test_load_mode_rejects_impossible_numbers(args, message):
    """Impossible numbers fail with a CommandError before anything is written."""
    with pytest.raises(CommandError, match=message):
        seed(*args)
    assert counts()["users"] == 0


@pytest.fixture
def without_devtools(settings):
    """The production image's app registry: ``devtools`` is not installed."""
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "devtools"]


@pytest.mark.parametrize("option", LOAD_OPTIONS)
def test_without_devtools_the_bulk_options_say_the_loader_is_a_development_tool(without_devtools, option):
    """Any one bulk option, even alone, ends in a CommandError naming the development tool; nothing is written."""
    with pytest.raises(CommandError, match=r"bulk loader .* is a development tool, devtools\.loadgen"):
        seed("--" + option.replace("_", "-"), "10")
    assert counts()["users"] == 0


def test_without_devtools_the_demo_still_works(without_devtools):
    output = seed()
    assert "password=messenger-demo-1" in output and counts()["users"] == 4


def test_plan_layout_is_consistent():
    """Message counts add up, direct pairs never repeat, group members are distinct, watermarks stay in range."""
    plan = LoadPlan.build(users=7, chats=20, messages=1001, group_size=4, big_chat_messages=300)
    assert plan.groups == 2 and plan.directs == 18
    assert sum(plan.message_count(c) for c in range(plan.chats)) == 1001
    assert plan.message_count(0) == 300
    pairs = [frozenset(plan.member_indices(c)) for c in range(plan.groups, plan.chats)]
    assert all(len(pair) == 2 for pair in pairs) and len(set(pairs)) == len(pairs)
    for c in range(plan.groups):
        assert len(set(plan.member_indices(c))) == 4 and plan.owner_index(c) == plan.member_indices(c)[0]
    for count in (0, 1, 5, 300):
        assert all(0 <= mark <= count for mark in watermarks(3, count, 4))


def test_demo_has_a_photo_message_stored_once():
    """The demo's photo is a real upload (sniffed, thumbnailed) sent with a caption, once."""
    from attachments.models import Blob, Upload
    from chats.models import MessageAttachment

    seed()
    seed()
    photo = Message.objects.get(client_id="seed-photo-1")
    assert photo.text == "A photo from the trip"
    [entry] = photo.attachments
    assert (entry["kind"], entry["mime"], entry["width"], entry["height"], entry["thumb"]) == (
        "image", "image/png", 640, 360, True,
    )  # fmt: skip
    assert Upload.objects.count() == 1 and Blob.objects.get().refs == 1
    assert MessageAttachment.objects.filter(message=photo).count() == 1
