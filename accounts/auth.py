"""JWT authentication for WebSocket handshakes.

The access token may come as ``?token=<jwt>``, an ``Authorization: Bearer <jwt>``
header, or (for browsers, which cannot set headers) a ``Sec-WebSocket-Protocol``
entry ``bearer.<jwt>`` next to ``messenger.v1``. The token never reaches a log line.
A bad or missing token leaves ``scope["user"]`` anonymous; the consumer then accepts
and closes with 4401, so clients see a stable application close code.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from channels.middleware import BaseMiddleware
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from runtime import async_cache as acache
from runtime import async_db as adb
from runtime.db_threads import run_in_db

from .tokens import SID_CLAIM, is_revoked, revoked_key

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
            return protocol[len(BEARER_SUBPROTOCOL_PREFIX):]
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("token")
    return values[0] if values else None


def _decode(raw: str) -> AccessToken | None:
    """The access token if it is well-signed and unexpired; else None."""
    try:
        return AccessToken(raw)
    except TokenError:
        return None


def validate_access_token(raw: str) -> AccessToken | None:
    """The access token if it is well-signed, unexpired and of a live session; else None."""
    token = _decode(raw)
    return None if token is None or is_revoked(token) else token


def authenticate(raw: str):
    """(user, token) for a live access token of an active user, else (None, None). Sync: one hop."""
    token = validate_access_token(raw)
    if token is None:
        return None, None
    User = get_user_model()
    user = User.objects.filter(id=token.get("user_id"), is_active=True).only("id", "username", "is_active").first()
    return (user, token) if user is not None else (None, None)


_ACTIVE_USER = "SELECT username FROM accounts_user WHERE id = %(id)s AND is_active"


async def authenticate_async(raw: str):
    """:func:`authenticate` from the event loop on PostgreSQL: the same checks -- signature,
    expiry, the session's logout mark (one Redis EXISTS) and an active user (one indexed
    SELECT on runtime/async_db.py) -- without the hop to a database thread that every handshake
    paid. SQLite keeps the thread."""
    if not adb.enabled():
        return await run_in_db(authenticate, raw)
    token = _decode(raw)
    if token is None:
        return None, None
    sid = token.get(SID_CLAIM)
    if sid and await acache.has(revoked_key(str(sid))):
        return None, None
    try:
        user_id = int(token.get("user_id"))
    except (TypeError, ValueError):
        return None, None
    row = await adb.fetch_one(_ACTIVE_USER, {"id": user_id})
    if row is None:
        return None, None
    # As the sync path's .only("id", "username", "is_active"): a loaded instance, other fields deferred.
    user = get_user_model().from_db("default", ["id", "username", "is_active"], [user_id, row[0], True])
    return user, token


class JWTAuthMiddleware(BaseMiddleware):
    """Puts the token's user (or AnonymousUser) and the token's expiry into the scope."""

    async def __call__(self, scope, receive, send):
        # The scope is filled in place, not copied as Channels' BaseMiddleware does: every routing
        # layer's frame lives as long as the socket, and so would each copy. The layers above
        # (daphne, the outage guard, the origin check) never read these keys.
        scope["user"] = AnonymousUser()
        scope["token_exp"] = None
        scope["token_sid"] = None
        raw = token_from_scope(scope)
        user, token = await authenticate_async(raw) if raw else (None, None)
        if user is not None:
            scope["user"] = user
            scope["token_exp"] = token.get("exp")
            scope["token_sid"] = token.get(SID_CLAIM)
        del raw, token  # this frame lives as long as the socket: keep only what the scope needs
        return await self.inner(scope, receive, send)  # not BaseMiddleware.__call__: no copy
