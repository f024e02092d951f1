"""The OpenID Connect client of single sign-on: the authorization code flow with PKCE, by Authlib.

Authlib does the protocol; this module configures it from settings (``OIDC_*``) and turns its
failures into our error codes (accounts/exceptions.py). What Authlib does for us:

* discovery: the provider's endpoints and keys come from ``<OIDC_ISSUER>/.well-known/openid-configuration``
  (fetched once per process and configuration; here we also insist that it names the configured
  issuer, as OpenID Connect Discovery 1.0 §4.3 requires);
* the authorization request: a random ``state``, ``nonce`` and PKCE ``code_verifier`` (sent as its
  S256 challenge), kept in the Django session under the state;
* the callback: the code is exchanged with the client secret and the code verifier, once the
  state proved to be one this session started (else :class:`SsoStateMismatch`), and the ID
  token is verified (:func:`verify_id_token`):
  its signature against the provider's JWKS (refetched once on an unknown key id), ``iss`` (the
  discovered issuer), ``aud`` (our client id), ``exp``/``iat`` (with :data:`CLOCK_LEEWAY_SECONDS`),
  ``nonce`` (this session's) and ``at_hash``.

Nothing here writes our tables: :func:`finish_login` returns the verified claims, and
``services.sign_in_with_identity`` decides who they are.
"""

from __future__ import annotations

import threading

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.django_client import DjangoOAuth2App, OAuth
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from joserfc.errors import JoseError

from .exceptions import SsoDenied, SsoDisabled, SsoError, SsoStateMismatch, SsoUnavailable

# Clock difference tolerated on the ID token's exp and iat (Authlib's default is 120 s).
CLOCK_LEEWAY_SECONDS = 60
# Each call to the provider (discovery, token, keys) gives up after this long.
PROVIDER_TIMEOUT_SECONDS = 10

_clients: dict[tuple[str, str, str, str], DjangoOAuth2App] = {}
_clients_lock = threading.Lock()


def enabled() -> bool:
    """Whether a provider is configured (issuer, client id and secret all set)."""
    return bool(settings.OIDC_ISSUER and settings.OIDC_CLIENT_ID and settings.OIDC_CLIENT_SECRET)


def provider_name() -> str | None:
    return settings.OIDC_PROVIDER_NAME if enabled() else None


def _issuer() -> str:
    return settings.OIDC_ISSUER.rstrip("/")


def _client() -> DjangoOAuth2App:
    """The Authlib client for the current settings (one per configuration: its discovery
    document and keys are cached on it)."""
    if not enabled():
        raise SsoDisabled()
    key = (_issuer(), settings.OIDC_CLIENT_ID, settings.OIDC_CLIENT_SECRET, settings.OIDC_SCOPES)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = OAuth().register(
                name="oidc",
                client_id=settings.OIDC_CLIENT_ID,
                client_secret=settings.OIDC_CLIENT_SECRET,
                server_metadata_url=f"{key[0]}/.well-known/openid-configuration",
                client_kwargs={
                    "scope": settings.OIDC_SCOPES,
                    "code_challenge_method": "S256",
                    "default_timeout": PROVIDER_TIMEOUT_SECONDS,
                },
            )
            _clients[key] = client
    return client


def _metadata(client: DjangoOAuth2App) -> dict:
    try:
        metadata = client.load_server_metadata()
    except (requests.RequestException, ValueError) as exc:
        raise SsoUnavailable() from exc
    if str(metadata.get("issuer", "")).rstrip("/") != _issuer():
        # A discovery document for another issuer: its tokens would be checked against the wrong iss.
        raise SsoError("The provider's discovery document names another issuer.")
    return metadata


def start_login(request: HttpRequest, *, redirect_uri: str) -> HttpResponse:
    """The redirect to the provider's authorization endpoint; state, nonce and the PKCE verifier
    go into ``request.session``."""
    client = _client()
    _metadata(client)
    try:
        return client.authorize_redirect(request, redirect_uri)
    except (requests.RequestException, ValueError) as exc:
        raise SsoUnavailable() from exc


def finish_login(request: HttpRequest) -> dict:
    """The verified ID token claims of the provider's answer to :func:`start_login` (the callback
    request), at least ``iss`` and ``sub``.

    The ``state`` must be one this session started (Authlib's session record of it, written by
    :func:`start_login`), checked before anything else, also before a provider's error answer;
    the record is used up either way, so an answer cannot be replayed.
    """
    client = _client()
    _metadata(client)
    state = request.GET.get("state")
    started = client.framework.get_state_data(request.session, state) if state else None
    if state:
        client.framework.clear_state_data(request.session, state)
    if not started:
        raise SsoStateMismatch()
    error = request.GET.get("error")
    if error:
        raise SsoDenied() if error == "access_denied" else SsoError()
    code = request.GET.get("code")
    if not code:
        raise SsoError()
    try:
        token = client.fetch_access_token(
            redirect_uri=started["redirect_uri"], code=code, code_verifier=started["code_verifier"]
        )
    except requests.RequestException as exc:
        raise SsoUnavailable() from exc
    except (AuthlibBaseError, ValueError, KeyError) as exc:
        raise SsoError() from exc  # the provider refused the code (invalid_grant, ...) or sent garbage
    return verify_id_token(token=token, nonce=started["nonce"])


def verify_id_token(*, token: dict, nonce: str) -> dict:
    """The claims of a token response's ID token once Authlib has verified it: signature against
    the provider's JWKS, ``iss`` (the discovered issuer), ``aud`` (our client id), ``exp``/``iat``
    (with :data:`CLOCK_LEEWAY_SECONDS`), ``nonce`` (the one this login sent) and ``at_hash``.
    Anything else, a missing ID token included, is :class:`SsoError`."""
    client = _client()
    metadata = _metadata(client)
    if not isinstance(token, dict) or not token.get("id_token"):
        raise SsoError("The provider sent no ID token.")
    # Authlib checks iss against discovery by default but aud only indirectly (through azp); both
    # are stated here, so a token issued to another client is refused for its audience.
    claims_options = {
        "iss": {"essential": True, "values": [metadata["issuer"]]},
        "aud": {"essential": True, "values": [settings.OIDC_CLIENT_ID]},
    }
    try:
        claims = client.parse_id_token(token, nonce=nonce, claims_options=claims_options, leeway=CLOCK_LEEWAY_SECONDS)
    except requests.RequestException as exc:
        raise SsoUnavailable() from exc
    except (AuthlibBaseError, JoseError, ValueError, KeyError, TypeError) as exc:
        raise SsoError() from exc
    if not claims or not claims.get("sub") or not claims.get("iss"):
        raise SsoError("The ID token names no subject.")
    return dict(claims)
