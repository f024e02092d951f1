"""JWT authentication for WebSocket handshakes.

The access token may come as ``?token=<jwt>``, an ``Authorization: Bearer <jwt>``
header, or (for browsers, which cannot set headers) a ``Sec-WebSocket-Protocol``
entry ``bearer.<jwt>`` next to ``messenger.v1``. The token never reaches a log line.
A bad or missing token leaves ``scope["user"]`` anonymous; the consumer then accepts
and closes with 4401, so clients see a stable application close code. Handshakes are
limited per client address and per user (:func:`admit_socket`); a refused one is accepted,
told ``rate_limited`` with ``retry_after`` and closed with 4429.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import parse_qs

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from ops.client_ip import client_address, limit_key
from runtime.limits import count_in_window
from runtime.plans import HasKey, Plan, Statement, use_case
from runtime.socket_scope import ScopeMiddleware

from .tokens import SID_CLAIM, revoked_key

if TYPE_CHECKING:
    from .models import User

logger = logging.getLogger(__name__)

BEARER_SUBPROTOCOL_PREFIX = "bearer."


def token_from_scope(scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            parts = value.decode("latin-1").split(None, 1)
            if len(parts) == 2 and parts[0].lower() == "bearer":
                return parts[1].strip()
    for protocol in scope.get("subprotocols", []) or []:
        if protocol.startswith(BEARER_SUBPROTOCOL_PREFIX):
            return protocol[len(BEARER_SUBPROTOCOL_PREFIX) :]
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("token")
    return values[0] if values else None


def _decode(raw: str) -> AccessToken | None:
    """The access token if it is well-signed and unexpired; else None."""
    try:
        return AccessToken(raw)
    except TokenError:
        return None


class ActiveUser(NamedTuple):
    username: str


ACTIVE_USER = Statement(
    "SELECT username FROM accounts_user WHERE id = %(id)s AND is_active", ActiveUser, name="active_user"
)


@use_case
def authenticate(raw: str) -> Plan[tuple[User | None, AccessToken | None]]:
    """(user, token) for a live access token of an active user, else (None, None): the
    signature and expiry, the session's logout mark (one cache lookup) and an active user
    (one indexed SELECT). The handshake and ``auth.refresh`` run it from the event loop."""
    token = _decode(raw)
    if token is None:
        return None, None
    sid = token.get(SID_CLAIM)
    if sid and (yield HasKey(revoked_key(str(sid)))):
        return None, None
    try:
        user_id = int(token.get("user_id"))
    except (TypeError, ValueError):
        return None, None
    row = yield ACTIVE_USER.one(id=user_id)
    if row is None:
        return None, None
    # A loaded instance with only these fields, as ``.only("id", "username", "is_active")`` gives.
    user = get_user_model().from_db("default", ["id", "username", "is_active"], [user_id, row.username, True])
    return user, token


class Handshake(NamedTuple):
    user: User | None
    token: AccessToken | None
    # Seconds until a connect limit lets this client in again; None: not refused.
    retry_after: float | None = None


@use_case
def admit_socket(raw: str | None, *, address: str | None) -> Plan[Handshake]:
    """A socket handshake: counted per client address (every attempt, with a token or not),
    then the token checked (:func:`authenticate`), then counted per user -- each in a window of
    ``SOCKET_CONNECT_WINDOW_SECONDS`` shared by all processes. A client over either limit is
    refused with the time until its window ends; an address over its limit costs no token check.
    ``address`` None (no connecting address: a unix socket) is not counted per address."""
    seconds = settings.SOCKET_CONNECT_WINDOW_SECONDS
    if address is not None:
        wait = yield from count_in_window(
            "socket-address", address, limit=settings.SOCKET_CONNECTS_PER_ADDRESS, seconds=seconds
        )
        if wait is not None:
            return Handshake(None, None, wait)
    if not raw:
        return Handshake(None, None)
    user, token = yield from authenticate.plan(raw)
    if user is None:
        return Handshake(None, None)
    wait = yield from count_in_window(
        "socket-user", str(user.id), limit=settings.SOCKET_CONNECTS_PER_USER, seconds=seconds
    )
    return Handshake(user, token, wait)


class JWTAuthMiddleware(ScopeMiddleware):
    """Puts the token's user (or AnonymousUser), its expiry and its session id into the scope, or
    ``connect_retry_after`` when a connect limit refuses the client (the consumer answers)."""

    async def fill(self, scope: dict) -> None:
        scope["user"] = AnonymousUser()
        scope["token_exp"] = None
        scope["token_sid"] = None
        scope["connect_retry_after"] = None
        address = client_address(scope)
        handshake, _ = await admit_socket.run_async(
            token_from_scope(scope), address=None if address is None else limit_key(address)
        )
        if handshake.retry_after is not None:
            scope["connect_retry_after"] = handshake.retry_after
        elif handshake.user is not None:
            scope["user"] = handshake.user
            scope["token_exp"] = handshake.token.get("exp")
            scope["token_sid"] = handshake.token.get(SID_CLAIM)
