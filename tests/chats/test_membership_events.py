"""Event order and bookkeeping around member changes, and the edges of the socket router."""

from __future__ import annotations

from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chats import services
from chats.models import Membership
from tests.conftest import receive_until, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)


async def test_added_member_hears_chat_created_before_its_first_message(make_user):
    """A new member's sockets get chat.created first, then the system message about them."""
    owner = await database_sync_to_async(make_user)()
    newcomer = await database_sync_to_async(make_user)()
    chat = await database_sync_to_async(services.create_group)(user_id=owner.id, title="g", member_ids=[])
    ws = await ws_connect(newcomer)
    await database_sync_to_async(services.add_member)(actor_id=owner.id, chat_id=chat.id, user_id=newcomer.id)
    created = await ws.receive_json_from(timeout=5)
    assert created["type"] == "chat.created"
    assert created["chat"]["id"] == chat.id and created["chat"]["last_seq"] == 2
    assert created["chat"]["unread_count"] == 0
    message = await ws.receive_json_from(timeout=5)
    assert message["type"] == "message.new" and message["message"]["kind"] == "system"
    assert message["message"]["seq"] == 2
    await ws.disconnect()


async def test_owner_leaving_announces_the_new_owner(make_user):
    """When the owner leaves, remaining members learn who owns the group now."""
    owner = await database_sync_to_async(make_user)()
    admin = await database_sync_to_async(make_user)()
    member = await database_sync_to_async(make_user)()
    chat = await database_sync_to_async(services.create_group)(user_id=owner.id, title="g", member_ids=[member.id])
    await database_sync_to_async(services.add_member)(
        actor_id=owner.id, chat_id=chat.id, user_id=admin.id, role="admin"
    )
    ws = await ws_connect(member)
    await database_sync_to_async(services.remove_member)(actor_id=owner.id, chat_id=chat.id, user_id=owner.id)
    updated, _ = await receive_until(ws, "chat.member_updated")
    assert updated == {"type": "chat.member_updated", "chat_id": chat.id, "user_id": admin.id, "role": "owner"}
    role = await database_sync_to_async(lambda: Membership.objects.get(chat=chat, user=admin).role)()
    assert role == "owner"
    await ws.disconnect()


def test_the_actor_has_read_their_own_system_message(make_user):
    """Renaming or adding moves the actor's read watermark past the system message it creates."""
    owner, other, third = make_user(), make_user(), make_user()
    chat = services.create_group(user_id=owner.id, title="g", member_ids=[other.id])
    services.rename_group(user_id=owner.id, chat_id=chat.id, title="renamed")
    services.add_member(actor_id=owner.id, chat_id=chat.id, user_id=third.id)
    chat.refresh_from_db()
    assert Membership.objects.get(chat=chat, user=owner).last_read_seq == chat.last_seq == 3
    assert Membership.objects.get(chat=chat, user=other).last_read_seq == 1


@pytest.mark.parametrize("path", ["/nope/", "/ws", "/ws/extra/", "/"])
async def test_unknown_socket_path_closes_with_4404(path):
    """A socket on a path we do not serve is closed with 4404, not a server error."""
    from messenger.asgi import application

    communicator = WebsocketCommunicator(application, path)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4404}


def test_the_protocol_states_one_answer_for_other_socket_paths():
    """docs/PROTOCOL.md says what the test above pins, wherever it speaks of paths other than /ws/."""
    protocol = (Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md").read_text()
    section = protocol.split("## 5. WebSocket", 1)[1].split("\n## 6.", 1)[0]
    statements = [p for p in section.split("\n- ") if "other than `/ws/`" in p or "other path" in p]
    assert len(statements) >= 2, statements
    for statement in statements:
        assert "4404" in statement and "500" not in statement, statement


def test_swagger_ui_assets_are_served(client):
    """Swagger UI's own JavaScript is served by the app (daphne serves no static files)."""
    page = client.get("/api/docs/")
    assert page.status_code == 200
    asset = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert b"".join(asset.streaming_content)[:10]


def test_a_retry_of_a_stored_message_is_answered_even_when_rate_limited(make_user, settings):
    """Over the send limit, a repeat of an already stored client_id still gets the original back."""
    settings.SEND_RATE_LIMIT = 1
    settings.SEND_RATE_WINDOW_SECONDS = 3600
    alice, bob = make_user(), make_user()
    chat = services.open_direct_chat(user_id=alice.id, other_user_id=bob.id).chat
    first = services.send_message(user_id=alice.id, chat_id=chat.id, client_id="once", text="hi")
    again = services.send_message(user_id=alice.id, chat_id=chat.id, client_id="once", text="hi")
    assert again.duplicate is True and again.message.id == first.message.id
    from chats.exceptions import RateLimited

    with pytest.raises(RateLimited):
        services.send_message(user_id=alice.id, chat_id=chat.id, client_id="new", text="hi")


async def test_socket_router_serves_ws_under_a_root_path():
    """Behind a proxy that mounts the app under a prefix (ASGI root_path), /prefix/ws/ is the chat socket."""
    from runtime.routing import SocketRouter

    seen = []

    async def chat(scope, receive, send):
        seen.append("chat")

    async def unknown(scope, receive, send):
        seen.append("unknown")

    router = SocketRouter({"/ws/": chat}, fallback=unknown)
    for path, root_path in (
        ("/ws/", ""),
        ("/prefix/ws/", "/prefix"),
        ("/prefix/other/", "/prefix"),
        ("/ws/", "/prefix"),
    ):
        await router({"type": "websocket", "path": path, "root_path": root_path}, None, None)
    assert seen == ["chat", "chat", "unknown", "chat"]
