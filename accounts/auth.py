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

from messenger.db import run_in_db

from .tokens import SID_CLAIM, is_revoked

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


def validate_access_token(raw: str) -> AccessToken | None:
    """The access token if it is well-signed, unexpired and of a live session; else None."""
    try:
        token = AccessToken(raw)
    except TokenError:
        return None
    return None if is_revoked(token) else token


def authenticate(raw: str):
    """(user, token) for a live access token of an active user, else (None, None). Sync: one hop."""
    token = validate_access_token(raw)
    if token is None:
        return None, None
    User = get_user_model()
    user = User.objects.filter(id=token.get("user_id"), is_active=True).only("id", "username", "is_active").first()
    return (user, token) if user is not None else (None, None)


class JWTAuthMiddleware(BaseMiddleware):
    """Puts the token's user (or AnonymousUser) and the token's expiry into the scope."""

    async def __call__(self, scope, receive, send):
        scope = dict(scope)
        scope["user"] = AnonymousUser()
        scope["token_exp"] = None
        scope["token_sid"] = None
        raw = token_from_scope(scope)
        user, token = await run_in_db(authenticate, raw) if raw else (None, None)
        if user is not None:
            scope["user"] = user
            scope["token_exp"] = token.get("exp")
            scope["token_sid"] = token.get(SID_CLAIM)
        return await super().__call__(scope, receive, send)
