"""REST authentication: simplejwt's, plus refusal of access tokens from logged-out sessions."""

from __future__ import annotations

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken

from .tokens import is_revoked


class SessionJWTAuthentication(JWTAuthentication):
    def get_validated_token(self, raw_token):
        token = super().get_validated_token(raw_token)
        if is_revoked(token):
            raise InvalidToken({"detail": "Session has been logged out.", "code": "token_not_valid"})
        return token


class SessionJWTScheme(SimpleJWTScheme):
    """Declares the bearer scheme in OpenAPI; spectacular matches exact classes, not subclasses."""

    target_class = SessionJWTAuthentication
