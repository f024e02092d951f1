"""Input rules that keep identities and texts honest, and the schema that states them.

* Usernames of new accounts come from a safe ASCII set; old accounts keep working.
* Text and titles made only of invisible characters are blank, on REST and on the socket.
* Strings are strings: a number is not turned into a username, title, text or client id.
* The schema states what the server enforces: the NUL ban, the direct/group shapes, the cursors.
* Every 401 code simplejwt can answer is in docs/PROTOCOL.md's error table.
"""

from __future__ import annotations

import uuid

import pytest
import yaml
from django.contrib.auth import get_user_model

from chats import services
from chats.models import Chat, Message
from tests.conftest import PASSWORD, access_token, ws_connect

from .test_bad_input import documented_error_codes, resolve

pytestmark = pytest.mark.django_db(transaction=True)

User = get_user_model()
STRONG = "Purple-Otter-Tango-91"
INVISIBLE = [
    "\u200b",
    "\u200b\u200c\u200d",
    "\ufeff\u2060",
    " \u202e \u2066",
    "\u3164\u3164",
    "\u2800",
    "\u034f\ufe0f",
    "\u00a0\u3000\u2028",
    "\U000e0041\U000e007f",
]


def _register(api, username):
    return api().post(
        "/api/auth/register",
        {"username": username, "email": f"{uuid.uuid4().hex[:8]}@example.com", "password": STRONG},
        format="json",
    )


# --- usernames ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "username",
    ["рaul", "paul\u200b", "ali\u202ece", "bob@home", "a+b", "émile", "ｆｕｌｌ", "name with space", "x" * 151],
)
def test_new_usernames_outside_the_safe_set_are_refused(api, username):
    """Cyrillic look-alikes, invisible and bidi characters, and symbols are not usernames; nothing is stored."""
    response = _register(api, username)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "validation_error" and "username" in response.json()["detail"]
    assert not User.objects.filter(email__iendswith="@example.com", username=username).exists()


@pytest.mark.parametrize("username", ["Paul", "p.a_u-l", "user2026"])
def test_safe_usernames_register_and_are_unique_regardless_of_case(api, username):
    assert _register(api, username).status_code == 201
    again = _register(api, username.upper())
    assert again.status_code == 400 and "username" in again.json()["detail"]


def test_an_existing_account_outside_the_safe_set_still_logs_in(api, make_user):
    """Accounts made before the rule (or by an admin) keep their names and log in."""
    user = make_user("émile@home")
    response = api().post("/api/auth/token", {"username": "ÉMILE@home", "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    assert api(user).get("/api/users/me").json()["username"] == "émile@home"


# --- invisible-only text and titles ---------------------------------------------------------------


@pytest.mark.parametrize("blank", INVISIBLE)
def test_invisible_only_text_and_titles_are_blank_over_rest(api, make_user, blank):
    alice, bob = make_user(), make_user()
    chat = services.create_group(user_id=alice.id, title="Team", member_ids=[bob.id])
    sent = api(alice).post(f"/api/chats/{chat.id}/messages", {"client_id": "c1", "text": blank}, format="json")
    assert sent.status_code == 400 and sent.json()["code"] == "validation_error", sent.content
    assert "text" in sent.json()["detail"]
    renamed = api(alice).patch(f"/api/chats/{chat.id}", {"title": blank}, format="json")
    assert renamed.status_code == 400 and "title" in renamed.json()["detail"], renamed.content
    created = api(alice).post("/api/chats", {"kind": "group", "title": blank}, format="json")
    assert created.status_code == 400 and "title" in created.json()["detail"], created.content
    assert Message.objects.filter(chat=chat).count() == 1  # the creation message only
    assert Chat.objects.get(id=chat.id).title == "Team"
    assert Chat.objects.filter(kind=Chat.Kind.GROUP).count() == 1


async def test_invisible_only_text_is_blank_over_the_socket(make_user):
    alice, bob = await _users(make_user)
    chat = await _group(alice, bob)
    communicator = await ws_connect(alice)
    for n, blank in enumerate(INVISIBLE):
        frame = {"type": "message.send", "ref": str(n), "chat_id": chat.id, "client_id": f"c{n}", "text": blank}
        await communicator.send_json_to(frame)
        reply = await communicator.receive_json_from(timeout=5)
        assert reply["type"] == "error" and reply["code"] == "validation_error", reply
        assert reply["detail"] == {"text": ["Must not be blank."]}
    await communicator.disconnect()
    assert await _message_count(chat.id) == 1


def test_visible_text_with_invisible_characters_is_kept_as_sent(api, make_user):
    alice, bob = make_user(), make_user()
    chat = services.create_group(user_id=alice.id, title="Team", member_ids=[bob.id])
    text = "\u200bhi\u200d\U0001f468\u200d\U0001f469"
    response = api(alice).post(f"/api/chats/{chat.id}/messages", {"client_id": "c1", "text": text}, format="json")
    assert response.status_code == 201 and response.json()["text"] == text


# --- strict strings --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [5, 0, 1.5, True])
def test_numbers_are_not_turned_into_strings(api, make_user, value):
    """A number where the schema says string is a validation_error naming the field, nothing stored."""
    alice, bob = make_user(), make_user()
    chat = services.create_group(user_id=alice.id, title="Team", member_ids=[bob.id])
    cases = [
        (api(), "post", "/api/auth/register", {"username": value, "email": "n@example.com", "password": STRONG}, "username"),
        (api(), "post", "/api/auth/register", {"username": "num", "email": "n@example.com", "password": value}, "password"),
        (api(), "post", "/api/auth/token", {"username": value, "password": PASSWORD}, "username"),
        (api(), "post", "/api/auth/token", {"username": alice.username, "password": value}, "password"),
        (api(), "post", "/api/auth/token/refresh", {"refresh": value}, "refresh"),
        (api(), "post", "/api/auth/logout", {"refresh": value}, "refresh"),
        (api(alice), "post", "/api/chats", {"kind": "group", "title": value}, "title"),
        (api(alice), "patch", f"/api/chats/{chat.id}", {"title": value}, "title"),
        (api(alice), "post", f"/api/chats/{chat.id}/messages", {"client_id": value, "text": "hi"}, "client_id"),
        (api(alice), "post", f"/api/chats/{chat.id}/messages", {"client_id": "c", "text": value}, "text"),
    ]  # fmt: skip
    for client, method, path, body, field in cases:
        response = getattr(client, method)(path, body, format="json")
        assert response.status_code == 400, (path, field, response.content)
        assert response.json()["code"] == "validation_error" and field in response.json()["detail"], response.content
    assert not User.objects.filter(username="num").exists()
    assert Message.objects.filter(chat=chat).count() == 1
    assert Chat.objects.get(id=chat.id).title == "Team"


# --- the schema states the rules ---------------------------------------------------------------


def test_the_schema_states_the_nul_ban_the_chat_shapes_and_the_cursors(api):
    schema = yaml.safe_load(api().get("/api/schema/").content)
    components = schema["components"]["schemas"]
    for name, field in [
        ("SendMessageRequest", "text"),
        ("SendMessageRequest", "client_id"),
        ("PatchedChatUpdateRequest", "title"),
        ("GroupChatCreateRequest", "title"),
        ("TokenPairRequest", "password"),
        ("RefreshRequest", "refresh"),
    ]:
        spec = components[name]["properties"][field]
        # A field that may also be blank (a caption) is a oneOf: the pattern, or the empty string.
        patterns = [spec["pattern"]] if "pattern" in spec else [alt.get("pattern") for alt in spec["oneOf"]]
        assert "^[^\\u0000]*$" in patterns, (name, field)
    assert components["RegisterRequest"]["properties"]["username"]["pattern"] == "^[A-Za-z0-9._-]+$"

    create = schema["paths"]["/api/chats"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    shapes = components[create["$ref"].rsplit("/", 1)[1]]
    assert shapes["discriminator"]["propertyName"] == "kind"
    direct, group = (resolve(schema, ref) for ref in shapes["oneOf"])
    assert direct["required"] == ["kind", "user_id"] and resolve(schema, direct["properties"]["kind"])["enum"] == [
        "direct"
    ]
    assert set(group["required"]) == {"kind", "title"}
    assert resolve(schema, group["properties"]["kind"])["enum"] == ["group"]

    params = {p["name"]: p for p in schema["paths"]["/api/chats/{id}/messages"]["get"]["parameters"]}
    assert "Not together with before_seq" in params["after_seq"]["description"]
    assert "Not together with after_seq" in params["before_seq"]["description"]
    assert "exclusive" in params["after_seq"]["description"]


# --- 401 codes are documented ----------------------------------------------------------------------


def test_every_401_code_is_documented(api, make_user):
    """bad_authorization_header, user_inactive and user_not_found are in PROTOCOL §8."""
    user, gone = make_user(), make_user()
    token, gone_token = access_token(user), access_token(gone)
    gone.delete()
    seen = {}
    for header in (f"Bearer {token} extra", "Bearer"):
        seen[header] = api().get("/api/users/me", HTTP_AUTHORIZATION=header)
    User.objects.filter(id=user.id).update(is_active=False)
    seen["inactive"] = api().get("/api/users/me", HTTP_AUTHORIZATION=f"Bearer {token}")
    seen["deleted"] = api().get("/api/users/me", HTTP_AUTHORIZATION=f"Bearer {gone_token}")
    codes = {name: response.json()["code"] for name, response in seen.items()}
    assert all(response.status_code == 401 for response in seen.values()), codes
    assert codes == {
        f"Bearer {token} extra": "bad_authorization_header",
        "Bearer": "bad_authorization_header",
        "inactive": "user_inactive",
        "deleted": "user_not_found",
    }
    assert set(codes.values()) <= documented_error_codes()


# --- helpers ---------------------------------------------------------------------------------------


async def _users(make_user):
    from channels.db import database_sync_to_async

    return await database_sync_to_async(lambda: (make_user(), make_user()))()


async def _group(alice, bob):
    from channels.db import database_sync_to_async

    return await database_sync_to_async(
        lambda: services.create_group(user_id=alice.id, title="Team", member_ids=[bob.id])
    )()


async def _message_count(chat_id):
    from channels.db import database_sync_to_async

    return await database_sync_to_async(lambda: Message.objects.filter(chat_id=chat_id).count())()
