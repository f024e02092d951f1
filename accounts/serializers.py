from __future__ import annotations

from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer

from ops.fields import StrictCharField, StrictEmailField

from . import services
from .models import USERNAME_MAX, User, username_validator
from .throttles import LoginGuard
from .tokens import start_session


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email", "who_can_add_me"]
        read_only_fields = fields


class UserSettingsSerializer(serializers.Serializer):
    """The settings a user changes on ``PATCH /api/users/me``."""

    who_can_add_me = serializers.ChoiceField(
        choices=User.WhoCanAddMe.choices,
        required=False,
        help_text="Who may create a group with you or add you to one: everybody, contacts (people "
        "you already share a chat with) or nobody.",
    )


class PublicUserSerializer(serializers.ModelSerializer):
    """What other users may see of a user (no email)."""

    class Meta:
        model = User
        fields = ["id", "username"]
        read_only_fields = fields


class RegisterSerializer(serializers.Serializer):
    username = StrictCharField(
        max_length=USERNAME_MAX,
        trim_whitespace=False,  # " bob" is not silently "bob": the pattern in the schema holds as stated
        validators=[username_validator],
        help_text="ASCII letters, digits, '.', '_' and '-'; unique regardless of case.",
    )
    email = StrictEmailField(max_length=254)
    password = StrictCharField(write_only=True, max_length=128, style={"input_type": "password"})


class TokenPairSerializer(TokenObtainPairSerializer):
    """Login: every successful login starts a new session (``sid`` claim). Failed logins are
    limited per account and per (account, address) pair (``throttles.LoginGuard``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # simplejwt declares plain CharFields here; strings only, like every other input.
        self.fields[self.username_field] = StrictCharField(write_only=True)
        self.fields["password"] = StrictCharField(write_only=True, style={"input_type": "password"})

    @classmethod
    def get_token(cls, user):
        return start_session(user)

    def validate(self, attrs):
        guard = LoginGuard(username=attrs[self.username_field], request=self.context["request"])
        guard.admit()
        try:
            data = super().validate(attrs)
        except AuthenticationFailed:
            guard.failed()
            raise
        guard.succeeded()
        return data


class TokenPairResponseSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class RefreshSerializer(serializers.Serializer):
    refresh = StrictCharField()

    def validate(self, attrs):
        return services.refresh_session(refresh=attrs["refresh"])


class LogoutSerializer(serializers.Serializer):
    refresh = StrictCharField()


class UserSearchQuerySerializer(serializers.Serializer):
    search = StrictCharField(required=False, allow_blank=True, max_length=USERNAME_MAX)


class SsoConfigSerializer(serializers.Serializer):
    """Whether this server offers single sign-on, and with what (the login screen's button)."""

    enabled = serializers.BooleanField()
    provider = serializers.CharField(
        allow_null=True, help_text="The provider's name for the button; null when disabled."
    )
    login_url = serializers.CharField(
        allow_null=True, help_text="Where the browser goes to sign in (a full-page navigation); null when disabled."
    )


class SsoExchangeSerializer(serializers.Serializer):
    code = StrictCharField(max_length=128, help_text="The one-time code from the callback's /#sso_code=.")
