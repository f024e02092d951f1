"""One log line and the HTTP metrics for every request, under a request id.

First in ``MIDDLEWARE``, so the duration covers every other middleware and even redirects
and static files are counted. The request id is the caller's ``X-Request-ID`` when it is a
sane token (nginx passes its own), else a fresh one; it is on every log line written while
the request is served and goes back in the ``X-Request-ID`` response header.

The line holds the path without its query string (a ``?token=`` stays out of the log), the
status, the duration, the authenticated user id (``None`` for anonymous callers; an
unevaluated session user is never loaded just to be logged) and the chat id when the route
names one. Probes (``/healthz``, ``/readyz``, ``/metrics``) log at DEBUG: a scraper every few
seconds per replica would drown the rest.
"""

from __future__ import annotations

import logging
import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.functional import empty

from ops import client_ip, metrics
from ops.logs import request_id_from, request_id_var

logger = logging.getLogger("messenger.request")

REQUEST_ID_HEADER = "X-Request-ID"
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Metric labels take only these methods, so a client inventing methods cannot grow the label set.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _user_id(request: HttpRequest) -> int | None:
    user = request.__dict__.get("user")
    if user is None:
        return None
    wrapped = user.__dict__.get("_wrapped", user)  # a SimpleLazyObject: only if already loaded
    if wrapped is empty or not getattr(wrapped, "is_authenticated", False):
        return None
    return wrapped.pk


def _route(request: HttpRequest) -> tuple[str, int | None]:
    """The route's view name (a bounded label) and the chat id it addresses, if any."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched", None
    view_name = match.view_name or "unnamed"
    chat_id = match.kwargs.get("chat_id")
    if chat_id is None and view_name.startswith("chat-"):
        chat_id = match.kwargs.get("pk")
    try:
        chat_id = int(chat_id) if chat_id is not None else None
    except (TypeError, ValueError):
        chat_id = None
    return view_name, chat_id


class HybridMiddleware:
    """A middleware that runs sync or async, as the chain around it does, with no thread hop:
    subclasses branch on ``self.is_async`` in ``__call__``."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)


class RequestLogMiddleware(HybridMiddleware):
    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self._acall(request)
        request_id, token, started = self._begin(request)
        try:
            response = self.get_response(request)
            self._finish(request, response, request_id, started)
            return response
        finally:
            request_id_var.reset(token)

    async def _acall(self, request: HttpRequest):
        request_id, token, started = self._begin(request)
        try:
            response = await self.get_response(request)
            self._finish(request, response, request_id, started)
            return response
        finally:
            request_id_var.reset(token)

    @staticmethod
    def _begin(request: HttpRequest):
        request_id = request_id_from(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id
        return request_id, request_id_var.set(request_id), time.perf_counter()

    @staticmethod
    def _finish(request: HttpRequest, response: HttpResponseBase, request_id: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        response[REQUEST_ID_HEADER] = request_id
        route, chat_id = _route(request)
        method = request.method if request.method in _METHODS else "other"
        metrics.HTTP_REQUESTS.labels(method=method, route=route, status=str(response.status_code)).inc()
        metrics.HTTP_DURATION.labels(method=method, route=route).observe(elapsed)
        logger.log(
            logging.DEBUG if request.path in QUIET_PATHS else logging.INFO,
            "http.request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 2),
                "user_id": _user_id(request),
                "chat_id": chat_id,
                "request_id": request_id,
            },
        )


class ProxyHeadersMiddleware(HybridMiddleware):
    """Forwarding headers count only when a trusted proxy sent them.

    ``SECURE_PROXY_SSL_HEADER`` makes Django believe ``X-Forwarded-Proto``; from anyone but a
    ``TRUSTED_PROXIES`` address the header is the client's own claim, so it is dropped before
    Django reads it (``X-Forwarded-For`` is read only through ``ops.client_ip``, which applies
    the same rule).
    """

    def __call__(self, request: HttpRequest):
        if "HTTP_X_FORWARDED_PROTO" in request.META and not client_ip.from_trusted_proxy(request):
            del request.META["HTTP_X_FORWARDED_PROTO"]
        return self.get_response(request)
