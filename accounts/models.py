"""The custom user: usernames are unique regardless of case, emails are unique; each user says
who may add them to groups.

New usernames are ASCII letters, digits, ``.``, ``_`` and ``-`` only (:data:`username_validator`,
applied to registrations): no look-alike letters from other scripts, no invisible or bidi
characters. Accounts created before the rule keep their names and log in as before.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, UserManager
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower

USERNAME_MAX = 150
username_validator = RegexValidator(
    r"\A[A-Za-z0-9._-]+\Z",
    message="ASCII letters, digits, '.', '_' and '-' only.",
    code="invalid_username",
)


class CaseInsensitiveUserManager(UserManager):
    def get_by_natural_key(self, username: str):
        return self.get(username__iexact=username)


class User(AbstractUser):
    class WhoCanAddMe(models.TextChoices):
        """Who may put this user into a group (creating one with them, or adding them)."""

        EVERYBODY = "everybody", "Everybody"
        CONTACTS = "contacts", "People I already share a chat with"
        NOBODY = "nobody", "Nobody"

    email = models.EmailField("email address", unique=True)
    who_can_add_me = models.CharField(
        "who can add me to groups",
        max_length=9,
        choices=WhoCanAddMe.choices,
        default=WhoCanAddMe.EVERYBODY,
        db_default=WhoCanAddMe.EVERYBODY,  # also for rows written without the ORM (the bulk loader's COPY)
    )

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
