"""Writes on accounts: registration, settings, token refresh, logout, deactivation and deletion."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from rest_framework.exceptions import ValidationError

from runtime import realtime

from . import tokens
from .models import User, username_validator


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
