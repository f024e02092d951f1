"""The custom user: usernames are unique regardless of case, emails are unique."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower


class CaseInsensitiveUserManager(UserManager):
    def get_by_natural_key(self, username: str):
        return self.get(username__iexact=username)


class User(AbstractUser):
    email = models.EmailField("email address", unique=True)

    objects = CaseInsensitiveUserManager()

    REQUIRED_FIELDS = ["email"]

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("username"), name="accounts_user_username_ci_unique"),
        ]
        indexes = [
            # Prefix search (`/api/users?search=`) on the lowered name.
            models.Index(Lower("username"), name="accounts_user_username_lower"),
        ]

    def __str__(self) -> str:
        return self.username
