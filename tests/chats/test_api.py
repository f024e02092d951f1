"""REST contract of chats: chats, members, messages, read state, history, schema.

Every test drives the real API with a real JWT and checks status, body and the rows
left in the database. Data is built through ``chats.services`` or the API.
"""

from __future__ import annotations

import uuid

import pytest
import yaml

from chats import selectors, services
from chats.models import Chat, Membership, Message

pytestmark = pytest.mark.django_db

MESSAGE_KEYS = {
    "id",
    "chat_id",
    "seq",
    "sender_id",
    "kind",
    "text",
    "client_id",
    "created_at",
    "is_read",
    # issue 12
    "version",
    "edited_at",
    "deleted",
    "reply_to",
    "forwarded_from",
    "reactions",
    "pinned",
    "attachments",
}
CHAT_KEYS = {
    "version",
    "pinned_seqs",
    "id",
    "kind",
    "title",
    "members",
    "members_count",
    "last_seq",
    "last_read_seq",
    "unread_count",
    "read_all_seq",
    "last_message",
}


@pytest.fixture(autouse=True)
def _no_send_rate_limit(settings):
    """Tests here send many messages in one second; the limit has its own test below."""
    settings.SEND_RATE_LIMIT = 0


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def carol(make_user):
    return make_user("carol")


@pytest.fixture
def stranger(make_user):
    return make_user("stranger")


def direct(a, b) -> Chat:
    return services.open_direct_chat(user_id=a.id, other_user_id=b.id).chat


def group(owner, *members, title: str = "Team") -> Chat:
    return services.create_group(user_id=owner.id, title=title, member_ids=[m.id for m in members])


def send(user, chat: Chat, text: str = "hello", client_id: str | None = None) -> Message:
    return services.send_message(
        user_id=user.id, chat_id=chat.id, client_id=client_id or uuid.uuid4().hex, text=text
    ).message


def send_many(user, chat: Chat, n: int) -> list[Message]:
    return [send(user, chat, text=f"m{i}") for i in range(n)]


def refreshed(chat: Chat) -> Chat:
    chat.refresh_from_db()
    return chat


def membership(chat: Chat, user) -> Membership | None:
    return Membership.objects.filter(chat=chat, user=user).first()


# --- POST /api/chats: direct -------------------------------------------------------


def test_open_direct_chat_creates_once_then_returns_existing(api, alice, bob):
    """Opening a direct chat answers 201 the first time and 200 with the same chat afterwards, from either side."""
    response = api(alice).post("/api/chats", {"kind": "direct", "user_id": bob.id}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= CHAT_KEYS
    assert body["kind"] == "direct"
    assert body["members_count"] == 2
    assert sorted((m["id"], m["username"], m["role"]) for m in body["members"]) == sorted(
        [(alice.id, "alice", "member"), (bob.id, "bob", "member")]
    )
    assert body["last_seq"] == 0 and body["last_message"] is None and body["unread_count"] == 0

    again = api(alice).post("/api/chats", {"kind": "direct", "user_id": bob.id}, format="json")
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    reverse = api(bob).post("/api/chats", {"kind": "direct", "user_id": alice.id}, format="json")
    assert reverse.status_code == 200 and reverse.json()["id"] == body["id"]

    assert Chat.objects.count() == 1
    chat = Chat.objects.get()
    assert chat.kind == "direct" and chat.created_by_id == alice.id
    assert set(chat.memberships.values_list("user_id", flat=True)) == {alice.id, bob.id}


def test_open_direct_chat_with_yourself_is_400(api, alice):
    """A direct chat with yourself is a validation error and creates nothing."""
    response = api(alice).post("/api/chats", {"kind": "direct", "user_id": alice.id}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error" and "user_id" in body["detail"]
    assert Chat.objects.count() == 0


def test_open_direct_chat_with_unknown_or_inactive_user_is_404(api, alice, make_user):
    """A direct chat with a missing or deactivated user answers 404 not_found and creates nothing."""
    ghost = make_user("ghost", is_active=False)
    for user_id in (ghost.id + 1000, ghost.id):
        response = api(alice).post("/api/chats", {"kind": "direct", "user_id": user_id}, format="json")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    assert Chat.objects.count() == 0


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"kind": "direct"}, "user_id"),
        ({"kind": "direct", "user_id": "x"}, "user_id"),
        ({"kind": "channel", "user_id": 1}, "kind"),
        ({"kind": "group"}, "title"),
        ({"kind": "group", "title": "   "}, "title"),
        ({"kind": "group", "title": "x" * 129}, "title"),
        ({"kind": "group", "title": "T", "member_ids": "nope"}, "member_ids"),
    ],
)
def test_create_chat_invalid_body_is_400(api, alice, payload, field):
    """Malformed create-chat bodies are field errors; nothing is created."""
    response = api(alice).post("/api/chats", payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in body["detail"]
    assert Chat.objects.count() == 0


# --- POST /api/chats: group --------------------------------------------------------


def test_create_group_creator_is_owner(api, alice, bob, carol):
    """Creating a group answers 201; the creator is owner, the others members, and a system message opens it."""
    response = api(alice).post(
        "/api/chats", {"kind": "group", "title": " Team ", "member_ids": [bob.id, carol.id, bob.id]}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= CHAT_KEYS
    assert body["kind"] == "group" and body["title"] == "Team"
    assert body["members"] == [
        {"id": alice.id, "username": "alice", "role": "owner"},
        {"id": bob.id, "username": "bob", "role": "member"},
        {"id": carol.id, "username": "carol", "role": "member"},
    ]
    assert body["members_count"] == 3
    assert body["last_seq"] == 1
    assert body["last_read_seq"] == 1 and body["unread_count"] == 0 and body["read_all_seq"] == 1
    last = body["last_message"]
    assert set(last) == MESSAGE_KEYS
    assert last["kind"] == "system" and last["sender_id"] is None and last["seq"] == 1 and last["chat_id"] == body["id"]

    chat = Chat.objects.get(id=body["id"])
    assert chat.created_by_id == alice.id and chat.direct_key is None
    assert dict(chat.memberships.values_list("user_id", "role")) == {
        alice.id: "owner",
        bob.id: "member",
        carol.id: "member",
    }
    assert list(chat.messages.values_list("seq", "kind", "sender_id")) == [(1, "system", None)]


def test_create_group_with_unknown_member_is_400(api, alice, bob):
    """A group naming a missing user is refused as a whole: no chat, no memberships."""
    response = api(alice).post(
        "/api/chats", {"kind": "group", "title": "T", "member_ids": [bob.id, bob.id + 1000]}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error" and "member_ids" in body["detail"]
    assert Chat.objects.count() == 0 and Membership.objects.count() == 0


def test_create_group_alone(api, alice):
    """A group may start with only its creator."""
    response = api(alice).post("/api/chats", {"kind": "group", "title": "Notes"}, format="json")
    assert response.status_code == 201
    assert response.json()["members"] == [{"id": alice.id, "username": "alice", "role": "owner"}]
    assert Membership.objects.filter(chat_id=response.json()["id"]).count() == 1


# --- GET /api/chats ----------------------------------------------------------------


def test_list_chats_most_recent_activity_first(api, alice, bob, carol, stranger):
    """The list holds only the caller's chats, newest activity first; a new message moves a chat to the top."""
    first = direct(alice, bob)
    second = group(alice, carol, title="Second")
    third = direct(alice, carol)
    direct(bob, stranger)  # not alice's
    response = api(alice).get("/api/chats")
    assert response.status_code == 200
    assert [c["id"] for c in response.json()] == [third.id, second.id, first.id]

    send(bob, first, "bump")
    response = api(alice).get("/api/chats")
    assert [c["id"] for c in response.json()] == [first.id, third.id, second.id]


def test_list_chats_read_state_and_last_message(api, alice, bob):
    """Each chat carries the caller's own read state, unread count and the last message."""
    chat = direct(alice, bob)
    send(alice, chat, "one")
    send(alice, chat, "two")
    last = send(alice, chat, "three")

    bob_view = api(bob).get("/api/chats").json()[0]
    assert set(bob_view) >= CHAT_KEYS
    assert bob_view["last_seq"] == 3
    assert bob_view["last_read_seq"] == 0 and bob_view["unread_count"] == 3 and bob_view["read_all_seq"] == 0
    assert bob_view["last_message"]["id"] == last.id
    assert bob_view["last_message"]["text"] == "three" and bob_view["last_message"]["is_read"] is False

    alice_view = api(alice).get("/api/chats").json()[0]
    assert alice_view["last_read_seq"] == 3 and alice_view["unread_count"] == 0


def test_list_chats_large_group_has_no_inline_members(api, alice, bob, carol, monkeypatch):
    """Chats above the inline limit answer members=null but still count their members."""
    monkeypatch.setattr(selectors, "INLINE_MEMBERS_LIMIT", 2)
    big = group(alice, bob, carol, title="Big")
    small = direct(alice, bob)
    by_id = {c["id"]: c for c in api(alice).get("/api/chats").json()}
    assert by_id[big.id]["members"] is None and by_id[big.id]["members_count"] == 3
    assert len(by_id[small.id]["members"]) == 2


def test_list_chats_query_count_does_not_grow_with_chats(api, alice, bob, carol, make_user, django_assert_num_queries):
    """GET /api/chats costs a fixed number of queries whatever the number of chats and members."""
    chat = direct(alice, bob)
    send(bob, chat)
    client = api(alice)
    with django_assert_num_queries(4):  # auth user, memberships+counts, inline members, last messages
        assert len(client.get("/api/chats").json()) == 1

    for i in range(6):
        other = make_user(f"peer{i}")
        send(other, direct(alice, other), "hi")
        g = group(alice, bob, carol, other, title=f"G{i}")
        send(carol, g, "yo")
    with django_assert_num_queries(4):
        body = client.get("/api/chats").json()
    assert len(body) == 13
    assert all(c["last_message"] is not None and c["members"] for c in body)


# --- GET/PATCH /api/chats/{id} -----------------------------------------------------


def test_get_chat(api, alice, bob):
    """GET /api/chats/{id} returns the same object as the list entry."""
    chat = group(alice, bob)
    response = api(bob).get(f"/api/chats/{chat.id}")
    assert response.status_code == 200
    assert response.json() == api(bob).get("/api/chats").json()[0]


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_rename_group_by_owner_or_admin_adds_system_message(api, alice, bob, role):
    """The owner or an admin renames a group; the title changes and a system message is appended."""
    chat = group(alice, title="Old")
    services.add_member(actor_id=alice.id, chat_id=chat.id, user_id=bob.id, role="admin")
    actor = alice if role == "owner" else bob
    before = refreshed(chat).last_seq
    response = api(actor).patch(f"/api/chats/{chat.id}", {"title": "New"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["title"] == "New" and body["last_seq"] == before + 1
    assert body["last_message"]["kind"] == "system" and "New" in body["last_message"]["text"]
    chat = refreshed(chat)
    assert chat.title == "New" and chat.last_seq == before + 1
    system = Message.objects.get(chat=chat, seq=before + 1)
    assert system.kind == "system" and system.sender_id is None


def test_rename_group_by_plain_member_is_403(api, alice, bob):
    """A plain member cannot rename a group: 403 forbidden, title and messages unchanged."""
    chat = group(alice, bob, title="Old")
    response = api(bob).patch(f"/api/chats/{chat.id}", {"title": "New"}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    chat = refreshed(chat)
    assert chat.title == "Old" and chat.messages.count() == 1


def test_rename_direct_chat_is_400(api, alice, bob):
    """A direct chat has no title to change: 400, nothing stored."""
    chat = direct(alice, bob)
    response = api(alice).patch(f"/api/chats/{chat.id}", {"title": "New"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    chat = refreshed(chat)
    assert chat.title == "" and chat.messages.count() == 0


@pytest.mark.parametrize("payload", [{}, {"title": "  "}, {"title": "x" * 129}])
def test_rename_group_invalid_title_is_400(api, alice, payload):
    """A missing, blank or too long title is a validation error."""
    chat = group(alice, title="Old")
    response = api(alice).patch(f"/api/chats/{chat.id}", payload, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert refreshed(chat).title == "Old"


# --- POST /api/chats/{id}/members --------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_add_member_by_owner_or_admin(api, alice, bob, carol, role):
    """The owner or an admin adds a member (201); the membership exists and a system message is appended."""
    chat = group(alice)
    if role == "admin":
        services.add_member(actor_id=alice.id, chat_id=chat.id, user_id=bob.id, role="admin")
    actor = alice if role == "owner" else bob
    before = refreshed(chat).last_seq
    response = api(actor).post(f"/api/chats/{chat.id}/members", {"user_id": carol.id}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert {"id": carol.id, "username": "carol", "role": "member"} in body["members"]
    assert body["last_seq"] == before + 1
    assert membership(chat, carol).role == "member"
    system = Message.objects.get(chat=chat, seq=before + 1)
    assert system.kind == "system" and "carol" in system.text
    # The new member sees the chat and nothing counts as unread from before they joined.
    seen = api(carol).get(f"/api/chats/{chat.id}").json()
    assert seen["unread_count"] == 0


def test_add_existing_member_is_409(api, alice, bob):
    """Adding someone already in the group answers 409 conflict and changes nothing."""
    chat = group(alice, bob)
    response = api(alice).post(f"/api/chats/{chat.id}/members", {"user_id": bob.id}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert chat.memberships.count() == 2 and refreshed(chat).last_seq == 1


def test_add_member_by_plain_member_is_403(api, alice, bob, carol):
    """A plain member cannot add members."""
    chat = group(alice, bob)
    response = api(bob).post(f"/api/chats/{chat.id}/members", {"user_id": carol.id}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert membership(chat, carol) is None and refreshed(chat).last_seq == 1


def test_add_member_to_direct_chat_is_400(api, alice, bob, carol):
    """Direct chats have no member management."""
    chat = direct(alice, bob)
    response = api(alice).post(f"/api/chats/{chat.id}/members", {"user_id": carol.id}, format="json")
    assert response.status_code == 400
    assert membership(chat, carol) is None and chat.memberships.count() == 2


def test_only_owner_appoints_admins(api, alice, bob, carol, make_user):
    """An admin cannot add an admin (403); the owner can (201, role admin stored)."""
    dave = make_user("dave")
    chat = group(alice)
    services.add_member(actor_id=alice.id, chat_id=chat.id, user_id=bob.id, role="admin")
    refused = api(bob).post(f"/api/chats/{chat.id}/members", {"user_id": carol.id, "role": "admin"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert membership(chat, carol) is None

    ok = api(alice).post(f"/api/chats/{chat.id}/members", {"user_id": dave.id, "role": "admin"}, format="json")
    assert ok.status_code == 201
    assert {"id": dave.id, "username": "dave", "role": "admin"} in ok.json()["members"]
    assert membership(chat, dave).role == "admin"


@pytest.mark.parametrize("payload", [{}, {"user_id": "x"}, {"user_id": 1, "role": "owner"}])
def test_add_member_invalid_body_is_400(api, alice, payload):
    """A missing user_id or a role other than member/admin is a validation error."""
    chat = group(alice)
    response = api(alice).post(f"/api/chats/{chat.id}/members", payload, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert chat.memberships.count() == 1


def test_add_unknown_user_is_404(api, alice):
    """Adding a user who does not exist answers 404."""
    chat = group(alice)
    response = api(alice).post(f"/api/chats/{chat.id}/members", {"user_id": alice.id + 1000}, format="json")
    assert response.status_code == 404
    assert chat.memberships.count() == 1


# --- DELETE /api/chats/{id}/members/{user_id} --------------------------------------


def test_admin_removes_member(api, alice, bob, carol):
    """An admin removes a plain member (204): the membership is gone, a system message is added, the chat is now 404 for them."""
    chat = group(alice, carol)
    services.add_member(actor_id=alice.id, chat_id=chat.id, user_id=bob.id, role="admin")
    before = refreshed(chat).last_seq
    response = api(bob).delete(f"/api/chats/{chat.id}/members/{carol.id}")
    assert response.status_code == 204
    assert membership(chat, carol) is None
    system = Message.objects.get(chat=chat, seq=before + 1)
    assert system.kind == "system" and "carol" in system.text
    assert api(carol).get(f"/api/chats/{chat.id}").status_code == 404
    assert api(alice).get(f"/api/chats/{chat.id}").json()["members_count"] == 2


def test_admin_cannot_remove_owner_or_admin(api, alice, bob, carol):
    """Admins remove plain members only: removing the owner or another admin is 403."""
    chat = group(alice)
    services.add_member(actor_id=alice.id, chat_id=chat.id, user_id=bob.id, role="admin")
    services.add_member(actor_id=alice.id, chat_id=chat.id, user_id=carol.id, role="admin")
    for target in (alice, carol):
        response = api(bob).delete(f"/api/chats/{chat.id}/members/{target.id}")
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"
    assert chat.memberships.count() == 3


def test_owner_removes_admin(api, alice, bob):
    """The owner may remove an admin: 204, membership gone, system message added."""
    chat = group(alice)
    services.add_member(actor_id=alice.id, chat_id=chat.id, user_id=bob.id, role="admin")
    before = refreshed(chat).last_seq
    response = api(alice).delete(f"/api/chats/{chat.id}/members/{bob.id}")
    assert response.status_code == 204
    assert membership(chat, bob) is None
    assert Message.objects.get(chat=chat, seq=before + 1).kind == "system"


def test_member_cannot_remove_others(api, alice, bob, carol):
    """A plain member removing someone else is 403; nothing changes."""
    chat = group(alice, bob, carol)
    response = api(bob).delete(f"/api/chats/{chat.id}/members/{carol.id}")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert membership(chat, carol) is not None and refreshed(chat).last_seq == 1


def test_member_leaves(api, alice, bob):
    """Anyone may remove themself (leave): 204, membership gone, a system message says so."""
    chat = group(alice, bob)
    response = api(bob).delete(f"/api/chats/{chat.id}/members/{bob.id}")
    assert response.status_code == 204
    assert membership(chat, bob) is None
    last = Message.objects.get(chat=chat, seq=refreshed(chat).last_seq)
    assert last.kind == "system" and "bob" in last.text and last.seq == 2
    assert [c["id"] for c in api(bob).get("/api/chats").json()] == []


def test_owner_leaving_hands_ownership_to_an_admin(api, alice, bob, carol):
    """When the owner leaves, an admin becomes owner (ahead of longer-standing plain members)."""
    chat = group(alice, bob)
    services.add_member(actor_id=alice.id, chat_id=chat.id, user_id=carol.id, role="admin")
    response = api(alice).delete(f"/api/chats/{chat.id}/members/{alice.id}")
    assert response.status_code == 204
    assert membership(chat, alice) is None
    assert membership(chat, carol).role == "owner"
    assert membership(chat, bob).role == "member"
    roles = {m["id"]: m["role"] for m in api(bob).get(f"/api/chats/{chat.id}").json()["members"]}
    assert roles == {bob.id: "member", carol.id: "owner"}


def test_owner_leaving_without_admins_hands_ownership_to_a_member(api, alice, bob):
    """With no admin left, a remaining member becomes owner, so a group never lacks one."""
    chat = group(alice, bob)
    assert api(alice).delete(f"/api/chats/{chat.id}/members/{alice.id}").status_code == 204
    assert list(chat.memberships.values_list("user_id", "role")) == [(bob.id, "owner")]


def test_remove_member_of_direct_chat_is_400(api, alice, bob):
    """Nobody can be removed from (or leave) a direct chat."""
    chat = direct(alice, bob)
    for target in (bob, alice):
        response = api(alice).delete(f"/api/chats/{chat.id}/members/{target.id}")
        assert response.status_code == 400
    assert chat.memberships.count() == 2 and refreshed(chat).last_seq == 0


def test_remove_non_member_is_404(api, alice, carol):
    """Removing a user who is not in the group answers 404."""
    chat = group(alice)
    response = api(alice).delete(f"/api/chats/{chat.id}/members/{carol.id}")
    assert response.status_code == 404
    assert refreshed(chat).last_seq == 1


# --- GET /history/{chat_id} --------------------------------------------------------


def test_history_default_page_and_links(api, alice, bob):
    """History pages are {count, next, previous, results}, ascending by seq, 50 per page by default."""
    chat = direct(alice, bob)
    sent = send_many(alice, chat, 60)
    client = api(bob)
    first = client.get(f"/history/{chat.id}")
    assert first.status_code == 200
    page = first.json()
    assert set(page) == {"count", "next", "previous", "results"}
    assert page["count"] == 60
    assert [m["seq"] for m in page["results"]] == list(range(1, 51))
    assert [m["id"] for m in page["results"]] == [m.id for m in sent[:50]]
    assert all(set(m) == MESSAGE_KEYS for m in page["results"])
    assert page["previous"] is None
    assert "offset=50" in page["next"] and "limit=50" in page["next"]

    second = client.get(page["next"]).json()
    assert [m["seq"] for m in second["results"]] == list(range(51, 61))
    assert second["next"] is None
    back = client.get(second["previous"]).json()
    assert [m["seq"] for m in back["results"]] == list(range(1, 51))


def test_history_message_object(api, alice, bob):
    """A history entry is the full message object with the stored values."""
    chat = direct(alice, bob)
    message = send(alice, chat, "  hello  ", client_id="cid-1")
    entry = api(bob).get(f"/history/{chat.id}").json()["results"][0]
    assert entry["id"] == message.id and entry["chat_id"] == chat.id and entry["seq"] == 1
    assert entry["sender_id"] == alice.id and entry["kind"] == "text"
    assert entry["text"] == "hello" and entry["client_id"] == "cid-1"
    assert entry["created_at"].startswith(message.created_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert entry["is_read"] is False


def test_history_limit_and_offset(api, alice, bob):
    """limit and offset select messages offset+1..offset+limit; offset past the end is an empty page."""
    chat = direct(alice, bob)
    send_many(alice, chat, 7)
    client = api(alice)
    page = client.get(f"/history/{chat.id}", {"limit": 3, "offset": 2}).json()
    assert [m["seq"] for m in page["results"]] == [3, 4, 5]
    assert page["count"] == 7 and page["next"] and page["previous"]
    tail = client.get(f"/history/{chat.id}", {"limit": 3, "offset": 6}).json()
    assert [m["seq"] for m in tail["results"]] == [7] and tail["next"] is None
    beyond = client.get(f"/history/{chat.id}", {"offset": 100})
    assert beyond.status_code == 200
    assert beyond.json()["results"] == [] and beyond.json()["count"] == 7 and beyond.json()["next"] is None


def test_history_limit_is_clamped_to_200(api, alice, bob):
    """A limit above 200 is clamped to 200, not refused."""
    chat = direct(alice, bob)
    send_many(alice, chat, 205)
    page = api(alice).get(f"/history/{chat.id}", {"limit": 1000}).json()
    assert page["count"] == 205
    assert [m["seq"] for m in page["results"]] == list(range(1, 201))
    assert "limit=200" in page["next"] and "offset=200" in page["next"]


@pytest.mark.parametrize(
    "params",
    [{"limit": "abc"}, {"limit": "-1"}, {"limit": "1.5"}, {"offset": "x"}, {"offset": "-5"}, {"offset": "1e3"}],
)
def test_history_bad_limit_or_offset_is_400(api, alice, bob, params):
    """A non-integer or negative limit/offset is a 400 validation_error naming the field."""
    chat = direct(alice, bob)
    response = api(alice).get(f"/history/{chat.id}", params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert set(params) <= set(body["detail"])


def test_history_shows_system_messages_in_order(api, alice, bob, carol):
    """Group history interleaves system and text messages by seq."""
    chat = group(alice, bob)
    send(bob, chat, "hi")
    services.add_member(actor_id=alice.id, chat_id=chat.id, user_id=carol.id)
    results = api(carol).get(f"/history/{chat.id}").json()["results"]
    assert [(m["seq"], m["kind"]) for m in results] == [(1, "system"), (2, "text"), (3, "system")]


def test_history_query_count_does_not_grow_with_limit(api, alice, bob, django_assert_num_queries):
    """History costs a fixed number of queries whatever the page size (no N+1)."""
    chat = group(alice, bob)
    send_many(alice, chat, 30)
    client = api(bob)
    with django_assert_num_queries(3):  # auth user, membership+chat, messages
        assert len(client.get(f"/history/{chat.id}", {"limit": 2}).json()["results"]) == 2
    with django_assert_num_queries(3):
        assert len(client.get(f"/history/{chat.id}", {"limit": 200}).json()["results"]) == 31


# --- GET /api/chats/{id}/messages --------------------------------------------------


def test_messages_after_seq(api, alice, bob):
    """?after_seq=N returns messages with seq > N ascending, at most limit, with has_more."""
    chat = direct(alice, bob)
    sent = send_many(alice, chat, 10)
    client = api(bob)
    page = client.get(f"/api/chats/{chat.id}/messages", {"after_seq": 3, "limit": 4})
    assert page.status_code == 200
    body = page.json()
    assert set(body) == {"results", "has_more"}
    assert [m["seq"] for m in body["results"]] == [4, 5, 6, 7]
    assert [m["id"] for m in body["results"]] == [m.id for m in sent[3:7]]
    assert all(set(m) == MESSAGE_KEYS for m in body["results"])
    assert body["has_more"] is True
    rest = client.get(f"/api/chats/{chat.id}/messages", {"after_seq": 7, "limit": 3}).json()
    assert [m["seq"] for m in rest["results"]] == [8, 9, 10] and rest["has_more"] is False
    end = client.get(f"/api/chats/{chat.id}/messages", {"after_seq": 10}).json()
    assert end == {"results": [], "has_more": False}
    everything = client.get(f"/api/chats/{chat.id}/messages").json()
    assert [m["seq"] for m in everything["results"]] == list(range(1, 11)) and everything["has_more"] is False


def test_messages_before_seq(api, alice, bob):
    """?before_seq=N returns the limit messages just before N, ascending, with has_more for older ones."""
    chat = direct(alice, bob)
    send_many(alice, chat, 10)
    client = api(bob)
    body = client.get(f"/api/chats/{chat.id}/messages", {"before_seq": 8, "limit": 3}).json()
    assert [m["seq"] for m in body["results"]] == [5, 6, 7] and body["has_more"] is True
    oldest = client.get(f"/api/chats/{chat.id}/messages", {"before_seq": 3, "limit": 5}).json()
    assert [m["seq"] for m in oldest["results"]] == [1, 2] and oldest["has_more"] is False


def test_messages_limit_is_clamped_to_200(api, alice, bob):
    """The cursor endpoint clamps limit to 200 too."""
    chat = direct(alice, bob)
    send_many(alice, chat, 201)
    body = api(bob).get(f"/api/chats/{chat.id}/messages", {"after_seq": 0, "limit": 500}).json()
    assert len(body["results"]) == 200 and body["has_more"] is True


@pytest.mark.parametrize(
    "params",
    [
        {"after_seq": "x"},
        {"after_seq": -1},
        {"before_seq": 0},
        {"limit": 0},
        {"limit": "y"},
        {"after_seq": 1, "before_seq": 5},
    ],
)
def test_messages_bad_cursor_is_400(api, alice, bob, params):
    """Non-integer or negative cursors, a zero limit, or both cursors at once are validation errors."""
    chat = direct(alice, bob)
    response = api(bob).get(f"/api/chats/{chat.id}/messages", params)
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


# --- POST /api/chats/{id}/messages -------------------------------------------------


def test_send_message_then_duplicate(api, alice, bob):
    """A send answers 201 with the stored message; repeating the client_id answers 200 with the identical body and stores nothing."""
    chat = direct(alice, bob)
    client = api(alice)
    response = client.post(f"/api/chats/{chat.id}/messages", {"client_id": "c-1", "text": "  hi  "}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == MESSAGE_KEYS
    message = Message.objects.get()
    assert body["id"] == message.id and body["seq"] == 1 and body["chat_id"] == chat.id
    assert body["sender_id"] == alice.id and body["kind"] == "text" and body["client_id"] == "c-1"
    assert body["text"] == "hi" and message.text == "hi"
    assert body["is_read"] is False

    again = client.post(f"/api/chats/{chat.id}/messages", {"client_id": "c-1", "text": "different"}, format="json")
    assert again.status_code == 200
    assert again.json() == body
    assert Message.objects.count() == 1 and refreshed(chat).last_seq == 1

    # The next new message takes the next seq: a duplicate consumed none.
    nxt = client.post(f"/api/chats/{chat.id}/messages", {"client_id": "c-2", "text": "next"}, format="json")
    assert nxt.status_code == 201 and nxt.json()["seq"] == 2


def test_send_marks_sender_read_and_moves_chat(api, alice, bob):
    """Sending marks the chat read for the sender up to their message and counts as unread for the recipient."""
    chat = direct(alice, bob)
    send(bob, chat, "earlier")
    response = api(alice).post(f"/api/chats/{chat.id}/messages", {"client_id": "c", "text": "reply"}, format="json")
    assert response.status_code == 201
    assert membership(chat, alice).last_read_seq == 2
    assert membership(chat, bob).last_read_seq == 1
    bob_view = api(bob).get(f"/api/chats/{chat.id}").json()
    assert bob_view["unread_count"] == 1 and bob_view["last_message"]["id"] == response.json()["id"]
    # Both have read seq 1 now, so it counts as read by everyone.
    assert refreshed(chat).read_all_seq == 1


def test_send_text_length_bounds(api, alice, bob):
    """Text is 1..4096 characters after trimming: 4096 is stored, 4097 is refused."""
    chat = direct(alice, bob)
    client = api(alice)
    ok = client.post(f"/api/chats/{chat.id}/messages", {"client_id": "max", "text": "x" * 4096}, format="json")
    assert ok.status_code == 201
    assert len(Message.objects.get(client_id="max").text) == 4096
    padded = client.post(
        f"/api/chats/{chat.id}/messages", {"client_id": "pad", "text": "  " + "y" * 4096 + "\n"}, format="json"
    )
    assert padded.status_code == 201 and len(padded.json()["text"]) == 4096
    too_long = client.post(f"/api/chats/{chat.id}/messages", {"client_id": "long", "text": "x" * 4097}, format="json")
    assert too_long.status_code == 400
    assert too_long.json()["code"] == "validation_error" and "text" in too_long.json()["detail"]
    assert Message.objects.count() == 2 and refreshed(chat).last_seq == 2


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"client_id": "c", "text": ""}, "text"),
        ({"client_id": "c", "text": "   \n\t "}, "text"),
        ({"client_id": "c"}, "text"),
        ({"client_id": "c", "text": None}, "text"),
        ({"text": "hi"}, "client_id"),
        ({"client_id": "", "text": "hi"}, "client_id"),
        ({"client_id": "x" * 65, "text": "hi"}, "client_id"),
    ],
)
def test_send_invalid_body_is_400(api, alice, bob, payload, field):
    """Blank text, a missing or empty client_id, or one longer than 64 characters are field errors; nothing is stored."""
    chat = direct(alice, bob)
    response = api(alice).post(f"/api/chats/{chat.id}/messages", payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error" and field in body["detail"]
    assert Message.objects.count() == 0 and refreshed(chat).last_seq == 0


def test_send_client_id_of_64_chars_is_accepted(api, alice, bob):
    """A client_id of exactly 64 characters is valid."""
    chat = direct(alice, bob)
    response = api(alice).post(f"/api/chats/{chat.id}/messages", {"client_id": "k" * 64, "text": "hi"}, format="json")
    assert response.status_code == 201
    assert Message.objects.get().client_id == "k" * 64


def test_send_same_client_id_to_another_chat_is_409(api, alice, bob, carol):
    """A client_id already used in another chat is a conflict, not a silent duplicate in the wrong chat."""
    first = direct(alice, bob)
    second = direct(alice, carol)
    client = api(alice)
    assert (
        client.post(f"/api/chats/{first.id}/messages", {"client_id": "c", "text": "a"}, format="json").status_code
        == 201
    )
    response = client.post(f"/api/chats/{second.id}/messages", {"client_id": "c", "text": "b"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert Message.objects.count() == 1 and refreshed(second).last_seq == 0


def test_same_client_id_from_two_senders_are_two_messages(api, alice, bob):
    """client_id is unique per sender: two users may use the same one."""
    chat = direct(alice, bob)
    a = api(alice).post(f"/api/chats/{chat.id}/messages", {"client_id": "same", "text": "a"}, format="json")
    b = api(bob).post(f"/api/chats/{chat.id}/messages", {"client_id": "same", "text": "b"}, format="json")
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]
    assert list(Message.objects.order_by("seq").values_list("seq", "sender_id")) == [(1, alice.id), (2, bob.id)]


def test_send_rate_limit(api, alice, bob, settings):
    """Beyond SEND_RATE_LIMIT sends per window the API answers 429 rate_limited with Retry-After; nothing is stored."""
    settings.SEND_RATE_LIMIT = 2
    settings.SEND_RATE_WINDOW_SECONDS = 1_000_003  # one window for the whole test
    chat = direct(alice, bob)
    client = api(alice)
    for i in range(2):
        assert (
            client.post(
                f"/api/chats/{chat.id}/messages", {"client_id": f"r{i}", "text": "x"}, format="json"
            ).status_code
            == 201
        )
    response = client.post(f"/api/chats/{chat.id}/messages", {"client_id": "r2", "text": "x"}, format="json")
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert int(response["Retry-After"]) >= 1
    assert Message.objects.count() == 2


# --- POST /api/chats/{id}/read -----------------------------------------------------


def test_mark_read(api, alice, bob):
    """Reading answers {last_read_seq, read_all_seq} and stores the watermark."""
    chat = direct(alice, bob)
    send_many(alice, chat, 5)
    response = api(bob).post(f"/api/chats/{chat.id}/read", {"up_to_seq": 3}, format="json")
    assert response.status_code == 200
    assert response.json() == {"last_read_seq": 3, "read_all_seq": 3}
    assert membership(chat, bob).last_read_seq == 3
    assert refreshed(chat).read_all_seq == 3
    assert api(bob).get(f"/api/chats/{chat.id}").json()["unread_count"] == 2


def test_mark_read_clamps_and_never_decreases(api, alice, bob):
    """up_to_seq beyond last_seq is clamped to last_seq; a lower value never moves the watermark back."""
    chat = direct(alice, bob)
    send_many(alice, chat, 4)
    client = api(bob)
    clamped = client.post(f"/api/chats/{chat.id}/read", {"up_to_seq": 999}, format="json")
    assert clamped.status_code == 200 and clamped.json()["last_read_seq"] == 4
    lower = client.post(f"/api/chats/{chat.id}/read", {"up_to_seq": 1}, format="json")
    assert lower.status_code == 200 and lower.json() == {"last_read_seq": 4, "read_all_seq": 4}
    assert membership(chat, bob).last_read_seq == 4


@pytest.mark.parametrize("payload", [{}, {"up_to_seq": -1}, {"up_to_seq": "x"}, {"up_to_seq": 1.5}])
def test_mark_read_invalid_body_is_400(api, alice, bob, payload):
    """A missing, negative or non-integer up_to_seq is a validation error."""
    chat = direct(alice, bob)
    send(alice, chat)
    response = api(bob).post(f"/api/chats/{chat.id}/read", payload, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert membership(chat, bob).last_read_seq == 0


def test_is_read_flips_in_direct_chat_when_recipient_reads(api, alice, bob):
    """In a direct chat a message is is_read once the recipient has read it."""
    chat = direct(alice, bob)
    send(alice, chat, "one")
    send(alice, chat, "two")
    assert [m["is_read"] for m in api(alice).get(f"/history/{chat.id}").json()["results"]] == [False, False]
    api(bob).post(f"/api/chats/{chat.id}/read", {"up_to_seq": 1}, format="json")
    assert [m["is_read"] for m in api(alice).get(f"/history/{chat.id}").json()["results"]] == [True, False]


def test_is_read_flips_in_group_only_after_last_member_reads(api, alice, make_user):
    """In a 5-member group a message is is_read only once every member other than the sender has read it."""
    others = [make_user(f"member{i}") for i in range(4)]
    chat = group(alice, *others)
    message = send(alice, chat, "news")
    assert message.seq == 2

    def is_read() -> bool:
        results = api(alice).get(f"/history/{chat.id}").json()["results"]
        return next(m for m in results if m["id"] == message.id)["is_read"]

    for reader in others[:3]:
        body = api(reader).post(f"/api/chats/{chat.id}/read", {"up_to_seq": 2}, format="json").json()
        assert body == {"last_read_seq": 2, "read_all_seq": 1}
        assert is_read() is False
    assert refreshed(chat).read_all_seq == 1

    body = api(others[3]).post(f"/api/chats/{chat.id}/read", {"up_to_seq": 2}, format="json").json()
    assert body == {"last_read_seq": 2, "read_all_seq": 2}
    assert is_read() is True
    assert refreshed(chat).read_all_seq == 2
    assert api(alice).get(f"/api/chats/{chat.id}").json()["read_all_seq"] == 2


# --- non-members: 404 exactly like a missing chat ----------------------------------

ENDPOINTS = [
    ("get", "/api/chats/{chat}", None),
    ("patch", "/api/chats/{chat}", {"title": "Hijack"}),
    ("post", "/api/chats/{chat}/members", {"user_id": "{stranger}"}),
    ("delete", "/api/chats/{chat}/members/{owner}", None),
    ("get", "/api/chats/{chat}/messages", None),
    ("get", "/api/chats/{chat}/messages?after_seq=0", None),
    ("post", "/api/chats/{chat}/messages", {"client_id": "sneaky", "text": "hi"}),
    ("post", "/api/chats/{chat}/read", {"up_to_seq": 1}),
    ("get", "/history/{chat}", None),
]


@pytest.mark.parametrize("kind", ["direct", "group"])
@pytest.mark.parametrize("method,path,payload", ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_non_member_gets_same_404_as_missing_chat(api, alice, bob, stranger, kind, method, path, payload):
    """A chat the caller is not in answers 404 {"code": "not_found"} byte-for-byte like a missing chat; nothing changes."""
    chat = direct(alice, bob) if kind == "direct" else group(alice, bob)
    send(alice, chat)
    messages_before = list(Message.objects.values_list("id", flat=True))
    memberships_before = list(Membership.objects.values_list("id", "user_id", "role", "last_read_seq"))

    def call(chat_id):
        url = path.format(chat=chat_id, owner=alice.id)
        body = None
        if payload is not None:
            body = {k: (stranger.id if v == "{stranger}" else v) for k, v in payload.items()}
        return getattr(api(stranger), method)(url, body, format="json")

    foreign = call(chat.id)
    missing = call(chat.id + 10_000)
    huge = call(2**63)
    assert foreign.status_code == 404
    assert foreign.json()["code"] == "not_found"
    assert foreign.content == missing.content == huge.content
    assert missing.status_code == huge.status_code == 404

    assert list(Message.objects.values_list("id", flat=True)) == messages_before
    assert list(Membership.objects.values_list("id", "user_id", "role", "last_read_seq")) == memberships_before
    assert refreshed(chat).title == ("Team" if kind == "group" else "")


@pytest.mark.parametrize("method,path,payload", ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_anonymous_gets_401_on_every_chat_endpoint(api, alice, bob, method, path, payload):
    """Without a token every chat endpoint answers 401 not_authenticated and changes nothing."""
    chat = group(alice, bob)
    body = {k: (bob.id if v == "{stranger}" else v) for k, v in payload.items()} if payload is not None else None
    response = getattr(api(), method)(path.format(chat=chat.id, owner=alice.id), body, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert chat.memberships.count() == 2 and refreshed(chat).last_seq == 1 and chat.title == "Team"


def test_removed_member_loses_access(api, alice, bob):
    """After being removed, a former member gets 404 on history and sends like any stranger."""
    chat = group(alice, bob)
    send(bob, chat)
    services.remove_member(actor_id=alice.id, chat_id=chat.id, user_id=bob.id)
    client = api(bob)
    assert client.get(f"/history/{chat.id}").status_code == 404
    response = client.post(f"/api/chats/{chat.id}/messages", {"client_id": "late", "text": "hi"}, format="json")
    assert response.status_code == 404
    assert not Message.objects.filter(client_id="late").exists()


# --- OpenAPI -----------------------------------------------------------------------

DOCUMENTED = {
    "/api/auth/register": {"post"},
    "/api/auth/token": {"post"},
    "/api/auth/token/refresh": {"post"},
    "/api/auth/logout": {"post"},
    "/api/users/me": {"get", "patch"},
    "/api/users": {"get"},
    "/api/chats": {"get", "post"},
    "/api/chats/{id}": {"get", "patch"},
    "/api/chats/{id}/members": {"post"},
    "/api/chats/{id}/members/{user_id}": {"delete"},
    "/api/chats/{id}/messages": {"get", "post"},
    "/api/chats/{id}/read": {"post"},
    "/history/{chat_id}": {"get"},
}


def test_openapi_schema_lists_every_endpoint_and_bearer_auth(api):
    """/api/schema/ is OpenAPI 3 with every endpoint, its errors, and bearer auth on protected ones."""
    response = api().get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert str(schema["openapi"]).startswith("3.")
    for path, methods in DOCUMENTED.items():
        assert path in schema["paths"], path
        assert methods <= set(schema["paths"][path]), (path, set(schema["paths"][path]))

    schemes = schema["components"]["securitySchemes"]
    bearer = [name for name, s in schemes.items() if s.get("type") == "http" and s.get("scheme") == "bearer"]
    assert bearer, schemes
    chats_get = schema["paths"]["/api/chats"]["get"]
    assert any(bearer[0] in requirement for requirement in chats_get["security"])
    assert "401" in chats_get["responses"]
    for path in ("/api/chats/{id}", "/api/chats/{id}/messages", "/api/chats/{id}/read", "/history/{chat_id}"):
        for operation in schema["paths"][path].values():
            assert "404" in operation["responses"], path
    for path, method in (
        ("/api/chats", "post"),
        ("/api/chats/{id}", "patch"),
        ("/api/chats/{id}/members", "post"),
        ("/api/chats/{id}/members/{user_id}", "delete"),
    ):
        assert {"403", "429"} <= set(schema["paths"][path][method]["responses"]), (path, method)
    register = schema["paths"]["/api/auth/register"]["post"]
    assert "400" in register["responses"] and "201" in register["responses"]


def test_swagger_ui_is_served(api):
    """/api/docs/ serves the Swagger UI page."""
    response = api().get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"swagger" in response.content.lower()
