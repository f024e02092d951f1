"""A real OpenID Connect provider for tests: ``oidc-provider-mock`` (requirements-dev.txt) as its
own process on a free port of 127.0.0.1, one per test session. Nothing of Authlib or of our
code is patched: the app discovers it, redirects to it, exchanges codes with it and verifies its
RS256-signed ID tokens against its JWKS, over HTTP, as with any provider.

How the provider decides who logs in: its authorization endpoint shows a form with a ``sub``
field; submitting it (a POST to the same URL) authorizes that subject and redirects back with a
code. The subject's claims (``email``, ``email_verified``, ``preferred_username``, ...) are set
beforehand with ``PUT /users/<sub>`` (a JSON object); a subject never set gets
``{"email": <sub>}``. Any client id and secret are accepted, and the ID token's ``aud`` is the
client id of the authorization request.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from tests.live import ServerProcess

CLIENT_ID = "messenger-test"
CLIENT_SECRET = "messenger-test-secret"
PROVIDER_NAME = "Test ID"


def _discovers(port: int) -> bool:
    try:
        url = f"http://127.0.0.1:{port}/.well-known/openid-configuration"
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


@dataclass
class OidcProvider:
    server: ServerProcess

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def settings(self, **extra: str) -> dict[str, str]:
        """The OIDC_* settings (or environment) of a client of this provider."""
        return {
            "OIDC_ISSUER": self.issuer,
            "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_PROVIDER_NAME": PROVIDER_NAME,
            **extra,
        }

    def set_user(self, sub: str, **claims) -> None:
        """The claims the provider will put in ``sub``'s ID token (with the openid email profile scopes)."""
        response = requests.put(f"{self.issuer}/users/{quote(sub, safe='')}", json=claims, timeout=10)
        assert response.status_code == 204, response.text

    def authorize(self, authorization_url: str, sub: str) -> str:
        """Submit the provider's form for ``sub`` at ``authorization_url`` (the app's redirect);
        the URL it sends the browser back to (our callback with code and state)."""
        form = requests.get(authorization_url, timeout=10)
        assert form.status_code == 200 and 'name="sub"' in form.text, form.text[:2000]
        answer = requests.post(authorization_url, data={"sub": sub}, allow_redirects=False, timeout=10)
        assert answer.status_code == 302, answer.text[:2000]
        return answer.headers["Location"]

    def deny(self, authorization_url: str) -> str:
        answer = requests.post(authorization_url, data={"action": "deny"}, allow_redirects=False, timeout=10)
        assert answer.status_code == 302, answer.text[:2000]
        return answer.headers["Location"]

    def token_response(self, *, sub: str, client_id: str, nonce: str) -> dict:
        """A token response (``id_token``, ``access_token``, ...) the provider issues to ``client_id``
        for ``sub``: the whole code flow driven directly, as that client would."""
        redirect_uri = "http://127.0.0.1/elsewhere/callback"
        authorize = requests.Request(
            "GET",
            f"{self.issuer}/oauth2/authorize",
            params={
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "scope": "openid email profile",
                "state": "s",
                "nonce": nonce,
            },
        ).prepare()
        location = self.authorize(authorize.url, sub)
        code = parse_qs(urlsplit(location).query)["code"][0]
        response = requests.post(
            f"{self.issuer}/oauth2/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
            auth=(client_id, "any-secret"),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()


def _start(tmp_path_factory, name: str, *extra: str) -> ServerProcess:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    server = ServerProcess(
        tmp_path_factory.mktemp(name) / "provider.log",
        env,
        lambda port: [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(port), *extra],
        ready=_discovers,
    )
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(f"oidc-provider-mock did not start: {exc}", pytrace=False)
    return server


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory):
    """The session's OpenID Connect provider (ID tokens valid for an hour)."""
    server = _start(tmp_path_factory, "oidc")
    yield OidcProvider(server)
    server.stop()


@pytest.fixture(scope="session")
def expired_oidc_provider(tmp_path_factory):
    """A second provider whose ID tokens are issued already expired (``exp`` ten minutes before
    ``iat``'s now: ``--token-max-age=-600``), past any clock leeway."""
    server = _start(tmp_path_factory, "oidc-expired", "--token-max-age=-600")
    yield OidcProvider(server)
    server.stop()
