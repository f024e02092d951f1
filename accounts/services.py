"""Writes on accounts: registration, single sign-on, settings, token refresh, logout,
deactivation and deletion."""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.db.models.functions import Lower
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from runtime import realtime

from . import tokens
from .exceptions import AccountDisabled, InvalidSsoCode, SsoError
from .models import ISSUER_MAX, SUBJECT_MAX, ExternalIdentity, SsoLoginCode, User, username_validator


@transaction.atomic
def register_user(*, username: str, email: str, password: str) -> User:
    """Create a user; a username outside the safe set (accounts/models.py), a duplicate username
    (any case) or email and weak passwords are field errors."""
    errors: dict[str, list[str]] = {}
    try:
        username_validator(username)
    except DjangoValidationError as exc:
        errors["username"] = list(exc.messages)
    if "username" not in errors and User.objects.filter(username__iexact=username).exists():
        errors["username"] = ["A user with that username already exists."]
    if User.objects.filter(email__iexact=email).exists():
        errors["email"] = ["A user with that email already exists."]
    candidate = User(username=username, email=email)
    try:
        validate_password(password, user=candidate)
    except DjangoValidationError as exc:
        errors["password"] = list(exc.messages)
    if errors:
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            return User.objects.create_user(username=username, email=email, password=password)
    except IntegrityError:
        # Lost a race with a parallel registration of the same name or email.
        raise ValidationError({"username": ["A user with that username or email already exists."]}) from None


# --- single sign-on ----------------------------------------------------------------------------

# A derived username is at most this long before its collision suffix (a readable name, not 150 chars).
SSO_USERNAME_STEM_MAX = 30
_NOT_USERNAME = re.compile(r"[^A-Za-z0-9._-]+")


def _username_stem(raw: object) -> str:
    """``raw`` in the username alphabet (accounts/models.py): accents dropped, anything else
    (spaces, other scripts, @, invisible characters) as one "-", no separators at the ends."""
    if not isinstance(raw, str):
        return ""
    ascii_only = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode("ascii")
    stem = _NOT_USERNAME.sub("-", ascii_only)[:SSO_USERNAME_STEM_MAX]
    return stem.strip("._-")


def _username_base(claims: dict) -> str:
    """The username a new SSO user would like: the first of ``preferred_username``, the email's
    local part and ``sub`` that leaves something in the username alphabet, else "user"."""
    email = claims.get("email")
    local_part = email.split("@", 1)[0] if isinstance(email, str) else ""
    for raw in (claims.get("preferred_username"), local_part, claims.get("sub")):
        stem = _username_stem(raw)
        if stem:
            return stem
    return "user"


def _free_username(stem: str) -> str:
    """``stem``, or ``stem-2``, ``stem-3``, ... whichever no user has in any case (looked up on the
    lowered-name index, 50 names a query)."""
    for first in range(1, 10_000, 50):
        names = [stem if n == 1 else f"{stem}-{n}" for n in range(first, first + 50)]
        taken = set(
            User.objects.annotate(username_lower=Lower("username"))
            .filter(username_lower__in=[name.lower() for name in names])
            .values_list("username_lower", flat=True)
        )
        for name in names:
            if name.lower() not in taken:
                return name
    return f"{stem}-{secrets.token_hex(4)}"


def _verified_email(claims: dict) -> str:
    """The claims' email if the provider says it verified it and no other user has it; else ""."""
    email = claims.get("email")
    if claims.get("email_verified") not in (True, "true") or not isinstance(email, str):
        return ""
    email = email.strip()
    try:
        validate_email(email)
    except DjangoValidationError:
        return ""
    if len(email) > 254 or User.objects.filter(email__iexact=email).exists():
        return ""
    return email


def sign_in_with_identity(*, claims: dict) -> User:
    """The user an SSO login with these verified ID token claims is, created at the first login.

    The user is found by ``(iss, sub)`` (:class:`ExternalIdentity`), never by email: a provider
    account with an email another user has is a new user. A new user gets a username derived from
    the claims (:func:`_username_base`, suffixed while taken), no usable password, and the
    email only when ``email_verified`` is true and the address is free. A deactivated user is
    refused (:class:`AccountDisabled`). Parallel first logins of one account make one user.
    """
    issuer, subject = str(claims["iss"]), str(claims["sub"])
    if len(issuer) > ISSUER_MAX or len(subject) > SUBJECT_MAX:
        raise SsoError("The provider's issuer or subject is too long.")
    now = timezone.now()
    for _attempt in range(5):
        identity = ExternalIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
        if identity is not None:
            if not identity.user.is_active:
                raise AccountDisabled()
            ExternalIdentity.objects.filter(pk=identity.pk).update(last_login_at=now)
            return identity.user
        try:
            with transaction.atomic():
                user = User(username=_free_username(_username_base(claims)), email=_verified_email(claims))
                user.set_unusable_password()
                user.save()
                ExternalIdentity.objects.create(user=user, issuer=issuer, subject=subject, last_login_at=now)
                return user
        except IntegrityError:
            # A parallel first login of this account (the identity exists now), or of another one
            # that took the same username or email: look again.
            continue
    raise IntegrityError("could not create the SSO user after several attempts")


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def issue_sso_code(*, user: User) -> str:
    """A fresh one-time login code for ``user`` (valid ``SSO_LOGIN_CODE_SECONDS``, stored hashed);
    codes expired a while ago are removed on the way."""
    now = timezone.now()
    SsoLoginCode.objects.filter(expires_at__lt=now - timedelta(hours=1)).delete()
    code = secrets.token_urlsafe(32)
    SsoLoginCode.objects.create(
        code_hash=_code_hash(code), user=user, expires_at=now + timedelta(seconds=settings.SSO_LOGIN_CODE_SECONDS)
    )
    return code


def redeem_sso_code(*, code: str) -> dict[str, str]:
    """A new session's token pair for a one-time code from :func:`issue_sso_code`.

    One ``UPDATE ... WHERE used_at IS NULL ... RETURNING`` spends the code, so of parallel
    redemptions exactly one wins; unknown, expired and spent codes are :class:`InvalidSsoCode`,
    and a user deactivated since the callback is :class:`AccountDisabled`.
    """
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE accounts_ssologincode SET used_at = %s WHERE code_hash = %s AND used_at IS NULL AND expires_at > %s"
            " RETURNING user_id",
            [now, _code_hash(code), now],
        )
        row = cursor.fetchone()
    if row is None:
        raise InvalidSsoCode()
    user = User.objects.filter(id=row[0]).first()
    if user is None:
        raise InvalidSsoCode()
    if not user.is_active:
        raise AccountDisabled()
    refresh = tokens.start_session(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def refresh_session(*, refresh: str) -> dict[str, str]:
    """A new token pair for a refresh token (rotation). Reuse of a rotated token revokes its
    session (``tokens.rotate``); its sockets are closed here, as on logout."""
    try:
        return tokens.rotate(refresh)
    except tokens.RefreshReused as reuse:
        realtime.close_user_sockets(user_id=reuse.user_id, sid=reuse.sid)
        raise


def logout(*, refresh: str) -> None:
    """End the refresh token's session: the token is refused from now on, the session's
    access tokens stop working, and the user's sockets of that session are closed."""
    user_id, sid = tokens.revoke_session(refresh)
    realtime.close_user_sockets(user_id=user_id, sid=sid)


@transaction.atomic
def set_active(*, user: User, active: bool) -> None:
    """Activate or deactivate a user; deactivation closes every socket of theirs at once."""
    if user.is_active == active:
        return
    User.objects.filter(id=user.id).update(is_active=active)
    user.is_active = active
    if not active:
        transaction.on_commit(lambda: realtime.close_user_sockets(user_id=user.id, sid=None))


def update_settings(*, user: User, who_can_add_me: str | None = None) -> User:
    """Change the user's own settings (today: who may put them in groups); None keeps one."""
    if who_can_add_me is not None:
        if who_can_add_me not in User.WhoCanAddMe.values:
            raise ValidationError({"who_can_add_me": [f"Must be one of {', '.join(User.WhoCanAddMe.values)}."]})
        User.objects.filter(id=user.id).update(who_can_add_me=who_can_add_me)
        user.who_can_add_me = who_can_add_me
    return user


# What other apps do before a user row goes, in order (chats: the user leaves every group, so
# each owned group gets a successor). Registered from their AppConfig.ready(), because accounts
# never imports them; each step is a service of its app, called here explicitly, not a signal.
_BEFORE_DELETION: list[Callable[..., None]] = []


def before_user_deletion(step: Callable[..., None]) -> None:
    """Register ``step(user_id=...)`` to run in :func:`delete_user` before the row is deleted."""
    if step not in _BEFORE_DELETION:
        _BEFORE_DELETION.append(step)


def delete_user(*, user: User) -> None:
    """Delete a user for good; deactivation (:func:`set_active`) is usually what an operator wants.

    First deactivated, which closes every socket of theirs and keeps them out of new chats;
    then each registered step (they leave their groups, with the events of leaving, and a group
    they owned gets its successor); then the row and what cascades from it (memberships of
    direct chats, tokens). Their messages stay, without a sender.
    """
    set_active(user=user, active=False)
    for step in _BEFORE_DELETION:
        step(user_id=user.id)
    User.objects.filter(id=user.id).delete()
