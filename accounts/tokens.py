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

Presenting a rotated refresh token again is *reuse* (OAuth 2.0 Security BCP, refresh token
rotation): a thief and the client hold copies of one token, and whichever comes second shows
it. The whole session is revoked then, like a logout, and its sockets are closed.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import InvalidToken, TokenBackendError, TokenError
from rest_framework_simplejwt.state import token_backend
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


class RefreshReused(InvalidToken):
    """A rotated refresh token was presented again: its session is revoked (``user_id``, ``sid``)."""

    def __init__(self, *, user_id: int, sid: str | None):
        super().__init__("Refresh token reused; the session is revoked.")
        self.user_id = user_id
        self.sid = sid


def rotate(raw: str) -> dict[str, str]:
    """Exchange a refresh token for a new pair; exactly one caller wins per token.

    A token that was already rotated (or logged out) is refused; if it was rotated more than
    ``REFRESH_REUSE_GRACE_SECONDS`` ago, it was replayed (a stolen copy, or the thief's rotation
    left the client with this one), so its whole session is revoked and :class:`RefreshReused`
    tells the caller to close its sockets. Within the grace it is a parallel refresh by the
    client itself, which is refused only.
    """
    try:
        refresh = RefreshToken(raw)  # signature, expiry, type, and blacklist at this instant
    except TokenError as exc:
        _revoke_if_reused(raw)
        raise InvalidToken(str(exc)) from None
    if is_revoked(refresh):
        raise InvalidToken("Session has been logged out.")
    user = get_user_model().objects.filter(id=refresh.get("user_id"), is_active=True).first()
    if user is None:
        raise InvalidToken("No active account found for the given token.")
    with transaction.atomic():
        _, created = BlacklistedToken.objects.get_or_create(token=_outstanding(refresh))
    if not created:
        _revoke_if_reused(raw)
        raise InvalidToken("Token is blacklisted")
    refresh.set_jti()
    refresh.set_exp()
    refresh.set_iat()
    refresh.outstand()
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def _revoke_if_reused(raw: str) -> None:
    """Raise RefreshReused (after revoking the session) when ``raw`` is a well-signed, unexpired
    refresh token blacklisted longer ago than the grace; return otherwise."""
    try:
        payload = token_backend.decode(raw, verify=True)
    except TokenBackendError:
        return  # forged, expired or garbage: nothing to revoke on its word
    if payload.get("token_type") != RefreshToken.token_type or not payload.get("jti"):
        return
    blacklisted = BlacklistedToken.objects.filter(token__jti=payload["jti"]).values_list("blacklisted_at", flat=True)
    blacklisted_at = blacklisted.first()
    if blacklisted_at is None:
        return
    if timezone.now() - blacklisted_at < timedelta(seconds=settings.REFRESH_REUSE_GRACE_SECONDS):
        return
    user_id, sid = int(payload["user_id"]), payload.get(SID_CLAIM)
    revoke_sid(user_id=user_id, sid=str(sid) if sid else None)
    logger.warning("refresh token reused; session revoked", extra={"user_id": user_id})
    raise RefreshReused(user_id=user_id, sid=str(sid) if sid else None)


def revoke_sid(*, user_id: int, sid: str | None) -> None:
    """End login session ``sid``: every live refresh token of it is blacklisted (found among the
    user's unexpired, unblacklisted tokens: about one per session) and its access tokens are
    refused for the rest of their lifetime."""
    if not sid:
        return
    live = OutstandingToken.objects.filter(
        user_id=user_id, blacklistedtoken__isnull=True, expires_at__gt=timezone.now()
    ).values_list("id", "token")
    session_tokens = []
    for token_id, token in live:
        try:
            claims = token_backend.decode(token, verify=False)
        except TokenBackendError:
            continue
        # A session's first refresh token is stored as issued, before its sid (its own jti) was added.
        if claims.get(SID_CLAIM, claims.get("jti")) == sid:
            session_tokens.append(BlacklistedToken(token_id=token_id))
    BlacklistedToken.objects.bulk_create(session_tokens, ignore_conflicts=True)
    lifetime = int(settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()) + 60
    cache.set(revoked_key(sid), 1, timeout=lifetime)


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
