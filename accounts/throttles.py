"""Throttling of login, refresh and registration per client address (shared through the cache)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class AuthRateThrottle(SimpleRateThrottle):
    scope = "auth"

    def get_rate(self) -> str | None:
        # Read per request so the rate can be changed by settings (and in tests).
        return settings.AUTH_THROTTLE_RATE or None

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": f"{self.scope}:{type(view).__name__}", "ident": self.get_ident(request)}
