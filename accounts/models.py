"""The custom user: usernames are unique regardless of case, a non-empty email is unique (a user
who signed in with SSO without a verified email has none); each user says who may add them to
groups. An :class:`ExternalIdentity` links a user to an OpenID Connect provider's account, and an
:class:`SsoLoginCode` is the one-time code an SSO login hands the web client.

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
# OpenID Connect Core §2: "sub" is at most 255 ASCII characters; issuers are URLs of that order.
ISSUER_MAX = SUBJECT_MAX = 255
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

    # Unique when not empty (the constraint below): SSO users without a verified email have none.
    email = models.EmailField("email address", blank=True)
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
            models.UniqueConstraint(
                fields=["email"], condition=~models.Q(email=""), name="accounts_user_email_unique_nonempty"
            ),
        ]
        indexes = [
            # Prefix search (`/api/users?search=`) on the lowered name.
            models.Index(Lower("username"), name="accounts_user_username_lower"),
        ]

    def __str__(self) -> str:
        return self.username


class ExternalIdentity(models.Model):
    """A user's account at an OpenID Connect provider: the ID token's ``(iss, sub)``, never the
    email, says who logs in. One per provider account; a user may have several."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="external_identities")
    issuer = models.CharField(max_length=ISSUER_MAX)
    subject = models.CharField(max_length=SUBJECT_MAX)
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField()

    class Meta:
        verbose_name = "external identity"
        verbose_name_plural = "external identities"
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="accounts_externalidentity_issuer_subject"),
        ]

    def __str__(self) -> str:
        return f"{self.issuer} {self.subject}"


class SsoLoginCode(models.Model):
    """A one-time code from the SSO callback, traded once for a token pair (``POST
    /api/auth/sso/exchange``). Only its SHA-256 is stored; it expires after
    ``SSO_LOGIN_CODE_SECONDS`` and ``used_at`` marks it spent."""

    code_hash = models.CharField(max_length=64, primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"SSO login code for user {self.user_id}"
