"""Single sign-on against a real OpenID Connect provider process (tests/oidc.py).

The app side runs in Django's test client (its session cookie carries state, nonce and the PKCE
verifier between login and callback); the browser's trip to the provider is plain HTTP with
``requests``: the provider's authorization form is submitted for a subject, and the URL it
redirects to (our callback with code and state) is then opened in the test client. The code
exchange, discovery and key fetches are Authlib's real HTTP calls to the provider.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from unittest import mock
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from accounts import oidc, services
from accounts.exceptions import SsoError
from accounts.models import ExternalIdentity, SsoLoginCode, User, username_validator
from tests.live import free_port
from tests.oidc import CLIENT_ID, PROVIDER_NAME, OidcProvider

pytestmark = pytest.mark.django_db


def new_sub(prefix: str = "sub") -> str:
    """A subject no earlier test used (the provider process lives for the whole session)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sso(settings, oidc_provider: OidcProvider) -> OidcProvider:
    """SSO configured against the session's provider."""
    for name, value in oidc_provider.settings().items():
        setattr(settings, name, value)
    return oidc_provider


def start(client: Client) -> str:
    """GET /api/auth/sso/login: the provider's authorization URL it redirects to."""
    response = client.get("/api/auth/sso/login")
    assert response.status_code == 302, response.content
    return response["Location"]


def callback(client: Client, provider_redirect: str):
    """Open the callback URL the provider redirected to in the app's client."""
    parts = urlsplit(provider_redirect)
    assert parts.path == "/api/auth/sso/callback", provider_redirect
    return client.get(f"{parts.path}?{parts.query}")


def fragment(response, name: str) -> str | None:
    """The value of ``#name=`` in a redirect to the web client (``/#...``), or None."""
    assert response.status_code == 302, response.content
    location = response["Location"]
    assert location.startswith("/#"), location
    key, _, value = location[2:].partition("=")
    return unquote(value) if key == name else None


def sso_login(client: Client, provider: OidcProvider, sub: str, **claims):
    """The whole browser round trip for ``sub`` (with ``claims`` set at the provider): the callback's response."""
    if claims:
        provider.set_user(sub, **claims)
    return callback(client, provider.authorize(start(client), sub))


def sso_code(client: Client, provider: OidcProvider, sub: str, **claims) -> str:
    response = sso_login(client, provider, sub, **claims)
    code = fragment(response, "sso_code")
    assert code, response["Location"]
    return code


def exchange(client: Client, code: str):
    return client.post("/api/auth/sso/exchange", {"code": code}, content_type="application/json")


def login_user(provider: OidcProvider, sub: str, **claims) -> User:
    """Log in through SSO and exchange the code; the user the access token names."""
    client = Client()
    response = exchange(client, sso_code(client, provider, sub, **claims))
    assert response.status_code == 200, response.content
    return User.objects.get(id=AccessToken(response.json()["access"])["user_id"])


# --- the endpoints -----------------------------------------------------------------------------------


def test_sso_config_names_the_provider_and_the_login_url(sso, api):
    """GET /api/auth/sso tells the web client to show "Sign in with <provider>"."""
    response = api().get("/api/auth/sso")
    assert response.status_code == 200
    assert response.json() == {"enabled": True, "provider": PROVIDER_NAME, "login_url": "/api/auth/sso/login"}


def test_login_redirects_to_the_provider_with_pkce_state_and_nonce(sso):
    """The authorization request is the code flow with a PKCE S256 challenge, a state and a
    nonce, for our client id and callback; the verifier stays server-side, in the session."""
    client = Client()
    location = start(client)
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == sso.issuer and parts.path == "/oauth2/authorize"
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == "http://testserver/api/auth/sso/callback"
    assert set(query["scope"].split()) == {"openid", "email", "profile"}
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) >= 43
    assert len(query["state"]) >= 20 and len(query["nonce"]) >= 20
    assert "code_verifier" not in query
    stored = client.session[f"_state_oidc_{query['state']}"]["data"]
    assert stored["nonce"] == query["nonce"] and len(stored["code_verifier"]) >= 43


def test_first_login_creates_the_user_and_the_exchange_gives_a_session(sso):
    """First login: a user named from preferred_username with the verified email, no usable
    password, an ExternalIdentity (iss, sub); the one-time code becomes the same token pair as a
    password login, stored only as its SHA-256."""
    sub = new_sub()
    client = Client()
    code = sso_code(client, sso, sub, preferred_username="Zoë Smith", email=f"{sub}@example.com", email_verified=True)
    user = User.objects.get(external_identities__subject=sub)
    assert user.username == "Zoe-Smith"
    assert user.email == f"{sub}@example.com"
    assert not user.has_usable_password() and user.is_active
    identity = ExternalIdentity.objects.get(subject=sub)
    assert (identity.issuer, identity.user_id) == (sso.issuer, user.id)
    assert not Session.objects.exists()  # the login's state was all the session held: gone with it
    stored = SsoLoginCode.objects.get(user=user)
    assert stored.code_hash != code and len(stored.code_hash) == 64 and stored.used_at is None

    response = exchange(client, code)
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"access", "refresh"}
    me = client.get("/api/users/me", HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    assert me.status_code == 200 and me.json()["username"] == "Zoe-Smith"
    refreshed = client.post("/api/auth/token/refresh", {"refresh": body["refresh"]}, content_type="application/json")
    assert refreshed.status_code == 200
    assert SsoLoginCode.objects.get(user=user).used_at is not None  # spent, kept until it expires


def test_the_callback_redirect_carries_no_token(sso):
    """Tokens never travel in a URL: the callback's redirect holds only the one-time code."""
    response = sso_login(Client(), sso, new_sub())
    location = response["Location"]
    assert location.startswith("/#sso_code=") and "eyJ" not in location
    assert response["Cache-Control"] == "no-store"


def test_second_login_with_the_same_subject_is_the_same_user(sso):
    sub = new_sub()
    first = login_user(sso, sub, preferred_username="repeat", email=f"{sub}@example.com", email_verified=True)
    before = ExternalIdentity.objects.get(subject=sub).last_login_at
    # The provider now says something else about the account: the user is still found by (iss, sub).
    second = login_user(sso, sub, preferred_username="renamed", email=f"other-{sub}@example.com", email_verified=True)
    assert second.id == first.id and second.username == first.username
    assert ExternalIdentity.objects.filter(subject=sub).count() == 1
    assert ExternalIdentity.objects.get(subject=sub).last_login_at > before
    assert User.objects.filter(username__istartswith="renamed").count() == 0


def test_same_email_with_another_subject_is_another_user(sso, make_user):
    """No linking by email: a provider account whose (verified) email a user already has is a new
    user, without that email; the existing user is not logged in."""
    existing = make_user("emailowner", email="shared@example.com")
    sub = new_sub()
    user = login_user(sso, sub, preferred_username="newcomer", email="shared@example.com", email_verified=True)
    assert user.id != existing.id
    assert user.email == ""
    other = login_user(sso, new_sub(), preferred_username="third", email="SHARED@example.com", email_verified=True)
    assert other.id not in (existing.id, user.id) and other.email == ""
    assert not ExternalIdentity.objects.filter(user=existing).exists()


def test_unverified_email_is_not_taken(sso):
    sub = new_sub()
    unverified = login_user(sso, sub, preferred_username="unverified", email=f"{sub}@example.com", email_verified=False)
    assert unverified.email == ""
    absent = login_user(sso, new_sub(), preferred_username="noflag", email=f"noflag-{sub}@example.com")
    assert absent.email == ""
    # Two users without an email do not collide: only a non-empty email is unique.
    assert User.objects.filter(email="", id__in=[unverified.id, absent.id]).count() == 2


def test_username_collision_is_suffixed(sso, make_user):
    """A taken name (any case) gets -2, -3, ...; the existing user is untouched."""
    make_user("Collide")
    first = login_user(sso, new_sub(), preferred_username="collide")
    second = login_user(sso, new_sub(), preferred_username="collide")
    assert (first.username, second.username) == ("collide-2", "collide-3")


@pytest.mark.parametrize(
    "claims, expected",
    [
        ({"preferred_username": "  ann.lee "}, "ann.lee"),
        ({"preferred_username": "\u0440avel"}, "avel"),  # Cyrillic er dropped, not a look-alike
        ({"preferred_username": "a b@c/d"}, "a-b-c-d"),
        ({"preferred_username": "\u202eevil\u200b"}, "evil"),
        ({"preferred_username": "", "email": "mail.part+tag@example.com"}, "mail.part-tag"),
        ({"preferred_username": "日本語", "email": "жж@example.com"}, None),  # falls back to the sub
    ],
)
def test_usernames_are_sanitised_to_the_username_rule(sso, claims, expected):
    sub = new_sub("fallback")
    user = login_user(sso, sub, **claims)
    assert user.username == (expected or sub)
    username_validator(user.username)


def test_parallel_first_logins_of_one_account_make_one_user(transactional_db):
    """Two callbacks of one new provider account at once (separate connections): one user, one
    identity, and both logins are that user (the unique (issuer, subject) decides)."""
    claims = {"iss": "https://id.example.com", "sub": new_sub("race"), "preferred_username": "racer"}
    barrier, users = threading.Barrier(2), []

    def sign_in():
        barrier.wait()
        try:
            users.append(services.sign_in_with_identity(claims=claims).id)
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_in) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(users) == 2 and users[0] == users[1]
    assert ExternalIdentity.objects.filter(subject=claims["sub"]).count() == 1
    assert User.objects.filter(username__istartswith="racer").count() == 1


def test_an_overlong_subject_is_refused():
    with pytest.raises(SsoError):
        services.sign_in_with_identity(claims={"iss": "https://id.example.com", "sub": "x" * 256})
    assert not ExternalIdentity.objects.exists()


# --- failures: nothing logged in, nothing created -----------------------------------------------------


def _counts():
    return User.objects.count(), ExternalIdentity.objects.count(), SsoLoginCode.objects.count()


def test_bad_state_is_refused_and_creates_nothing(sso):
    """A callback whose state this browser never started (a forged or cross-browser answer) is
    sso_state_mismatch, and the provider's code is not even redeemed."""
    sub = new_sub()
    victim, attacker = Client(), Client()
    redirect = sso.authorize(start(attacker), sub)
    before = _counts()
    assert fragment(callback(victim, redirect), "sso_error") == "sso_state_mismatch"
    tampered = redirect.replace("state=", "state=x")
    assert fragment(callback(attacker, tampered), "sso_error") == "sso_state_mismatch"
    assert fragment(Client().get("/api/auth/sso/callback?code=abc"), "sso_error") == "sso_state_mismatch"
    assert _counts() == before
    assert not ExternalIdentity.objects.filter(subject=sub).exists()


def test_a_callback_cannot_be_replayed(sso):
    """The session's state is used up by its callback: the same answer again is a state mismatch."""
    client = Client()
    redirect = sso.authorize(start(client), new_sub())
    assert fragment(callback(client, redirect), "sso_code")
    assert fragment(callback(client, redirect), "sso_error") == "sso_state_mismatch"


def test_denied_at_the_provider_is_sso_denied(sso):
    """The provider's error answer (RFC 6749 §4.1.2.1) for this browser's state: sso_denied for
    access_denied, sso_failed for any other error; nothing created either way. (oidc-provider-mock's
    Deny button answers without the state, which RFC 6749 requires: that answer belongs to no login
    and is sso_state_mismatch. The compliant answer is therefore written out here, with the state
    of a real authorization request.)"""
    before = _counts()
    client = Client()
    assert fragment(callback(client, sso.deny(start(client))), "sso_error") == "sso_state_mismatch"
    for error, expected in (("access_denied", "sso_denied"), ("server_error", "sso_failed")):
        client = Client()
        state = parse_qs(urlsplit(start(client)).query)["state"][0]
        answer = f"http://testserver/api/auth/sso/callback?error={error}&state={state}"
        assert fragment(callback(client, answer), "sso_error") == expected
    assert _counts() == before


def test_replayed_exchange_code_is_invalid(sso):
    client = Client()
    code = sso_code(client, sso, new_sub())
    assert exchange(client, code).status_code == 200
    replay = exchange(client, code)
    assert replay.status_code == 400
    assert replay.json() == {
        "code": "invalid_sso_code",
        "detail": "The sign-on code is unknown, expired or already used.",
    }
    unknown = exchange(client, "not-a-code")
    assert (unknown.status_code, unknown.json()["code"]) == (400, "invalid_sso_code")


@pytest.mark.django_db(transaction=True)
def test_parallel_exchanges_of_one_code_give_one_session(sso):
    """Race-safe single use: of parallel exchanges of one code (separate connections) exactly one wins."""
    code = sso_code(Client(), sso, new_sub())
    results: list[int] = []
    barrier = threading.Barrier(4)

    def redeem():
        barrier.wait()
        try:
            results.append(exchange(Client(), code).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=redeem) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [200, 400, 400, 400]


def test_expired_exchange_code_is_invalid(sso):
    """The code lives SSO_LOGIN_CODE_SECONDS (60 s): a minute and a second later it is refused."""
    client = Client()
    code = sso_code(client, sso, new_sub())
    later = timezone.now() + timedelta(seconds=61)
    with mock.patch("accounts.services.timezone.now", return_value=later):
        response = exchange(client, code)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_sso_code")
    assert SsoLoginCode.objects.get().used_at is None


def test_deactivated_user_cannot_log_in_with_sso(sso):
    """Deactivated: the callback says account_disabled and hands out no code; deactivated between
    callback and exchange: the exchange is refused."""
    sub = new_sub()
    user = login_user(sso, sub)
    services.set_active(user=user, active=False)
    client = Client()
    before = SsoLoginCode.objects.count()
    assert fragment(sso_login(client, sso, sub), "sso_error") == "account_disabled"
    assert SsoLoginCode.objects.count() == before

    services.set_active(user=user, active=True)
    code = sso_code(client, sso, sub)
    services.set_active(user=user, active=False)
    response = exchange(client, code)
    assert (response.status_code, response.json()["code"]) == (403, "account_disabled")


def test_expired_id_token_is_refused(settings, expired_oidc_provider: OidcProvider, caplog):
    """A provider whose ID tokens are already expired (exp ten minutes ago, past the leeway): the
    full flow ends in sso_failed, and no user is created. The refusal is Authlib's exp check."""
    for name, value in expired_oidc_provider.settings().items():
        setattr(settings, name, value)
    sub = new_sub()
    before = _counts()
    response = sso_login(Client(), expired_oidc_provider, sub)
    assert fragment(response, "sso_error") == "sso_failed"
    assert _counts() == before
    assert "expired" in caplog.text.lower()


def test_id_token_for_another_audience_is_refused(sso):
    """An ID token the provider signed for another client (aud = "someone-else") fails our
    verification. The provider issues ``aud`` = the client id of the authorization request, so
    our own flow cannot be made to receive one: the token is obtained by driving the provider
    as that other client, then given to the same verification the callback uses
    (``oidc.verify_id_token``: Authlib, the provider's JWKS). The same call accepts the same
    provider's token for our client id, so it is the audience that is refused."""
    sub = new_sub()
    foreign = sso.token_response(sub=sub, client_id="someone-else", nonce="nonce-1")
    with pytest.raises(SsoError) as refused:
        oidc.verify_id_token(token=foreign, nonce="nonce-1")
    assert "aud" in str(refused.value.__cause__), repr(refused.value.__cause__)
    ours = sso.token_response(sub=sub, client_id=CLIENT_ID, nonce="nonce-2")
    claims = oidc.verify_id_token(token=ours, nonce="nonce-2")
    assert (claims["sub"], claims["iss"]) == (sub, sso.issuer)
    assert claims["aud"] in (CLIENT_ID, [CLIENT_ID])
    with pytest.raises(SsoError):  # and the nonce must be this login's
        oidc.verify_id_token(token=ours, nonce="another-nonce")
    with pytest.raises(SsoError):  # and the signature the provider's (one character of it changed)
        head, payload, signature = ours["id_token"].split(".")
        forged = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
        oidc.verify_id_token(token={**ours, "id_token": f"{head}.{payload}.{forged}"}, nonce="nonce-2")


def test_unreachable_provider_is_sso_unavailable(settings, sso):
    settings.OIDC_ISSUER = f"http://127.0.0.1:{free_port()}"
    assert fragment(Client().get("/api/auth/sso/login"), "sso_error") == "sso_unavailable"


# --- without a provider ------------------------------------------------------------------------------


@pytest.fixture
def no_sso(settings):
    settings.OIDC_ISSUER = settings.OIDC_CLIENT_ID = settings.OIDC_CLIENT_SECRET = ""


def test_disabled_sso_answers(no_sso, api, make_user):
    """No provider configured: the config says so, login and callback redirect with sso_disabled,
    and the exchange is 404 sso_disabled."""
    assert api().get("/api/auth/sso").json() == {"enabled": False, "provider": None, "login_url": None}
    client = Client()
    assert fragment(client.get("/api/auth/sso/login"), "sso_error") == "sso_disabled"
    assert fragment(client.get("/api/auth/sso/callback?code=x&state=y"), "sso_error") == "sso_disabled"
    user = make_user()
    SsoLoginCode.objects.create(
        code_hash=services._code_hash("leftover"), user=user, expires_at=timezone.now() + timedelta(seconds=60)
    )
    response = exchange(client, "leftover")
    assert response.status_code == 404
    assert response.json() == {"code": "sso_disabled", "detail": "Single sign-on is not configured on this server."}


def test_exchange_validates_its_body(sso):
    client = Client()
    for body in ({}, {"code": 5}, {"code": ""}, {"code": "x" * 129}):
        response = client.post("/api/auth/sso/exchange", body, content_type="application/json")
        assert (response.status_code, response.json()["code"]) == (400, "validation_error"), body


def test_the_sso_endpoints_are_in_the_openapi_schema_without_auth(api):
    import yaml

    schema = yaml.safe_load(api().get("/api/schema/").content)
    paths = schema["paths"]
    assert set(paths["/api/auth/sso"]) == {"get"}
    assert "302" in paths["/api/auth/sso/login"]["get"]["responses"]
    assert "Location" in paths["/api/auth/sso/callback"]["get"]["responses"]["302"]["headers"]
    exchange_op = paths["/api/auth/sso/exchange"]["post"]
    assert {"200", "400", "403", "404", "429"} <= set(exchange_op["responses"])
    for path in ("/api/auth/sso", "/api/auth/sso/login", "/api/auth/sso/callback", "/api/auth/sso/exchange"):
        for operation in paths[path].values():
            assert operation.get("security") in (None, [{}], []), (path, operation.get("security"))
