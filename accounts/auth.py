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

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

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
    try:
        return AccessToken(raw)
    except TokenError:
        return None


@database_sync_to_async
def _load_user(user_id):
    User = get_user_model()
    return User.objects.filter(id=user_id, is_active=True).only("id", "username", "is_active").first()


class JWTAuthMiddleware(BaseMiddleware):
    """Puts the token's user (or AnonymousUser) and the token's expiry into the scope."""

    async def __call__(self, scope, receive, send):
        scope = dict(scope)
        scope["user"] = AnonymousUser()
        scope["token_exp"] = None
        raw = token_from_scope(scope)
        token = validate_access_token(raw) if raw else None
        if token is not None:
            user = await _load_user(token.get("user_id"))
            if user is not None:
                scope["user"] = user
                scope["token_exp"] = token.get("exp")
        return await super().__call__(scope, receive, send)
