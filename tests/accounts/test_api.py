"""REST contract of accounts: register, tokens, refresh rotation, logout, me, user search."""

from __future__ import annotations

import pytest
from rest_framework_simplejwt.token_blacklist.models import (
    BlacklistedToken,
    OutstandingToken,
)

from accounts.models import User
from tests.conftest import PASSWORD, refresh_token

pytestmark = pytest.mark.django_db

STRONG = "Purple-Otter-Tango-91"


def _token_pair(api, username: str, password: str = PASSWORD) -> dict:
    response = api().post("/api/auth/token", {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


# --- register ----------------------------------------------------------------------


def test_register_creates_user_and_returns_public_fields(api):
    """Registration returns 201 {id, username, email} and stores a usable, hashed password."""
    response = api().post(
        "/api/auth/register", {"username": "alice", "email": "alice@example.com", "password": STRONG}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    user = User.objects.get(username="alice")
    assert body == {"id": user.id, "username": "alice", "email": "alice@example.com", "who_can_add_me": "everybody"}
    assert user.password != STRONG and user.check_password(STRONG)
    assert user.is_active


def test_register_duplicate_username_in_other_case_is_a_field_error(api, make_user):
    """Usernames are unique regardless of case: "ALICE" after "alice" is a 400 on the username field."""
    make_user("alice")
    response = api().post(
        "/api/auth/register", {"username": "ALICE", "email": "other@example.com", "password": STRONG}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert set(body["detail"]) == {"username"}
    assert User.objects.filter(username__iexact="alice").count() == 1


def test_register_duplicate_email_is_a_field_error(api, make_user):
    """An email already in use (any case) is a 400 on the email field; no user is created."""
    make_user("alice", email="alice@example.com")
    response = api().post(
        "/api/auth/register", {"username": "bob", "email": "ALICE@example.com", "password": STRONG}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert "email" in body["detail"] and "username" not in body["detail"]
    assert not User.objects.filter(username="bob").exists()


@pytest.mark.parametrize("password", ["123", "password", "12345678901", "bobbybob1"])
def test_register_weak_password_is_a_password_field_error(api, password):
    """Short, common, numeric or username-like passwords are refused with errors on "password"."""
    response = api().post(
        "/api/auth/register", {"username": "bobbybob", "email": "bob@example.com", "password": password}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert isinstance(body["detail"]["password"], list) and body["detail"]["password"]
    assert not User.objects.filter(username="bobbybob").exists()


def test_register_missing_and_malformed_fields(api):
    """Missing fields and a malformed email are field errors in the common error shape."""
    response = api().post("/api/auth/register", {"username": "bad name!", "email": "nope"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert {"username", "email", "password"} <= set(body["detail"])
    assert User.objects.count() == 0


def test_register_invalid_json_is_400_invalid_json(api):
    """A body that is not JSON answers 400 with code invalid_json."""
    response = api().post("/api/auth/register", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"


# --- token -------------------------------------------------------------------------


def test_token_returns_access_and_refresh(api, make_user):
    """Correct credentials give 200 {access, refresh}; the access token authenticates /api/users/me."""
    user = make_user("alice")
    response = api().post("/api/auth/token", {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh"}
    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    me = client.get("/api/users/me")
    assert me.status_code == 200 and me.json()["id"] == user.id
    assert OutstandingToken.objects.filter(user=user).count() == 1


def test_token_username_is_case_insensitive(api, make_user):
    """Logging in with the username in another case works (usernames are case-insensitive)."""
    make_user("alice")
    assert set(_token_pair(api, "ALICE")) == {"access", "refresh"}


@pytest.mark.parametrize("username,password", [("alice", "wrong-password-1"), ("nobody", PASSWORD)])
def test_token_wrong_credentials_is_401(api, make_user, username, password):
    """A wrong password or unknown user answers 401 with a code, and issues no token."""
    make_user("alice")
    response = api().post("/api/auth/token", {"username": username, "password": password}, format="json")
    assert response.status_code == 401
    body = response.json()
    assert body["code"] and "detail" in body and "access" not in body
    assert OutstandingToken.objects.count() == 0


def test_token_inactive_user_is_401(api, make_user):
    """A deactivated account cannot obtain tokens."""
    make_user("alice", is_active=False)
    response = api().post("/api/auth/token", {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 401


def test_token_missing_fields_is_400(api):
    """Missing username/password is a validation error, not a 500."""
    response = api().post("/api/auth/token", {}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert {"username", "password"} <= set(body["detail"])


# --- refresh -----------------------------------------------------------------------


def test_refresh_rotates_and_old_refresh_is_refused(api, make_user):
    """Refresh returns a new {access, refresh}; the used refresh token is blacklisted and then 401."""
    user = make_user("alice")
    pair = _token_pair(api, "alice")
    response = api().post("/api/auth/token/refresh", {"refresh": pair["refresh"]}, format="json")
    assert response.status_code == 200
    new = response.json()
    assert set(new) == {"access", "refresh"}
    assert new["refresh"] != pair["refresh"]
    assert BlacklistedToken.objects.filter(token__user=user).count() == 1

    reused = api().post("/api/auth/token/refresh", {"refresh": pair["refresh"]}, format="json")
    assert reused.status_code == 401
    assert reused.json()["code"] == "token_not_valid"

    # The rotated refresh token still works, once.
    again = api().post("/api/auth/token/refresh", {"refresh": new["refresh"]}, format="json")
    assert again.status_code == 200


def test_refresh_with_garbage_or_access_token_is_401(api, make_user):
    """A malformed token, or an access token offered as refresh, is refused with 401."""
    make_user("alice")
    pair = _token_pair(api, "alice")
    for token in ("garbage", pair["access"]):
        response = api().post("/api/auth/token/refresh", {"refresh": token}, format="json")
        assert response.status_code == 401
        assert response.json()["code"] == "token_not_valid"


# --- logout ------------------------------------------------------------------------


def test_logout_blacklists_refresh_token(api, make_user):
    """Logout answers 204 and that refresh token is refused from then on (refresh and second logout)."""
    user = make_user("alice")
    pair = _token_pair(api, "alice")
    response = api().post("/api/auth/logout", {"refresh": pair["refresh"]}, format="json")
    assert response.status_code == 204
    assert response.content == b""
    assert BlacklistedToken.objects.filter(token__user=user).count() == 1

    refused = api().post("/api/auth/token/refresh", {"refresh": pair["refresh"]}, format="json")
    assert refused.status_code == 401
    assert refused.json()["code"] == "token_not_valid"
    again = api().post("/api/auth/logout", {"refresh": pair["refresh"]}, format="json")
    assert again.status_code == 401


def test_logout_only_revokes_that_token(api, make_user):
    """Logging out one device leaves another device's refresh token usable."""
    user = make_user("alice")
    other_device = refresh_token(user)
    pair = _token_pair(api, "alice")
    assert api().post("/api/auth/logout", {"refresh": pair["refresh"]}, format="json").status_code == 204
    response = api().post("/api/auth/token/refresh", {"refresh": other_device}, format="json")
    assert response.status_code == 200


def test_logout_garbage_token_is_401(api):
    """Logout with a token that is not a valid refresh token answers 401 with a code; nothing is blacklisted."""
    response = api().post("/api/auth/logout", {"refresh": "garbage"}, format="json")
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "token_not_valid" and "detail" in body
    assert BlacklistedToken.objects.count() == 0


def test_logout_missing_refresh_is_400(api):
    """Logout without a refresh field is a validation error."""
    response = api().post("/api/auth/logout", {}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert "refresh" in response.json()["detail"]


# --- me and search -----------------------------------------------------------------


def test_me_returns_caller(api, make_user):
    """GET /api/users/me returns the caller's {id, username, email, who_can_add_me}."""
    user = make_user("alice")
    response = api(user).get("/api/users/me")
    assert response.status_code == 200
    assert response.json() == {"id": user.id, "username": "alice", "email": user.email, "who_can_add_me": "everybody"}


def test_search_is_case_insensitive_prefix_and_excludes_caller(api, make_user):
    """?search= matches a username prefix in any case, excludes the caller and leaks no email."""
    caller = make_user("Zed")
    zara = make_user("zara")
    zoe = make_user("ZOE")
    make_user("alzahra")  # contains "z" but does not start with it
    response = api(caller).get("/api/users", {"search": "Z"})
    assert response.status_code == 200
    body = response.json()
    assert [u["id"] for u in body] == [zara.id, zoe.id]
    assert all(set(u) == {"id", "username"} for u in body)
    assert api(caller).get("/api/users", {"search": "zA"}).json() == [{"id": zara.id, "username": "zara"}]


def test_search_returns_at_most_20(api, make_user):
    """Search answers at most 20 users."""
    caller = make_user("caller")
    for i in range(25):
        make_user(f"match{i:02d}")
    response = api(caller).get("/api/users", {"search": "match"})
    assert response.status_code == 200
    body = response.json()
    assert len(body) == 20
    assert len({u["id"] for u in body}) == 20
    assert all(u["username"].startswith("match") for u in body)


def test_search_skips_inactive_users(api, make_user):
    """Deactivated users are not found."""
    caller = make_user("caller")
    make_user("ghost", is_active=False)
    assert api(caller).get("/api/users", {"search": "gho"}).json() == []


@pytest.mark.parametrize(
    "method,path",
    [("get", "/api/users/me"), ("get", "/api/users"), ("get", "/api/chats"), ("get", "/history/1")],
)
def test_unauthenticated_is_401(api, method, path):
    """Without a token, protected endpoints answer 401 {"code": "not_authenticated"}."""
    response = getattr(api(), method)(path)
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "not_authenticated" and body["detail"]


def test_bad_bearer_token_is_401(api):
    """A malformed or foreign-signed bearer token answers 401 with a code, never 500."""
    client = api()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-jwt")
    response = client.get("/api/users/me")
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_refresh_token_is_not_an_access_token(api, make_user):
    """A refresh token presented as a bearer access token is refused."""
    user = make_user("alice")
    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {refresh_token(user)}")
    response = client.get("/api/users/me")
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"
