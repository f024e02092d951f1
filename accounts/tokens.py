"""JWT sessions: issuing, rotating and revoking tokens.

Every login starts a *session*: its refresh token carries a ``sid`` claim (the first
refresh token's jti) that rotation keeps and access tokens inherit. Logging out
revokes the session: its refresh token is blacklisted, the sid is remembered in the
cache for the access-token lifetime (so access tokens of that session stop working on
REST and on new sockets), and the user's open sockets of that session are closed.

simplejwt's rotation uses ``get_or_create`` on the blacklist and ignores whether it
created the row, so N parallel refreshes of one token could all succeed. Here the
blacklist insert is the arbiter: only the request that actually *created* the row
gets a new pair.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken, Token

logger = logging.getLogger(__name__)

SID_CLAIM = "sid"


def revoked_key(sid: str) -> str:
    return f"revoked-sid:{sid}"


def start_session(user) -> RefreshToken:
    """A refresh token for a fresh login session."""
    refresh = RefreshToken.for_user(user)
    refresh[SID_CLAIM] = refresh["jti"]
    return refresh


def is_revoked(token: Token) -> bool:
    sid = token.get(SID_CLAIM)
    return bool(sid) and cache.get(revoked_key(str(sid))) is not None


def _outstanding(refresh: RefreshToken) -> OutstandingToken:
    jti = refresh["jti"]
    outstanding = OutstandingToken.objects.filter(jti=jti).first()
    if outstanding is None:
        outstanding, _ = OutstandingToken.objects.get_or_create(
            jti=jti,
            defaults={"user_id": refresh.get("user_id"), "token": str(refresh), "expires_at": refresh.current_time},
        )
    return outstanding


def rotate(raw: str) -> dict[str, str]:
    """Exchange a refresh token for a new pair; exactly one caller wins per token."""
    try:
        refresh = RefreshToken(raw)  # signature, expiry, type, and blacklist at this instant
    except TokenError as exc:
        raise InvalidToken(str(exc)) from None
    if is_revoked(refresh):
        raise InvalidToken("Session has been logged out.")
    user = get_user_model().objects.filter(id=refresh.get("user_id"), is_active=True).first()
    if user is None:
        raise InvalidToken("No active account found for the given token.")
    with transaction.atomic():
        _, created = BlacklistedToken.objects.get_or_create(token=_outstanding(refresh))
    if not created:
        raise InvalidToken("Token is blacklisted")
    refresh.set_jti()
    refresh.set_exp()
    refresh.set_iat()
    refresh.outstand()
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def revoke_session(raw: str) -> tuple[int, str | None]:
    """Blacklist a refresh token and revoke its session; returns (user_id, sid)."""
    try:
        refresh = RefreshToken(raw)
    except TokenError as exc:
        raise InvalidToken(str(exc)) from None
    with transaction.atomic():
        BlacklistedToken.objects.get_or_create(token=_outstanding(refresh))
    sid = refresh.get(SID_CLAIM)
    if sid:
        lifetime = int(settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()) + 60
        cache.set(revoked_key(str(sid)), 1, timeout=lifetime)
    return int(refresh.get("user_id")), (str(sid) if sid else None)
