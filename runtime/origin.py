"""Origin check for WebSocket handshakes.

A browser always sends ``Origin``; it must match ``ALLOWED_HOSTS`` (cross-site
WebSocket hijacking is refused). A handshake *without* ``Origin`` comes from a
non-browser client (mobile app, CLI, bot): it is let through, because our sockets
authenticate by bearer token, never by cookie, so there is nothing a foreign page
could ride on. Channels' stock ``AllowedHostsOriginValidator`` refuses those.
"""

from __future__ import annotations

from channels.security.websocket import OriginValidator as _ChannelsOriginValidator
from django.conf import settings


class OriginValidator(_ChannelsOriginValidator):
    def __init__(self, application):
        super().__init__(application, allowed_origins=[])

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        # Read settings per handshake so overrides (tests, reloads) apply.
        self.allowed_origins = list(settings.ALLOWED_HOSTS)
        return self.validate_origin(parsed_origin)
