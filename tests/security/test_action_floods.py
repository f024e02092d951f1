"""Flooding state changes: every write that stores a message or fans out an event is limited per
user, the same way as sends (chats/services/limits.py), and shared by every process.

One flood per action through the REST API: LIMIT actions in a window pass, the next one is
429 ``rate_limited`` with ``retry_after`` (and ``Retry-After``) and writes nothing. Then the
same through two server processes taking turns, which share the count through Redis.
"""

from __future__ import annotations

import itertools
import time
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY

from chats import services
from chats.models import Chat, Membership, Message
from runtime import limits as runtime_limits

LIMIT = 4
# Windows of their own (fixed windows start at multiples of their length): rate-limit keys are
# per user id, and ids repeat across tests that flush the database.
_windows = itertools.count(1_000_033, 2)


@pytest.fixture
def limited(settings):
    """Arm the chat-change limit at LIMIT per window; a function, so setup runs unlimited."""

    def arm() -> int:
        settings.CHAT_CHANGE_RATE_LIMIT = LIMIT
        settings.CHAT_CHANGE_RATE_WINDOW_SECONDS = next(_windows)
        return settings.CHAT_CHANGE_RATE_WINDOW_SECONDS

    return arm


def _group(owner, *members, title="flood"):
    return services.create_group(user_id=owner.id, title=title, member_ids=[m.id for m in members])


def rename(api, make_user):
    owner = make_user()
    chat = _group(owner, make_user())
    client = api(owner)
    return lambda i: client.patch(f"/api/chats/{chat.id}", {"title": f"title {i}"}, format="json")


def add_then_remove(api, make_user):
    """The issue's flood: the same member added and removed, over and over."""
    owner, target = make_user(), make_user()
    chat = _group(owner, make_user())
    client = api(owner)

    def act(i):
        if i % 2 == 0:
            return client.post(f"/api/chats/{chat.id}/members", {"user_id": target.id}, format="json")
        return client.delete(f"/api/chats/{chat.id}/members/{target.id}")

    return act


def leave(api, make_user):
    user, owner = make_user(), make_user()
    chats = [_group(owner, user) for _ in range(LIMIT + 1)]
    client = api(user)
    return lambda i: client.delete(f"/api/chats/{chats[i].id}/members/{user.id}")


def create_group(api, make_user):
    """The issue's flood: new groups, each with the same (willing) user in it."""
    user, victim = make_user(), make_user()
    client = api(user)
    return lambda i: client.post(
        "/api/chats", {"kind": "group", "title": f"g{i}", "member_ids": [victim.id]}, format="json"
    )


def open_direct(api, make_user):
    user = make_user()
    others = [make_user() for _ in range(LIMIT + 1)]
    client = api(user)
    return lambda i: client.post("/api/chats", {"kind": "direct", "user_id": others[i].id}, format="json")


ACTIONS = [rename, add_then_remove, leave, create_group, open_direct]


def _refusals() -> float:
    return REGISTRY.get_sample_value("messenger_rate_limited_total", {"limit": "chat_change"})


def _state():
    return Chat.objects.count(), Membership.objects.count(), Message.objects.count()


@pytest.mark.django_db
@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: a.__name__)
def test_the_action_after_the_limit_is_rate_limited_and_writes_nothing(action, api, make_user, limited):
    """LIMIT actions in a window pass; the next is 429 rate_limited with retry_after and
    Retry-After, and stores no chat, member or (system) message."""
    act = action(api, make_user)
    window = limited()
    for i in range(LIMIT):
        response = act(i)
        assert response.status_code in (200, 201, 204), (i, response.status_code, response.content)
    before, refusals = _state(), _refusals()
    refused = act(LIMIT)
    assert refused.status_code == 429, refused.content
    assert _refusals() == refusals + 1
    body = refused.json()
    assert body["code"] == "rate_limited"
    assert body["detail"] == f"At most {LIMIT} chat changes per {window} s."
    assert 0 < body["retry_after"] <= window
    assert int(refused["Retry-After"]) >= 1
    assert _state() == before


@pytest.mark.django_db
def test_the_limit_is_per_user(api, make_user, limited):
    """One user's flood does not refuse another user's changes."""
    act = rename(api, make_user)
    limited()
    for i in range(LIMIT + 1):
        act(i)
    assert act(LIMIT + 1).status_code == 429
    other = rename(api, make_user)
    assert other(0).status_code == 200


@pytest.mark.django_db
def test_groups_per_day_are_capped(api, make_user, settings, monkeypatch):
    """GROUP_CREATE_DAILY_LIMIT groups a day; the next is 429 with retry_after up to the day's end.
    Invalid attempts do not use up the day."""
    # The limits' clock stands still at noon (UTC), so the test never straddles a day boundary.
    noon = (int(time.time()) // 86_400) * 86_400 + 43_200
    monkeypatch.setattr(runtime_limits, "time", SimpleNamespace(time=lambda: noon))
    settings.GROUP_CREATE_DAILY_LIMIT = 2
    user, other = make_user(), make_user()
    client = api(user)

    def create(**extra):
        return client.post(
            "/api/chats", {"kind": "group", "title": "g", "member_ids": [other.id], **extra}, format="json"
        )

    assert create(title=" ").status_code == 400
    assert create(member_ids=[999_999_999]).status_code == 400
    assert [create().status_code for _ in range(2)] == [201, 201]
    before = _state()
    refused = create()
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert refused.json()["detail"] == "At most 2 new groups per day."
    assert refused.json()["retry_after"] == 43_200
    assert _state() == before
    # Direct chats are not groups: still allowed.
    assert client.post("/api/chats", {"kind": "direct", "user_id": other.id}, format="json").status_code == 201


# --- two processes -----------------------------------------------------------------------------


def test_two_processes_share_every_chat_change_limit(start_server):
    """Renames, adds and removes sent alternately to two server processes count in one window
    (Redis), and so do group creations and the daily cap."""
    env = {
        "CHAT_CHANGE_RATE_LIMIT": str(LIMIT),
        "CHAT_CHANGE_RATE_WINDOW_SECONDS": str(next(_windows)),
        "GROUP_CREATE_DAILY_LIMIT": "3",
    }
    servers = [start_server("floods-a", **env), start_server("floods-b", **env)]
    a = servers[0]
    owner, member, target = (a.register() for _ in range(3))
    token = a.login(owner)["access"]

    status, chat = a.http(
        "POST", "/api/chats", {"kind": "group", "title": "t", "member_ids": [member["id"]]}, token=token
    )
    assert status == 201, chat
    members = f"/api/chats/{chat['id']}/members"
    # With the creation above, LIMIT (4) changes, taking turns between the processes.
    steps = [
        ("PATCH", f"/api/chats/{chat['id']}", {"title": "renamed"}, 200),
        ("POST", members, {"user_id": target["id"]}, 201),
        ("DELETE", f"{members}/{target['id']}", None, 204),
    ]
    for i, (method, path, body, expected) in enumerate(steps):
        status, answer = servers[(i + 1) % 2].http(method, path, body, token=token)
        assert status == expected, (i, status, answer)
    status, body = servers[0].http("POST", members, {"user_id": target["id"]}, token=token)
    assert status == 429 and body["code"] == "rate_limited" and body["retry_after"] > 0, body

    # The daily cap, alternating processes, for a user of their own.
    creator = a.register()
    creator_token = a.login(creator)["access"]
    created = [
        servers[i % 2].http(
            "POST", "/api/chats", {"kind": "group", "title": f"g{i}", "member_ids": [member["id"]]}, token=creator_token
        )
        for i in range(4)
    ]
    assert [status for status, _ in created[:3]] == [201, 201, 201], created
    status, body = created[3]
    assert status == 429 and body["detail"] == "At most 3 new groups per day.", created
