"""Authorization matrix: a chat the caller does not belong to is indistinguishable from a missing one.

The caller ("mallory") tries every REST operation that takes a chat id (enumerated from the
OpenAPI schema, so a new endpoint fails this test until it is added to the matrix) and every
socket frame type that takes a ``chat_id`` on: a direct chat of two other users, a group of
other users, a group mallory has left, a private channel she does not read, and an id that
does not exist. Every answer must be
byte-for-byte the answer for the missing id (404 ``not_found`` / an ``error`` frame with code
``not_found``), nothing in the database may change, and no event may reach mallory's other
socket or the victims' sockets.
"""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import (
    BlacklistedToken,
    OutstandingToken,
)

from chats import services
from chats.consumers import ChatConsumer
from chats.models import Chat, Membership, Message, MessageEdit, Reaction, Subscription
from tests.conftest import access_token, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async
MISSING = "missing"
TARGETS = ("direct", "group", "left_group", "private_channel", MISSING)
FOREIGN = TARGETS[:-1]

# Every documented operation that takes a chat id, with the requests mallory tries on it.
# {chat} is the target chat id, {victim}/{mallory}/{friend} user ids. Bodies are *valid*, so the
# access check itself is reached rather than input validation.
REST_MATRIX: dict[tuple[str, str], list[tuple[str, dict | None]]] = {
    ("GET", "/api/chats/{id}"): [("/api/chats/{chat}", None)],
    ("PATCH", "/api/chats/{id}"): [("/api/chats/{chat}", {"title": "pwned"})],
    ("POST", "/api/chats/{id}/members"): [
        ("/api/chats/{chat}/members", {"user_id": "{mallory}"}),
        ("/api/chats/{chat}/members", {"user_id": "{friend}", "role": "admin"}),
    ],
    ("DELETE", "/api/chats/{id}/members/{user_id}"): [
        ("/api/chats/{chat}/members/{victim}", None),
        ("/api/chats/{chat}/members/{mallory}", None),
    ],
    ("GET", "/api/chats/{id}/messages"): [
        ("/api/chats/{chat}/messages", None),
        ("/api/chats/{chat}/messages?after_seq=0&limit=200", None),
        ("/api/chats/{chat}/messages?before_seq=3", None),
    ],
    ("POST", "/api/chats/{id}/messages"): [("/api/chats/{chat}/messages", {"client_id": "{client_id}", "text": "hi"})],
    ("POST", "/api/chats/{id}/read"): [
        ("/api/chats/{chat}/read", {"up_to_seq": 1}),
        ("/api/chats/{chat}/read", {"up_to_seq": 2**62}),
    ],
    ("GET", "/history/{chat_id}"): [("/history/{chat}", None), ("/history/{chat}?limit=200&offset=0", None)],
    # Messages that change (issue 12).
    ("GET", "/api/chats/{id}/messages/{seq}"): [("/api/chats/{chat}/messages/1", None)],
    ("PATCH", "/api/chats/{id}/messages/{seq}"): [("/api/chats/{chat}/messages/1", {"text": "pwned"})],
    ("DELETE", "/api/chats/{id}/messages/{seq}"): [("/api/chats/{chat}/messages/1", None)],
    ("GET", "/api/chats/{id}/messages/{seq}/edits"): [("/api/chats/{chat}/messages/1/edits", None)],
    ("POST", "/api/chats/{id}/messages/delete"): [("/api/chats/{chat}/messages/delete", {"seqs": [1, 2]})],
    ("PUT", "/api/chats/{id}/messages/{seq}/reactions/{emoji}"): [
        ("/api/chats/{chat}/messages/2/reactions/%F0%9F%91%8D", None)
    ],
    ("DELETE", "/api/chats/{id}/messages/{seq}/reactions/{emoji}"): [
        ("/api/chats/{chat}/messages/2/reactions/%F0%9F%91%8D", None)
    ],
    ("PUT", "/api/chats/{id}/pins/{seq}"): [("/api/chats/{chat}/pins/2", None)],
    ("DELETE", "/api/chats/{id}/pins/{seq}"): [("/api/chats/{chat}/pins/2", None)],
    ("POST", "/api/chats/{id}/forward"): [
        ("/api/chats/{chat}/forward", {"from_chat_id": "{chat}", "seqs": [2], "client_ids": ["probe-forward"]}),
        ("/api/chats/{own}/forward", {"from_chat_id": "{chat}", "seqs": [2], "client_ids": ["probe-forward-own"]}),
    ],
    ("GET", "/api/chats/{id}/changes"): [
        ("/api/chats/{chat}/changes", None),
        ("/api/chats/{chat}/changes?after_version=0&limit=200", None),
    ],
    # Channels (issue 14): {post} is the id of the target chat's second message.
    ("POST", "/api/channels/{id}/subscription"): [
        ("/api/channels/{chat}/subscription", {}),
        ("/api/channels/{chat}/subscription", {"invite": "guess"}),
    ],
    ("DELETE", "/api/channels/{id}/subscription"): [("/api/channels/{chat}/subscription", None)],
    ("POST", "/api/posts/{id}/like"): [("/api/posts/{post}/like", None)],
    ("DELETE", "/api/posts/{id}/like"): [("/api/posts/{post}/like", None)],
}
# Undocumented methods on the same paths must not tell members' chats apart either.
REST_EXTRA = [("PUT", "/api/chats/{chat}", {"title": "x"}), ("DELETE", "/api/chats/{chat}", None)]

# Socket frame types that take a chat_id, with a valid frame of each type.
WS_MATRIX = {
    "message.send": {"client_id": "{client_id}", "text": "hi"},
    "message.read": {"up_to_seq": 1},
    "typing": {},
    "message.edit": {"seq": 1, "text": "pwned"},
    "message.delete": {"seqs": [1]},
    "reaction.add": {"seq": 2, "emoji": "👍"},
    "reaction.remove": {"seq": 2, "emoji": "👍"},
    "message.pin": {"seq": 2, "pinned": True},
    # Into the target, and from it into mallory's own chat.
    "message.forward": {"from_chat_id": "{chat}", "to_chat_id": "{chat}", "seqs": [2], "client_ids": ["p1"]},
    "message.forward.own": {"from_chat_id": "{chat}", "to_chat_id": "{own}", "seqs": [2], "client_ids": ["p2"]},
    "channel.watch": {},
}
WS_WITHOUT_CHAT = {"ping", "auth.refresh"}


def _fill(value, names: dict):
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}") and value[1:-1] in names:
            return names[value[1:-1]]
        return value.format(**names)
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


def _snapshot() -> dict:
    """Every row the matrix could conceivably touch."""
    user_model = get_user_model()
    return {
        model.__name__: list(model.objects.order_by("pk").values())
        for model in (
            Chat,
            Membership,
            Subscription,
            Message,
            Reaction,
            MessageEdit,
            user_model,
            OutstandingToken,
            BlacklistedToken,
        )
    }


@pytest.fixture
def world(make_user):
    """Victims' chats with history, and mallory, who belongs to none of them (any more)."""
    alice, bob, carol, mallory, friend = (make_user(n) for n in ("alice", "bob", "carol", "mallory", "friend"))
    direct = services.open_direct_chat(user_id=alice.id, other_user_id=bob.id).chat
    group = services.create_group(user_id=alice.id, title="secret", member_ids=[bob.id, carol.id])
    left = services.create_group(user_id=alice.id, title="was here", member_ids=[bob.id, mallory.id])
    for chat in (direct, group, left):
        for n in range(3):
            services.send_message(
                user_id=alice.id, chat_id=chat.id, client_id=f"seed-{chat.id}-{n}", text=f"secret {n}"
            )
    services.remove_member(actor_id=mallory.id, chat_id=left.id, user_id=mallory.id)
    channel = services.create_channel(user_id=alice.id, title="insiders")  # private: no handle
    services.subscribe(user_id=bob.id, chat_id=channel.id, invite=channel.invite_token)
    for n in range(2):
        services.send_message(user_id=alice.id, chat_id=channel.id, client_id=f"seed-post-{n}", text=f"secret post {n}")
    # Mallory's own chat with a friend: she is a legitimate user, just not of the victims' chats.
    own = services.open_direct_chat(user_id=mallory.id, other_user_id=friend.id).chat
    missing = max(Chat.objects.order_by("-id").values_list("id", flat=True)[:1] or [0]) + 1000
    return {
        "users": {"alice": alice, "bob": bob, "carol": carol, "mallory": mallory, "friend": friend},
        "chats": {
            "direct": direct.id,
            "group": group.id,
            "left_group": left.id,
            "private_channel": channel.id,
            MISSING: missing,
            "own": own.id,
        },
    }


def test_the_matrix_covers_every_chat_operation():
    """Every documented operation with a chat id and every chat frame type is in the matrix."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    documented = {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        if "{id}" in path.split("/")[3:4] or path.startswith("/history/")
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert documented == set(REST_MATRIX)
    assert set(ChatConsumer.HANDLERS) == {kind.removesuffix(".own") for kind in WS_MATRIX} | WS_WITHOUT_CHAT


def _rest_answers(client: APIClient, names: dict, chat_id: int) -> list[tuple]:
    post = Message.objects.filter(chat_id=chat_id, seq=2).values_list("id", flat=True).first()
    names = {
        **names,
        "chat": chat_id,
        "post": post or Message.objects.order_by("-id").values_list("id", flat=True)[0] + 1000,
    }
    answers = []
    requests = [(method, path, body) for (method, _), calls in REST_MATRIX.items() for path, body in calls]
    requests += REST_EXTRA
    for method, path, body in requests:
        url = _fill(path, names)
        response = getattr(client, method.lower())(url, _fill(body, names) if body is not None else None, format="json")
        answers.append((method, path, response.status_code, response.json()))
    return answers


def test_rest_foreign_chats_answer_exactly_like_a_missing_chat(world, settings):
    """Every REST operation on a foreign chat: 404 not_found identical to a missing id; no DB change."""
    settings.SEND_RATE_LIMIT = 0
    users, chats = world["users"], world["chats"]
    mallory = APIClient()
    mallory.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(users['mallory'])}")
    names = {
        "mallory": users["mallory"].id,
        "victim": users["bob"].id,
        "friend": users["friend"].id,
        "client_id": f"probe-{uuid.uuid4().hex}",
        "own": chats["own"],
    }
    before = _snapshot()
    expected = _rest_answers(mallory, names, chats[MISSING])
    for method, path, status, body in expected:
        if (method, path) in {(m, p) for m, p, _ in REST_EXTRA}:
            assert status == 405, (method, path, status, body)
        else:
            assert status == 404 and body["code"] == "not_found", (method, path, status, body)
    for target in FOREIGN:
        assert _rest_answers(mallory, names, chats[target]) == expected, target
    assert _snapshot() == before


async def test_socket_frames_on_foreign_chats_answer_exactly_like_a_missing_chat(world, settings):
    """Every chat frame on a foreign chat: error not_found identical to a missing id; no DB change,
    no event on mallory's other socket or on any victim's socket."""
    settings.SEND_RATE_LIMIT = 0
    users, chats = world["users"], world["chats"]
    before = await db(_snapshot)()
    mallory = await ws_connect(users["mallory"])
    mallory_other = await ws_connect(users["mallory"])
    victims = [await ws_connect(users[name]) for name in ("alice", "bob", "carol")]
    try:
        answers: dict[str, list[dict]] = {}
        for target in TARGETS:
            answers[target] = []
            for kind, extra in WS_MATRIX.items():
                names = {"client_id": f"probe-{kind}", "chat": chats[target], "own": chats["own"]}
                frame = {
                    "type": kind.removesuffix(".own"),
                    "chat_id": chats[target],
                    "ref": f"{kind}",
                    **_fill(extra, names),
                }
                await mallory.send_json_to(frame)
                reply = await mallory.receive_json_from(timeout=5)
                answers[target].append(reply)
        for reply in answers[MISSING]:
            assert reply["type"] == "error" and reply["code"] == "not_found", reply
        for target in FOREIGN:
            assert answers[target] == answers[MISSING], target

        # Barrier: a ping answered next proves nothing was queued for these sockets.
        for communicator in (mallory, mallory_other, *victims):
            await communicator.send_json_to({"type": "ping", "ref": "barrier"})
            assert await communicator.receive_json_from(timeout=5) == {"type": "pong", "ref": "barrier"}
            assert await communicator.receive_nothing(timeout=0.3)
    finally:
        for communicator in (mallory, mallory_other, *victims):
            await communicator.disconnect()
    assert await db(_snapshot)() == before


def test_chat_list_and_search_show_nothing_of_foreign_chats(world):
    """Mallory's chat list holds only her own chat; a left group is gone from it."""
    users, chats = world["users"], world["chats"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(users['mallory'])}")
    listed = client.get("/api/chats").json()
    assert len(listed) == 1
    assert not {chat["id"] for chat in listed} & {chats["direct"], chats["group"], chats["left_group"]}
