"""JWT authentication for WebSocket handshakes.

The access token may come as ``?token=<jwt>``, an ``Authorization: Bearer <jwt>``
header, or (for browsers, which cannot set headers) a ``Sec-WebSocket-Protocol``
entry ``bearer.<jwt>`` next to ``messenger.v1``. The token never reaches a log line.
A bad or missing token leaves ``scope["user"]`` anonymous; the consumer then accepts
and closes with 4401, so clients see a stable application close code.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import parse_qs

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

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


class JWTAuthMiddleware(ScopeMiddleware):
    """Puts the token's user (or AnonymousUser), its expiry and its session id into the scope."""

    async def fill(self, scope: dict) -> None:
        scope["user"] = AnonymousUser()
        scope["token_exp"] = None
        scope["token_sid"] = None
        raw = token_from_scope(scope)
        if not raw:
            return
        (user, token), _ = await authenticate.run_async(raw)
        if user is not None:
            scope["user"] = user
            scope["token_exp"] = token.get("exp")
            scope["token_sid"] = token.get(SID_CLAIM)
