"""Writes on accounts: registration and logout."""

from __future__ import annotations

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
