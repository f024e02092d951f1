"""The admin as an operator's console: every list page costs the same number of queries at any
size, chats show member and message counts, messages filter by chat id, edited and deleted and
show their version, pin, reactions, reply and forward origin, with the edit history and reactions
inline and read-only; deactivation closes sockets; every add/change/delete form goes through the
services or is refused as read-only, never a 500."""

from __future__ import annotations

import itertools
import uuid
from html.parser import HTMLParser

import pytest
from channels.db import database_sync_to_async
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework_simplejwt.token_blacklist.models import (
    BlacklistedToken,
    OutstandingToken,
)
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import services as account_services
from accounts.models import ExternalIdentity, User
from attachments.models import Blob, Upload
from chats import services
from chats.models import Chat, Membership, Message, MessageEdit, Reaction, Subscription
from feeds.models import LargeChannel
from ops import admin_tools
from outbox import record
from outbox.models import OutboxEvent
from tests.conftest import receive_until, ws_connect

_seq = itertools.count(1)


def populate(n: int) -> None:
    """n (>= 2) more of every kind of row an admin list shows, each with its foreign keys filled."""
    from django.db import transaction

    with transaction.atomic():
        ids = [record("ops.sample", {"n": i}, key=f"k:{i}") for i in range(n)]
    OutboxEvent.objects.filter(pk=ids[0]).update(dead_at=OutboxEvent.objects.get(pk=ids[0]).created_at)
    users = User.objects.bulk_create(
        [
            User(username=f"ops{i}_{uuid.uuid4().hex[:6]}", email=f"ops{next(_seq)}_{uuid.uuid4().hex[:6]}@example.com")
            for i in range(n)
        ]
    )
    for user in users:
        token = RefreshToken.for_user(user)  # an OutstandingToken row
        BlacklistedToken.objects.create(token=OutstandingToken.objects.get(jti=token["jti"]))
    ExternalIdentity.objects.bulk_create(
        [
            ExternalIdentity(
                user=user, issuer="https://id.example.com", subject=uuid.uuid4().hex, last_login_at=user.date_joined
            )
            for user in users
        ]
    )
    Group.objects.bulk_create([Group(name=f"group-{uuid.uuid4().hex[:8]}") for _ in range(n)])
    for owner, other in zip(users, users[1:] + users[:1], strict=True):
        chat = Chat.objects.create(
            kind=Chat.Kind.GROUP,
            title=f"chat of {owner.username}",
            created_by=owner,
            last_seq=2,
            version=2,
            pinned_seqs=[1],
        )
        Membership.objects.bulk_create(
            [Membership(chat=chat, user=owner, role="owner"), Membership(chat=chat, user=other)]
        )
        # Rows as the services leave them: seq 1 pinned with a reaction, seq 2 an edited reply.
        Message.objects.bulk_create(
            [
                Message(chat=chat, seq=1, sender=owner, text="text 1", client_id=uuid.uuid4().hex, version=1,
                        reactions=[["👍", 1]]),
                Message(chat=chat, seq=2, sender=other, text="text 2", client_id=uuid.uuid4().hex, version=2,
                        reply_to_seq=1, edited_at=chat.created_at),
            ]
        )  # fmt: skip


@pytest.fixture
def operator(make_user) -> Client:
    user = make_user(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client


def changelist_urls() -> list[str]:
    return [
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist") for model in admin.site._registry
    ]


def queries_for(client: Client, url: str) -> int:
    client.get(url)  # warm caches (content types, session) so only the page's own queries count
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(captured)


@pytest.mark.django_db
def test_every_changelist_costs_the_same_queries_at_n_and_3n_rows(operator):
    """No N+1 on any list page: the query count does not grow with the rows shown."""
    urls = changelist_urls()
    assert {"/admin/accounts/user/", "/admin/chats/chat/", "/admin/chats/message/"} <= set(urls)
    populate(5)
    small = {url: queries_for(operator, url) for url in urls}
    populate(10)
    large = {url: queries_for(operator, url) for url in urls}
    assert large == small


@pytest.mark.django_db
def test_filtered_and_searched_changelists_cost_the_same_queries_at_n_and_3n_rows(operator):
    populate(5)
    chat = Chat.objects.order_by("id").first()
    urls = [
        f"/admin/chats/message/?chat_id={chat.id}",
        "/admin/chats/message/?q=text",
        "/admin/chats/message/?kind__exact=text",
        "/admin/chats/message/?edited=yes",
        "/admin/chats/message/?deleted=no&edited=no",
        f"/admin/chats/message/?deleted=yes&chat_id={chat.id}",
        "/admin/chats/chat/?kind__exact=group&q=chat",
        "/admin/accounts/user/?q=ops&is_active__exact=1",
    ]
    small = {url: queries_for(operator, url) for url in urls}
    populate(10)
    assert {url: queries_for(operator, url) for url in urls} == small


@pytest.mark.django_db
def test_chat_change_page_costs_the_same_queries_at_n_and_3n_members(operator, make_user):
    """The members inline loads its users in the same query, however many members there are."""
    owner = make_user()
    chat = Chat.objects.create(kind=Chat.Kind.GROUP, title="big", created_by=owner)
    Membership.objects.create(chat=chat, user=owner, role="owner")
    url = reverse("admin:chats_chat_change", args=[chat.id])

    def add_members(n):
        Membership.objects.bulk_create([Membership(chat=chat, user=make_user()) for _ in range(n)])

    add_members(5)
    small = queries_for(operator, url)
    add_members(10)
    assert queries_for(operator, url) == small
    page = operator.get(url).content.decode()
    assert page.count('<tr class="form-row') >= 16 or page.count("dynamic-memberships") >= 16


@pytest.mark.django_db
def test_chat_list_shows_member_and_message_counts_without_counting_messages(operator):
    """Messages per chat is last_seq (gap-free, never deleted): no COUNT over the messages table."""
    populate(3)
    chat = Chat.objects.order_by("id").first()
    Chat.objects.filter(id=chat.id).update(last_seq=1234)
    with CaptureQueriesContext(connection) as captured:
        page = operator.get("/admin/chats/chat/").content.decode()
    assert f'/admin/chats/message/?chat_id={chat.id}">1234</a>' in page
    assert not any("chats_message" in query["sql"] for query in captured.captured_queries)
    assert '<td class="field-members_total">2</td>' in page


@pytest.mark.django_db
def test_messages_filter_by_typed_chat_id_and_search(operator):
    populate(3)
    chat = Chat.objects.order_by("id").first()
    page = operator.get(f"/admin/chats/message/?chat_id={chat.id}").content.decode()
    ids = set(Message.objects.filter(chat=chat).values_list("id", flat=True))
    others = set(Message.objects.exclude(chat=chat).values_list("id", flat=True))
    assert all(f"/admin/chats/message/{i}/change/" in page for i in ids)
    assert not any(f"/admin/chats/message/{i}/change/" in page for i in others)
    assert 'name="chat_id"' in page  # the input box
    assert "0 messages" in operator.get("/admin/chats/message/?chat_id=abc").content.decode()
    message = Message.objects.exclude(client_id=None).first()
    assert (
        f"/admin/chats/message/{message.id}/change/"
        in operator.get(f"/admin/chats/message/?q={message.client_id}").content.decode()
    )


@pytest.mark.django_db
def test_messages_are_read_only_in_the_admin(operator):
    """Messages carry seq, dedup and events: the admin shows them and never edits or deletes them."""
    populate(2)
    message = Message.objects.first()
    url = reverse("admin:chats_message_change", args=[message.id])
    assert operator.get(url).status_code == 200
    operator.post(url, {"text": "rewritten"})
    message.refresh_from_db()
    assert message.text != "rewritten"
    assert operator.get(reverse("admin:chats_message_delete", args=[message.id])).status_code == 403


# --- messages that change: version, edits, tombstones, reactions, pins, replies, forwards ---------


@pytest.fixture
def changed_chat(make_user, settings):
    """A group whose messages went through every change the services make, and its members."""
    settings.SEND_RATE_LIMIT = 0
    settings.MESSAGE_CHANGE_RATE_LIMIT = 0
    owner, member = make_user(), make_user()
    group = services.create_group(user_id=owner.id, title="changes", member_ids=[member.id])
    first = services.send_message(user_id=owner.id, chat_id=group.id, client_id="c-1", text="first").message
    reply = services.send_message(
        user_id=member.id, chat_id=group.id, client_id="c-2", text="a reply", reply_to_seq=first.seq
    ).message
    gone = services.send_message(user_id=member.id, chat_id=group.id, client_id="c-3", text="oops").message
    services.edit_message(user_id=owner.id, chat_id=group.id, seq=first.seq, text="first, edited")
    services.set_reaction(user_id=member.id, chat_id=group.id, seq=first.seq, emoji="👍", add=True)
    services.set_pin(user_id=owner.id, chat_id=group.id, seq=first.seq, pinned=True)
    services.delete_messages(user_id=member.id, chat_id=group.id, seqs=[gone.seq])
    other = services.open_direct_chat(user_id=owner.id, other_user_id=member.id).chat
    forward = services.forward_messages(
        user_id=owner.id, from_chat_id=group.id, seqs=[reply.seq], to_chat_id=other.id, client_ids=["c-f"]
    ).messages[0]
    return {
        "group": group,
        "owner": owner,
        "member": member,
        "first": Message.objects.get(chat=group, seq=first.seq),
        "reply": Message.objects.get(chat=group, seq=reply.seq),
        "gone": Message.objects.get(chat=group, seq=gone.seq),
        "forward": Message.objects.get(chat=other, seq=forward.seq),
    }


def _row(page: str, message: Message) -> str:
    """The changelist row of ``message``."""
    start = page.index(f"/admin/chats/message/{message.id}/change/")
    return page[start : page.index("</tr>", start)]


@pytest.mark.django_db
def test_message_list_shows_version_edited_deleted_pinned_and_reactions(operator, changed_chat):
    """Each row carries its version, whether it was edited, deleted (a tombstone) or pinned, and
    its reaction total from the cache; the filters pick edited and deleted messages."""
    first, reply, gone = changed_chat["first"], changed_chat["reply"], changed_chat["gone"]
    page = operator.get(f"/admin/chats/message/?chat_id={changed_chat['group'].id}").content.decode()
    row = _row(page, first)
    assert f'<td class="field-version">{first.version}</td>' in row
    assert 'field-edited"><img src="/static/admin/img/icon-yes.svg"' in row
    assert 'field-deleted"><img src="/static/admin/img/icon-no.svg"' in row
    assert 'field-pinned"><img src="/static/admin/img/icon-yes.svg"' in row
    assert '<td class="field-reactions_total">1</td>' in row
    tombstone = _row(page, gone)
    assert 'field-deleted"><img src="/static/admin/img/icon-yes.svg"' in tombstone
    assert "(deleted)" in tombstone
    assert 'field-pinned"><img src="/static/admin/img/icon-no.svg"' in _row(page, reply)

    def listed(query: str) -> set[int]:
        page = operator.get(f"/admin/chats/message/?chat_id={changed_chat['group'].id}&{query}").content.decode()
        return {m.id for m in (first, reply, gone) if f"/admin/chats/message/{m.id}/change/" in page}

    assert listed("edited=yes") == {first.id}
    assert listed("deleted=yes") == {gone.id}
    assert listed("deleted=no&edited=no") == {reply.id}


@pytest.mark.django_db
def test_message_page_shows_the_changes_reply_and_forward_origin(operator, changed_chat):
    """The detail page shows version, edit and delete times, the pin, cached reaction counts,
    the answered seq and where a forward came from (origin chat, seq, sender's name)."""
    first, reply, forward = changed_chat["first"], changed_chat["reply"], changed_chat["forward"]
    group, member = changed_chat["group"], changed_chat["member"]
    page = operator.get(reverse("admin:chats_message_change", args=[first.id])).content.decode()
    assert "first, edited" in page and "👍 1" in page
    assert f'<div class="readonly">{first.version}</div>' in page
    assert "field-pinned" in page and "icon-yes.svg" in page
    page = operator.get(reverse("admin:chats_message_change", args=[reply.id])).content.decode()
    assert f'<div class="readonly">{first.seq}</div>' in page  # reply_to_seq
    page = operator.get(reverse("admin:chats_message_change", args=[forward.id])).content.decode()
    assert f'/admin/chats/message/?chat_id={group.id}">changes</a>, #{reply.seq} by {member.username}' in page


@pytest.mark.django_db
def test_message_page_shows_edit_history_and_reactions_read_only_at_a_fixed_query_cost(
    operator, make_user, changed_chat
):
    """The edit history and the reactions are inline, read-only (no add, change or delete: those
    are the services'), and cost the same queries at n and 3n rows."""
    first, group, owner = changed_chat["first"], changed_chat["group"], changed_chat["owner"]
    url = reverse("admin:chats_message_change", args=[first.id])
    step = itertools.count()

    def change(n: int) -> None:
        for _ in range(n):
            services.edit_message(user_id=owner.id, chat_id=group.id, seq=first.seq, text=f"edit {next(step)}")
            reactor = make_user()
            services.add_member(actor_id=owner.id, chat_id=group.id, user_id=reactor.id)
            services.set_reaction(user_id=reactor.id, chat_id=group.id, seq=first.seq, emoji="🎉", add=True)

    change(3)
    small = queries_for(operator, url)
    change(6)
    assert queries_for(operator, url) == small
    page = operator.get(url).content.decode()
    edits, reactions = MessageEdit.objects.filter(message=first), Reaction.objects.filter(message=first)
    assert (edits.count(), reactions.count()) == (10, 10)
    assert "Edit history" in page and "first, edited" in page  # the oldest earlier text
    assert page.count("🎉") >= 9
    assert not any(
        f'name="{prefix}-0-{name}"' in page
        for prefix in ("edits", "reaction_rows")
        for name in ("text", "emoji", "DELETE")
    )
    for prefix in ("edits", "reaction_rows"):  # no room for an added row
        assert f'name="{prefix}-MAX_NUM_FORMS" value="0"' in page
    response = operator.post(url, {**submitted(operator.get(url).content, Message), "edits-0-DELETE": "on"})
    assert response.status_code == 403
    assert (edits.count(), reactions.count()) == (10, 10)


@pytest.mark.django_db
def test_chat_page_shows_version_and_pins_read_only(operator, changed_chat):
    """The change counter and the pins are the services'; the chat page shows them, never as inputs."""
    group = Chat.objects.get(id=changed_chat["group"].id)
    assert group.pinned_seqs == [changed_chat["first"].seq] and group.version > 0
    page = operator.get(reverse("admin:chats_chat_change", args=[group.id])).content.decode()
    assert f'<div class="readonly">{group.version}</div>' in page
    assert f'<div class="readonly">{changed_chat["first"].seq}</div>' in page
    assert 'name="version"' not in page and 'name="pinned_seqs"' not in page
    listing = operator.get("/admin/chats/chat/").content.decode()
    assert f'<td class="field-version">{group.version}</td>' in listing


@pytest.mark.django_db
def test_big_unfiltered_tables_are_counted_from_the_planner_estimate(monkeypatch):
    """An unfiltered list of a big table takes pg_class.reltuples, not COUNT(*); filtered lists
    are counted exactly."""
    populate(4)
    monkeypatch.setattr(admin_tools, "ESTIMATE_ABOVE", 1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE chats_message")
    with CaptureQueriesContext(connection) as captured:
        count = admin_tools.EstimatedCountPaginator(Message.objects.order_by("-id"), 100).count
    counted = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert count == Message.objects.count()
    assert counted == []
    with CaptureQueriesContext(connection) as captured:
        assert admin_tools.EstimatedCountPaginator(Message.objects.filter(kind="text").order_by("-id"), 100).count == 8
    assert any("COUNT(" in q["sql"].upper() for q in captured.captured_queries)


@pytest.mark.django_db(transaction=True)
async def test_deactivate_action_closes_the_users_sockets(make_user):
    """The admin action goes through accounts.services.set_active: the user's sockets get
    session_revoked and close with 4401."""
    target = await database_sync_to_async(make_user)()
    operator_user = await database_sync_to_async(make_user)(is_staff=True, is_superuser=True)
    socket = await ws_connect(target)

    def run_action():
        client = Client()
        client.force_login(operator_user)
        return client.post(
            "/admin/accounts/user/", {"action": "deactivate_users", "_selected_action": [target.id]}, follow=True
        )

    response = await database_sync_to_async(run_action)()
    assert response.status_code == 200
    assert "Deactivated 1 user(s)." in response.content.decode()
    frame = await socket.receive_json_from(timeout=5)
    assert frame["type"] == "error" and frame["code"] == "session_revoked"
    closed = await socket.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4401}
    await socket.disconnect()
    assert not (await database_sync_to_async(User.objects.get)(id=target.id)).is_active


# --- every change form: through the services, or refused as read-only ----------------------------


class _FormFields(HTMLParser):
    """What a browser would submit for the form ``form_id``: inputs, checked boxes, selected options, text areas."""

    def __init__(self, form_id: str):
        super().__init__()
        self.form_id, self.inside, self.data = form_id, False, []
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("id") == self.form_id
        if not self.inside or ("name" not in attrs and tag != "option"):
            return
        if tag == "input" and attrs.get("type") not in ("submit", "button", "file"):
            if attrs.get("type") in ("checkbox", "radio") and "checked" not in attrs:
                return
            self.data.append((attrs["name"], attrs.get("value", "on" if attrs.get("type") == "checkbox" else "")))
        elif tag == "select":
            self._select = attrs["name"]
        elif tag == "option" and self._select and "selected" in attrs:
            self.data.append((self._select, attrs.get("value", "")))
        elif tag == "textarea":
            self._textarea = attrs["name"]
            self.data.append((self._textarea, ""))

    def handle_data(self, data):
        if self._textarea and self.data and self.data[-1][0] == self._textarea:
            self.data[-1] = (self._textarea, self.data[-1][1] + data)

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            if self._textarea and self.data and self.data[-1][0] == self._textarea:
                # A browser drops the newline that starts a text area's content.
                self.data[-1] = (self._textarea, self.data[-1][1].removeprefix("\n"))
            self._textarea = None


def submitted(page: bytes, model) -> dict[str, list[str]]:
    parser = _FormFields(f"{model._meta.model_name}_form")
    parser.feed(page.decode())
    data: dict[str, list[str]] = {}
    for name, value in parser.data:
        data.setdefault(name, []).append(value)
    return data


def _instances(make_user) -> dict[str, object]:
    """One row of every registered model, made the way the app makes it."""
    owner, member = make_user(), make_user()
    group = services.create_group(user_id=owner.id, title="console", member_ids=[member.id])
    refresh = RefreshToken.for_user(owner)
    outstanding = OutstandingToken.objects.get(jti=refresh["jti"])
    other = OutstandingToken.objects.get(jti=RefreshToken.for_user(member)["jti"])
    user = make_user()
    RefreshToken.for_user(user)  # a user who logged in has a token ledger, read-only in the admin
    blob = Blob.objects.create(
        sha256=uuid.uuid4().hex * 2, size=4, mime="application/octet-stream", key="blobs/x", refs=1
    )
    return {
        "accounts.user": user,
        "auth.group": Group.objects.create(name=f"ops-{uuid.uuid4().hex[:6]}"),
        "chats.chat": group,
        "chats.message": Message.objects.get(chat=group, seq=1),
        "token_blacklist.outstandingtoken": outstanding,
        "token_blacklist.blacklistedtoken": BlacklistedToken.objects.create(token=other),
        # Rows as an upload leaves them (the stored bytes do not matter to the console).
        "outbox.outboxevent": OutboxEvent.objects.get(pk=_recorded()),
        "attachments.upload": Upload.objects.create(owner=owner, blob=blob, kind="file", name="notes.txt", size=4),
        "attachments.blob": blob,
        "chats.subscription": _subscription(owner, member),
        "feeds.largechannel": LargeChannel.objects.create(channel_id=group.id),
        "accounts.externalidentity": _external_identity(),
    }


def _external_identity() -> ExternalIdentity:
    """An SSO login's link, made by the service the callback uses."""
    user = account_services.sign_in_with_identity(claims={"iss": "https://id.example.com", "sub": uuid.uuid4().hex})
    return ExternalIdentity.objects.get(user=user)


def _subscription(owner, reader):
    channel = services.create_channel(user_id=owner.id, title="console channel", handle=f"c{uuid.uuid4().hex[:8]}")
    services.subscribe(user_id=reader.id, chat_id=channel.id)
    return Subscription.objects.get(chat=channel, user=reader)


def _recorded() -> int:
    from django.db import transaction

    with transaction.atomic():
        return record("ops.sample", {"n": 0})


def _add_values(model_label: str, make_user) -> dict[str, str]:
    name = f"added_{uuid.uuid4().hex[:8]}"
    if model_label == "accounts.user":
        return {"username": name, "email": f"{name}@example.com", "usable_password": "true",
                "password1": "Correct-Horse-42", "password2": "Correct-Horse-42"}  # fmt: skip
    if model_label == "auth.group":
        return {"name": name}
    if model_label == "token_blacklist.blacklistedtoken":
        return {"token": str(OutstandingToken.objects.get(jti=RefreshToken.for_user(make_user())["jti"]).id)}
    return {}


# What the console may do with each registered model. Chats are changed (renamed) only through
# services.rename_group; messages, memberships and the token ledger are read-only.
ALLOWED = {
    "accounts.user": {"add", "change", "delete"},
    "auth.group": {"add", "change", "delete"},
    "chats.chat": {"change"},
    "chats.message": set(),
    "token_blacklist.outstandingtoken": set(),
    "token_blacklist.blacklistedtoken": {"add", "change", "delete"},
    # Uploads come from the API, references from messages, removal from deletes and the purge.
    "attachments.upload": set(),
    "attachments.blob": set(),
    # Subscriptions move the channels' counts: only the API changes them. The read model is the workers'.
    "chats.subscription": set(),
    "feeds.largechannel": set(),
    # Written by outbox.record, delivered and removed by the relays, dead letters by manage.py dlq.
    "outbox.outboxevent": set(),
    # Written by SSO logins (accounts.services.sign_in_with_identity); they go with their user.
    "accounts.externalidentity": set(),
}


def _label(model) -> str:
    return f"{model._meta.app_label}.{model._meta.model_name}"


def test_every_registered_model_has_its_expected_admin_permissions():
    """A newly registered model fails here until its add/change/delete is decided."""
    assert {_label(model) for model in admin.site._registry} == set(ALLOWED)


@pytest.mark.django_db
@pytest.mark.parametrize("label", sorted(ALLOWED))
def test_add_form_works_or_is_refused(label, operator, make_user):
    """The add form saves (302, one more row) or is refused (403, nothing stored); never a 500."""
    model = apps.get_model(label)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")
    before = model.objects.count()
    page = operator.get(url)
    if "add" not in ALLOWED[label]:
        assert page.status_code == 403
        assert operator.post(url, {}).status_code == 403
        assert model.objects.count() == before
        return
    assert page.status_code == 200
    assert operator.post(url, {}).status_code == 200  # the empty form: errors, not a 500
    data = {**submitted(page.content, model), **_add_values(label, make_user)}
    response = operator.post(url, data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert model.objects.count() == before + 1


@pytest.mark.django_db
@pytest.mark.parametrize("label", sorted(ALLOWED))
def test_change_form_works_or_is_refused(label, operator, make_user):
    """Submitting a change form as shown saves (302) or is refused (403) for a read-only model;
    an empty submission is a form error; never a 500."""
    model = apps.get_model(label)
    obj = _instances(make_user)[label]
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.pk])
    page = operator.get(url)
    assert page.status_code == 200  # read-only models are still viewable
    data = submitted(page.content, model)
    response = operator.post(url, data)
    if "change" not in ALLOWED[label]:
        assert response.status_code == 403
        return
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert operator.post(url, {}).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("label", sorted(ALLOWED))
def test_delete_works_or_is_refused(label, operator, make_user):
    """The delete confirmation deletes (302, the row is gone) or is refused (403, it stays)."""
    model = apps.get_model(label)
    obj = _instances(make_user)[label]
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_delete", args=[obj.pk])
    allowed = "delete" in ALLOWED[label]
    assert operator.get(url).status_code == (200 if allowed else 403)
    assert operator.post(url, {"post": "yes"}).status_code == (302 if allowed else 403)
    assert model.objects.filter(pk=obj.pk).exists() is not allowed


@pytest.mark.django_db
def test_adding_a_chat_is_refused_not_a_500(operator, make_user):
    """ "Add chat" used to fail a check constraint (500): chats are made by the API (members, owner,
    first message), so the admin refuses it."""
    before = Chat.objects.count()
    response = operator.post(reverse("admin:chats_chat_add"), {"title": "from the console"})
    assert response.status_code == 403
    assert Chat.objects.count() == before


@pytest.mark.django_db(transaction=True)
async def test_renaming_a_group_in_the_admin_writes_the_system_message_and_the_event(make_user):
    """The admin's rename is services.rename_group: members get the system message.new and
    chat.updated, as from the API; a blank title is a form error; a direct chat's title is read-only."""
    owner, member = await database_sync_to_async(make_user)(), await database_sync_to_async(make_user)()
    operator_user = await database_sync_to_async(make_user)(is_staff=True, is_superuser=True)
    group = await database_sync_to_async(services.create_group)(user_id=owner.id, title="old", member_ids=[member.id])
    socket = await ws_connect(member)

    def rename(title):
        client = Client()
        client.force_login(operator_user)
        url = reverse("admin:chats_chat_change", args=[group.id])
        return client.post(url, {**submitted(client.get(url).content, Chat), "title": title})

    response = await database_sync_to_async(rename)("  ")
    assert response.status_code == 200 and "Must not be blank." in response.content.decode()
    response = await database_sync_to_async(rename)("Moderated title")
    assert response.status_code == 302
    message, _ = await receive_until(socket, "message.new")
    assert message["message"]["kind"] == "system"
    assert message["message"]["text"] == f"{operator_user.username} renamed the group to «Moderated title»"
    updated, _ = await receive_until(socket, "chat.updated")
    assert updated == {"type": "chat.updated", "chat_id": group.id, "title": "Moderated title"}
    await socket.disconnect()
    chat = await database_sync_to_async(Chat.objects.get)(id=group.id)
    assert (chat.title, chat.last_seq) == ("Moderated title", 2)

    def direct_title_is_read_only():
        client = Client()
        client.force_login(operator_user)
        direct = services.open_direct_chat(user_id=owner.id, other_user_id=member.id).chat
        page = client.get(reverse("admin:chats_chat_change", args=[direct.id])).content.decode()
        return 'name="title"' not in page

    assert await database_sync_to_async(direct_title_is_read_only)()


# --- deleting a user ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_delete_confirmation_recommends_deactivation(operator, make_user):
    user = make_user()
    single = operator.get(reverse("admin:accounts_user_delete", args=[user.id])).content.decode()
    bulk = operator.post(
        "/admin/accounts/user/", {"action": "delete_selected", "_selected_action": [user.id]}
    ).content.decode()
    for page in (single, bulk):
        assert 'id="prefer-deactivation"' in page and "Deactivation is usually what you want" in page
    assert User.objects.filter(id=user.id).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["single", "bulk"])
async def test_deleting_a_user_closes_their_sockets_and_hands_their_groups_over(how, make_user):
    """The admin's delete (single and bulk) is accounts.services.delete_user: the user's sockets
    get session_revoked + 4401, and a group they owned passes to its longest-standing admin by
    remove_member's rule, with the events of the owner leaving."""
    owner = await database_sync_to_async(make_user)()
    member, admin_member = await database_sync_to_async(make_user)(), await database_sync_to_async(make_user)()
    operator_user = await database_sync_to_async(make_user)(is_staff=True, is_superuser=True)

    def setup():
        RefreshToken.for_user(owner)  # a token ledger row: read-only in the admin, goes with the user
        group = services.create_group(user_id=owner.id, title="orphan?", member_ids=[member.id])
        services.add_member(actor_id=owner.id, chat_id=group.id, user_id=admin_member.id, role="admin")
        return group

    group = await database_sync_to_async(setup)()
    owner_socket, member_socket = await ws_connect(owner), await ws_connect(member)

    def delete():
        client = Client()
        client.force_login(operator_user)
        if how == "single":
            return client.post(reverse("admin:accounts_user_delete", args=[owner.id]), {"post": "yes"})
        return client.post(
            "/admin/accounts/user/", {"action": "delete_selected", "_selected_action": [owner.id], "post": "yes"}
        )

    response = await database_sync_to_async(delete)()
    assert response.status_code == 302
    frame = await owner_socket.receive_json_from(timeout=5)
    assert frame["type"] == "error" and frame["code"] == "session_revoked"
    assert await owner_socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    updated, _ = await receive_until(member_socket, "chat.member_updated")
    assert updated == {"type": "chat.member_updated", "chat_id": group.id, "user_id": admin_member.id, "role": "owner"}
    left, _ = await receive_until(member_socket, "message.new")
    assert left["message"]["text"] == f"{owner.username} left"
    removed, _ = await receive_until(member_socket, "chat.member_removed")
    assert removed == {"type": "chat.member_removed", "chat_id": group.id, "user_id": owner.id}
    await owner_socket.disconnect()
    await member_socket.disconnect()

    def state():
        return (
            User.objects.filter(id=owner.id).exists(),
            dict(Membership.objects.filter(chat_id=group.id).values_list("user_id", "role")),
        )

    assert await database_sync_to_async(state)() == (False, {member.id: "member", admin_member.id: "owner"})


@pytest.mark.django_db
def test_a_user_who_signed_in_with_sso_can_be_deleted(operator):
    """The user's external identities are read-only in the admin but go with the user."""
    identity = _external_identity()
    response = operator.post(reverse("admin:accounts_user_delete", args=[identity.user_id]), {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(id=identity.user_id).exists()
    assert not ExternalIdentity.objects.filter(pk=identity.pk).exists()


@pytest.mark.django_db
def test_the_admin_add_user_form_follows_the_username_rule(operator):
    """A look-alike username (Cyrillic U+0440 next to Latin p) is refused in the admin as at registration."""
    url = reverse("admin:accounts_user_add")
    data = {
        **submitted(operator.get(url).content, User),
        "username": "\u0440avel",
        "email": "pavel@example.com",
        "usable_password": "false",
    }
    response = operator.post(url, data)
    assert response.status_code == 200
    assert not User.objects.filter(email="pavel@example.com").exists()
    data["username"] = "pavel"
    assert operator.post(url, data).status_code == 302
    assert User.objects.filter(username="pavel").exists()
