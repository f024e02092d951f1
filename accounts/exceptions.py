"""Domain errors of accounts' single sign-on, each with a stable code (see ops.errors).

The browser-facing SSO steps (login, callback) never answer with them: they redirect to
``/#sso_error=<code>`` with the same code instead (accounts/views.py).
"""

from __future__ import annotations

from rest_framework import status

from ops.errors import MessengerError


class SsoError(MessengerError):
    """A failed SSO login; ``code`` is what ``/#sso_error=`` carries."""

    code = "sso_failed"
    default_detail = "Single sign-on failed."


class SsoDisabled(SsoError):
    code = "sso_disabled"
    status = status.HTTP_404_NOT_FOUND
    default_detail = "Single sign-on is not configured on this server."


class SsoUnavailable(SsoError):
    code = "sso_unavailable"
    status = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The sign-on provider cannot be reached; retry shortly."


class SsoStateMismatch(SsoError):
    code = "sso_state_mismatch"
    default_detail = "The sign-on answer does not belong to a login started in this browser."


class SsoDenied(SsoError):
    code = "sso_denied"
    default_detail = "The sign-on was cancelled or refused at the provider."


class AccountDisabled(SsoError):
    code = "account_disabled"
    status = status.HTTP_403_FORBIDDEN
    default_detail = "This account is deactivated."


class InvalidSsoCode(MessengerError):
    code = "invalid_sso_code"
    default_detail = "The sign-on code is unknown, expired or already used."
