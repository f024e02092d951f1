"""Domain errors of the chats app, each with a stable code (see ops.errors)."""

from __future__ import annotations

from rest_framework import status

from ops.errors import MessengerError, ServiceUnavailable

__all__ = [
    "ChatNotFound",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "MessengerError",
    "PrivacyRestricted",
    "RateLimited",
    "ServiceUnavailable",
]


class ChatNotFound(MessengerError):
    """The chat does not exist, or the caller is not a member: the two are indistinguishable."""

    code = "not_found"
    status = status.HTTP_404_NOT_FOUND
    default_detail = "Chat not found."


class NotFound(MessengerError):
    code = "not_found"
    status = status.HTTP_404_NOT_FOUND
    default_detail = "Not found."


class Forbidden(MessengerError):
    code = "forbidden"
    status = status.HTTP_403_FORBIDDEN
    default_detail = "You are not allowed to do this."


class PrivacyRestricted(MessengerError):
    """A user's ``who_can_add_me`` setting does not let the caller put them in a group."""

    code = "privacy_restricted"
    status = status.HTTP_403_FORBIDDEN
    default_detail = "This user does not allow you to add them to groups."


class InvalidInput(MessengerError):
    code = "validation_error"
    status = status.HTTP_400_BAD_REQUEST
    default_detail = "Invalid input."


class Conflict(MessengerError):
    code = "conflict"
    status = status.HTTP_409_CONFLICT
    default_detail = "Conflict."


class RateLimited(MessengerError):
    code = "rate_limited"
    status = status.HTTP_429_TOO_MANY_REQUESTS
    default_detail = "Too many requests; slow down."
