"""Origin and Host checks for WebSocket handshakes.

A browser always sends ``Origin``; it must match ``ALLOWED_HOSTS`` (cross-site
WebSocket hijacking is refused). A handshake *without* ``Origin`` comes from a
non-browser client (mobile app, CLI, bot): it is let through, because our sockets
authenticate by bearer token, never by cookie, so there is nothing a foreign page
could ride on. Channels' stock ``AllowedHostsOriginValidator`` refuses those.
"""

from __future__ import annotations

import json

from channels.security.websocket import OriginValidator as _ChannelsOriginValidator
from django.conf import settings
from django.http.request import split_domain_port, validate_host


class OriginValidator(_ChannelsOriginValidator):
    def __init__(self, application):
        super().__init__(application, allowed_origins=[])

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        # Read settings per handshake so overrides (tests, reloads) apply.
        self.allowed_origins = list(settings.ALLOWED_HOSTS)
        return self.validate_origin(parsed_origin)


def host_allowed(scope: dict) -> bool:
    """Whether the handshake's ``Host`` names this server, as Django's ``HttpRequest.get_host``
    decides for HTTP (``ALLOWED_HOSTS``; with ``DEBUG`` and an empty list, the localhost names).
    Without a ``Host`` header the server's own address is checked; a scope with neither comes
    from an in-process caller (autobahn refuses a network handshake without ``Host``)."""
    host = next((value.decode("latin-1") for name, value in scope.get("headers") or [] if name == b"host"), None)
    if host is None:
        server = scope.get("server")
        if not server or server[0] is None:
            return True
        host = str(server[0]) if ":" not in str(server[0]) else f"[{server[0]}]"
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _ = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)


class HostValidator:
    """WebSocket handshakes must name an allowed host, like HTTP requests (Django's host check
    does not see sockets). A bad ``Host`` (DNS rebinding, a misrouted client) is accepted, gets
    ``{"type": "error", "code": "bad_host", ...}`` and a close with 4400, before any token check
    or Redis work; ``subprotocol`` is selected when offered, so a browser sees the close."""

    CLOSE_CODE = 4400

    def __init__(self, application, *, subprotocol: str | None = None):
        self.application = application
        self.subprotocol = subprotocol

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket" or host_allowed(scope):
            return await self.application(scope, receive, send)
        message = await receive()
        if message["type"] != "websocket.connect":
            return None
        offered = scope.get("subprotocols") or []
        accept = {"type": "websocket.accept"}
        if self.subprotocol in offered:
            accept["subprotocol"] = self.subprotocol
        await send(accept)
        frame = {
            "type": "error",
            "code": "bad_host",
            "detail": "The Host header names no host of this server.",
            "ref": None,
        }
        await send({"type": "websocket.send", "text": json.dumps(frame)})
        await send({"type": "websocket.close", "code": self.CLOSE_CODE})
        return None
