"""Domain errors of the chats app, each with a stable code (see ops.errors)."""

from __future__ import annotations

from rest_framework import status

from ops.errors import MessengerError, RateLimited, ServiceUnavailable

__all__ = [
    "ChatNotFound",
    "Conflict",
    "EditWindowExpired",
    "Forbidden",
    "Gone",
    "InvalidInput",
    "MessageNotFound",
    "MessengerError",
    "PrivacyRestricted",
    "RateLimited",
    "ServiceUnavailable",
    "TooManyPins",
    "TooManyReactions",
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


class MessageNotFound(NotFound):
    """No message with that seq in a chat the caller is a member of."""

    default_detail = "Message not found."


class Gone(MessengerError):
    """The message was deleted for everyone: it can no longer be edited, reacted to, pinned,
    answered or forwarded."""

    code = "gone"
    status = status.HTTP_410_GONE
    default_detail = "The message was deleted."


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


class EditWindowExpired(MessengerError):
    code = "edit_window_expired"
    status = status.HTTP_403_FORBIDDEN
    default_detail = "The message is too old to edit."


class TooManyReactions(MessengerError):
    code = "too_many_reactions"
    status = status.HTTP_400_BAD_REQUEST
    default_detail = "Too many reactions on this message."


class TooManyPins(MessengerError):
    code = "too_many_pins"
    status = status.HTTP_400_BAD_REQUEST
    default_detail = "Too many pinned messages in this chat."


class HandleTaken(MessengerError):
    code = "handle_taken"
    status = status.HTTP_409_CONFLICT
    default_detail = "That handle belongs to another channel."
