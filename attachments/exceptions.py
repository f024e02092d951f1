"""Refusals of an upload, each with its own stable code (see ops.errors)."""

from __future__ import annotations

from rest_framework import status

from ops.errors import MessengerError, RateLimited, TooLarge

__all__ = ["FileNotFound", "QuotaExceeded", "RateLimited", "TooLarge", "UnsupportedType", "UploadInvalid"]


class UnsupportedType(MessengerError):
    """The bytes are not what the upload says or needs (a voice message that is not audio, an
    image that does not decode)."""

    code = "unsupported_type"
    status = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    default_detail = "This kind of file is not accepted."


class QuotaExceeded(MessengerError):
    code = "quota_exceeded"
    status = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Your storage quota is used up."


class UploadInvalid(MessengerError):
    code = "validation_error"
    status = status.HTTP_400_BAD_REQUEST
    default_detail = "Invalid upload."


class FileNotFound(MessengerError):
    """No such upload, or not one the caller can see: the two look alike."""

    code = "not_found"
    status = status.HTTP_404_NOT_FOUND
    default_detail = "File not found."
