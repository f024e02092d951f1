"""The admin as an operator's console: every list page costs the same number of queries at any
size, chats show member and message counts, messages filter by chat id, deactivation closes sockets."""

from __future__ import annotations

import itertools
import uuid

import pytest
from channels.db import database_sync_to_async
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

from accounts.models import User
from chats.models import Chat, Membership, Message
from ops import admin_tools
from tests.conftest import ws_connect

_seq = itertools.count(1)


def populate(n: int) -> None:
    """n (>= 2) more of every kind of row an admin list shows, each with its foreign keys filled."""
    users = User.objects.bulk_create(
        [
            User(username=f"ops{i}_{uuid.uuid4().hex[:6]}", email=f"ops{next(_seq)}_{uuid.uuid4().hex[:6]}@example.com")
            for i in range(n)
        ]
    )
    for user in users:
        token = RefreshToken.for_user(user)  # an OutstandingToken row
        BlacklistedToken.objects.create(token=OutstandingToken.objects.get(jti=token["jti"]))
    Group.objects.bulk_create([Group(name=f"group-{uuid.uuid4().hex[:8]}") for _ in range(n)])
    for owner, other in zip(users, users[1:] + users[:1], strict=True):
        chat = Chat.objects.create(
            kind=Chat.Kind.GROUP, title=f"chat of {owner.username}", created_by=owner, last_seq=2
        )
        Membership.objects.bulk_create(
            [Membership(chat=chat, user=owner, role="owner"), Membership(chat=chat, user=other)]
        )
        Message.objects.bulk_create(
            [
                Message(chat=chat, seq=seq, sender=owner, text=f"text {seq}", client_id=uuid.uuid4().hex)
                for seq in (1, 2)
            ]
        )


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
