"""One error format for REST: ``{"code": "<stable_code>", "detail": <str | dict>}``.

The WebSocket consumer sends the same pair in an ``error`` frame. Domain errors are
:class:`MessengerError` subclasses with a fixed ``code`` and HTTP ``status``.
"""

from __future__ import annotations

import json
import logging

from django.core.exceptions import DisallowedHost, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from ops import metrics

logger = logging.getLogger(__name__)

# A backing service is down (database, or Redis behind the cache and the channel layer): the
# request may succeed on retry, so it is 503 service_unavailable, never a 500.
UNAVAILABLE_ERRORS = (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError)


class MessengerError(Exception):
    """Base for domain errors: a stable ``code``, a human ``detail`` and an HTTP status."""

    code = "error"
    status = status.HTTP_400_BAD_REQUEST
    default_detail = "Request failed."

    def __init__(self, detail: str | dict | None = None, *, retry_after: float | None = None):
        self.detail = detail if detail is not None else self.default_detail
        self.retry_after = retry_after
        super().__init__(self.detail)

    def as_dict(self) -> dict:
        body = {"code": self.code, "detail": self.detail}
        if self.retry_after is not None:
            body["retry_after"] = round(self.retry_after, 3)
        return body


class ServiceUnavailable(MessengerError):
    code = "service_unavailable"
    status = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A backing service is unavailable; retry shortly."


class RateLimited(MessengerError):
    code = "rate_limited"
    status = status.HTTP_429_TOO_MANY_REQUESTS
    default_detail = "Too many requests; slow down."


class TooLarge(MessengerError):
    code = "too_large"
    status = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is over the size limit."


class BadHost(MessengerError):
    code = "bad_host"
    default_detail = "The Host header names a host this server does not serve."


class BadRequest(MessengerError):
    code = "bad_request"
    default_detail = "The request is malformed."


def suspicious_error(exc: SuspiciousOperation) -> MessengerError:
    """The client error for one of Django's SuspiciousOperation refusals (handler400 and DRF).

    Its message is not echoed: Django's messages quote client input (the Host header).
    """
    if isinstance(exc, RequestDataTooBig):
        return TooLarge()
    if isinstance(exc, DisallowedHost):
        return BadHost()
    return BadRequest()


# Stable codes for DRF's own exceptions.
_DRF_CODES: dict[type, str] = {
    exceptions.ValidationError: "validation_error",
    exceptions.ParseError: "invalid_json",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


def _drf_code(exc: exceptions.APIException) -> str:
    for klass in type(exc).__mro__:
        if klass in _DRF_CODES:
            return _DRF_CODES[klass]
    return getattr(exc, "default_code", "error")


def exception_handler(exc, context):
    """DRF exception handler producing ``{"code", "detail"}`` for every error."""
    if isinstance(exc, MessengerError):
        response = Response(exc.as_dict(), status=exc.status)
        if exc.retry_after is not None:
            response["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
        return response
    if isinstance(exc, SuspiciousOperation):
        exc = suspicious_error(exc)
        return Response(exc.as_dict(), status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, UNAVAILABLE_ERRORS) or type(exc) is DatabaseError:
        logger.warning("database unavailable: %s", type(exc).__name__)
        metrics.count_backend_error(exc, source="http")
        return Response(ServiceUnavailable().as_dict(), status=503, headers={"Retry-After": "1"})
    if not isinstance(exc, exceptions.APIException):
        return None
    code = _drf_code(exc)
    detail = exc.detail
    # simplejwt's InvalidToken carries {"detail", "code", "messages"}; keep its code, flatten detail.
    if isinstance(detail, dict) and "code" in detail and "detail" in detail:
        code = str(detail["code"])
        detail = str(detail["detail"])
    elif isinstance(detail, list):
        detail = [str(item) for item in detail] if not isinstance(exc, exceptions.ValidationError) else detail
        if not isinstance(exc, exceptions.ValidationError) and len(detail) == 1:
            detail = detail[0]
    elif not isinstance(detail, dict):
        detail = str(detail)
    body = {"code": code, "detail": detail}
    headers = {}
    if isinstance(exc, exceptions.Throttled):
        metrics.RATE_LIMITED.labels(limit="auth").inc()
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        body["retry_after"] = exc.wait
        headers["Retry-After"] = str(int(exc.wait + 0.999))
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    return Response(body, status=exc.status_code, headers=headers)


def json_400(request, exception=None):
    """Django's handler400 (``DEBUG=false``): SuspiciousOperation outside DRF, e.g. a disallowed Host."""
    error = suspicious_error(exception) if isinstance(exception, SuspiciousOperation) else BadRequest()
    return JsonResponse(error.as_dict(), status=error.status)


def json_404(request, exception=None):
    return JsonResponse({"code": "not_found", "detail": "Not found."}, status=404)


def json_500(request):
    return JsonResponse({"code": "server_error", "detail": "Internal server error."}, status=500)


ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "code": serializers.CharField(help_text="Stable machine-readable error code."),
        "detail": serializers.JSONField(help_text="Human-readable message, or field errors for validation_error."),
        "retry_after": serializers.FloatField(required=False, help_text="Seconds to wait (rate_limited only)."),
    },
)

ERROR_RESPONSES = {
    400: OpenApiResponse(
        ErrorSerializer, description="validation_error / invalid_json / too_many_reactions / too_many_pins"
    ),
    401: OpenApiResponse(
        ErrorSerializer,
        description="not_authenticated / token_not_valid / bad_authorization_header / user_inactive / user_not_found",
    ),
    403: OpenApiResponse(
        ErrorSerializer, description="forbidden / privacy_restricted / edit_window_expired / bad signature (files)"
    ),
    404: OpenApiResponse(ErrorSerializer, description="not_found (missing, or not a member)"),
    410: OpenApiResponse(ErrorSerializer, description="gone (the message was deleted)"),
    413: OpenApiResponse(ErrorSerializer, description="too_large / quota_exceeded"),
    415: OpenApiResponse(ErrorSerializer, description="unsupported_type"),
    409: OpenApiResponse(ErrorSerializer, description="conflict"),
    429: OpenApiResponse(ErrorSerializer, description="rate_limited"),
    503: OpenApiResponse(ErrorSerializer, description="service_unavailable"),
}


class SocketOutageGuard:
    """ASGI wrapper for the WebSocket stack: an outage during the handshake is not a crash.

    Authentication reads the database and joining groups needs Redis, both before the consumer
    can answer. Unwrapped, a handshake during an outage ends in "Exception inside application"
    (a traceback per attempt) and an HTTP 500. Here the socket is accepted, gets an ``error``
    frame ``service_unavailable`` and is closed with 4503: reconnect with back-off, then catch up.
    """

    CLOSE_CODE = 4503

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        state = {"accepted": False, "closed": False}

        async def tracking_send(message):
            if message["type"] == "websocket.accept":
                state["accepted"] = True
            elif message["type"] == "websocket.close":
                state["closed"] = True
            await send(message)

        try:
            return await self.app(scope, receive, tracking_send)
        except UNAVAILABLE_ERRORS as exc:
            if state["closed"]:
                return None
            logger.warning("socket closed during an outage: %s", type(exc).__name__)
            if not state["accepted"]:
                await send({"type": "websocket.accept"})
            frame = {"type": "error", **ServiceUnavailable().as_dict(), "ref": None}
            await send({"type": "websocket.send", "text": json.dumps(frame)})
            await send({"type": "websocket.close", "code": self.CLOSE_CODE})
            return None
