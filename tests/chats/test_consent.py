"""Who can add me to groups: a user's ``who_can_add_me`` (everybody / contacts / nobody), read and
changed on /api/users/me, decides whether others may create a group with them or add them."""

from __future__ import annotations

import pytest

from accounts.models import User
from chats import services
from chats.models import Chat, Membership, Message


def set_policy(api, user, policy: str) -> None:
    response = api(user).patch("/api/users/me", {"who_can_add_me": policy}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["who_can_add_me"] == policy


@pytest.mark.django_db
def test_the_setting_is_read_and_changed_on_users_me(api, make_user):
    """Everybody by default; PATCH changes it and answers the account; a bad value is a 400."""
    user = make_user()
    client = api(user)
    assert client.get("/api/users/me").json() == {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "who_can_add_me": "everybody",
    }
    set_policy(api, user, "contacts")
    assert User.objects.get(id=user.id).who_can_add_me == "contacts"
    assert client.get("/api/users/me").json()["who_can_add_me"] == "contacts"
    bad = client.patch("/api/users/me", {"who_can_add_me": "friends"}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "validation_error"
    assert "who_can_add_me" in bad.json()["detail"]
    assert client.patch("/api/users/me", {}, format="json").json()["who_can_add_me"] == "contacts"
    assert User.objects.get(id=user.id).who_can_add_me == "contacts"
    assert api().patch("/api/users/me", {"who_can_add_me": "nobody"}, format="json").status_code == 401


@pytest.mark.django_db
def test_nobody_cannot_be_put_in_a_group(api, make_user):
    """Creating a group with them, or adding them, is 403 privacy_restricted and writes nothing,
    even for someone they already share a chat with."""
    alice, bob, carol = make_user(), make_user(), make_user()
    set_policy(api, bob, "nobody")
    assert api(alice).post("/api/chats", {"kind": "direct", "user_id": bob.id}, format="json").status_code == 201
    created = api(alice).post(
        "/api/chats", {"kind": "group", "title": "g", "member_ids": [carol.id, bob.id]}, format="json"
    )
    assert created.status_code == 403
    assert created.json() == {
        "code": "privacy_restricted",
        "detail": f"These users do not allow you to add them to groups: [{bob.id}].",
    }
    assert not Chat.objects.filter(kind="group").exists()
    group = services.create_group(user_id=alice.id, title="g", member_ids=[carol.id])
    before = (Chat.objects.count(), Membership.objects.count(), Message.objects.count())
    added = api(alice).post(f"/api/chats/{group.id}/members", {"user_id": bob.id}, format="json")
    assert added.status_code == 403
    assert added.json() == {
        "code": "privacy_restricted",
        "detail": "This user does not allow you to add them to groups.",
    }
    assert (Chat.objects.count(), Membership.objects.count(), Message.objects.count()) == before
    # Direct chats are not groups: opening one is still allowed.
    assert api(carol).post("/api/chats", {"kind": "direct", "user_id": bob.id}, format="json").status_code == 201


@pytest.mark.django_db
def test_contacts_are_people_who_share_a_chat_with_them(api, make_user):
    """With ``contacts``, only someone who already shares a chat (direct or group) with the user
    may put them in a group."""
    dave, stranger, friend, groupmate, other = (make_user() for _ in range(5))
    services.open_direct_chat(user_id=friend.id, other_user_id=dave.id)
    services.create_group(user_id=other.id, title="shared", member_ids=[dave.id, groupmate.id])
    set_policy(api, dave, "contacts")

    refused = api(stranger).post("/api/chats", {"kind": "group", "title": "g", "member_ids": [dave.id]}, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "privacy_restricted"
    stranger_group = services.create_group(user_id=stranger.id, title="s", member_ids=[friend.id])
    added = api(stranger).post(f"/api/chats/{stranger_group.id}/members", {"user_id": dave.id}, format="json")
    assert added.status_code == 403 and added.json()["code"] == "privacy_restricted"

    for user in (friend, groupmate):
        response = api(user).post(
            "/api/chats", {"kind": "group", "title": "ok", "member_ids": [dave.id]}, format="json"
        )
        assert response.status_code == 201, response.content
        assert Membership.objects.filter(chat_id=response.json()["id"], user=dave).exists()
    friends_group = services.create_group(user_id=friend.id, title="f", member_ids=[stranger.id])
    response = api(friend).post(f"/api/chats/{friends_group.id}/members", {"user_id": dave.id}, format="json")
    assert response.status_code == 201, response.content
