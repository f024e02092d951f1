"""Writes on accounts: registration, token refresh and logout."""

from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from rest_framework.exceptions import ValidationError

from runtime import realtime

from . import tokens
from .models import User


@transaction.atomic
def register_user(*, username: str, email: str, password: str) -> User:
    """Create a user; duplicate username (any case) or email and weak passwords are field errors."""
    errors: dict[str, list[str]] = {}
    if User.objects.filter(username__iexact=username).exists():
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
