"""Limits on the unauthenticated account endpoints, shared across processes through the cache.

* :class:`AuthRateThrottle`: login, refresh and registration attempts per client address
  (``AUTH_THROTTLE_RATE``). The address is ``ops.client_ip``'s, never a client-chosen header.
* :class:`LoginGuard`: failed logins per account. A (username, address) pair waits 1 s after
  its ``LOGIN_BACKOFF_AFTER``-th failure and twice as long after each further one (at most
  ``LOGIN_BACKOFF_MAX_SECONDS``); the pair's count lasts until one account
  window passes without a failure, and a successful login clears it. Across all addresses a
  username takes at most ``LOGIN_ACCOUNT_FAILURES`` attempts per fixed window of
  ``LOGIN_ACCOUNT_WINDOW_SECONDS``. The attempt is counted *before* the password is checked (and
  uncounted when it succeeds), so parallel guesses cannot exceed the cap. An address that logged
  in to the account within 30 days is not held by the account cap, only by its own back-off: an
  attacker elsewhere cannot lock the user out of their usual address. Refusals are
  ``429 rate_limited`` with ``retry_after``, like the address throttle.
"""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.exceptions import Throttled
from rest_framework.throttling import SimpleRateThrottle

from ops.client_ip import client_address, limit_key
from runtime import limits

KNOWN_ADDRESS_SECONDS = 30 * 24 * 3600


class AuthRateThrottle(SimpleRateThrottle):
    scope = "auth"

    def get_rate(self) -> str | None:
        # Read per request so the rate can be changed by settings (and in tests).
        return settings.AUTH_THROTTLE_RATE or None

    def get_ident(self, request) -> str:
        return limit_key(client_address(request))

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": f"{self.scope}:{type(view).__name__}", "ident": self.get_ident(request)}


def _account(username: str) -> str:
    """A bounded key part for any string a client sends as a username (case-insensitive, as logins are)."""
    return hashlib.sha256(username.casefold().encode("utf-8", "surrogatepass")).hexdigest()[:32]


def backoff_seconds(failures: int) -> int:
    """The wait after the pair's ``failures``-th failure: 0 up to LOGIN_BACKOFF_AFTER - 1, then doubling."""
    free = settings.LOGIN_BACKOFF_AFTER
    if free <= 0 or failures < free:
        return 0
    return min(2 ** min(failures - free, 30), max(1, settings.LOGIN_BACKOFF_MAX_SECONDS))


def _refuse(wait: float) -> Throttled:
    wait = max(1, math.ceil(wait))
    return Throttled(wait=wait, detail=f"Too many failed logins for this account; retry in {wait} s.")


class LoginGuard:
    """One login attempt: ``guard.admit()`` before the password check (raises ``Throttled``), then
    ``guard.failed()`` or ``guard.succeeded()``."""

    def __init__(self, *, username: str, request) -> None:
        self.account = _account(username)
        self.address = limit_key(client_address(request))
        self.pair = f"{self.account}:{self.address}"
        self.window_key: str | None = None

    def admit(self) -> None:
        blocked_until = cache.get(f"login-wait:{self.pair}")
        if blocked_until is not None and blocked_until > time.time():
            raise _refuse(blocked_until - time.time())
        cap, seconds = settings.LOGIN_ACCOUNT_FAILURES, settings.LOGIN_ACCOUNT_WINDOW_SECONDS
        if cap <= 0:
            return
        now = time.time()
        self.window_key, _ = limits.window("login-account", self.account, seconds=seconds, now=now)
        retry_after = limits.count("login-account", self.account, limit=cap, seconds=seconds, now=now)
        if retry_after is not None and cache.get(f"login-known:{self.pair}") is None:
            raise _refuse(retry_after)

    def failed(self) -> None:
        # The pair's count lives until one account window passes without a failure.
        failures_key, keep = f"login-failures:{self.pair}", max(1, settings.LOGIN_ACCOUNT_WINDOW_SECONDS)
        cache.add(failures_key, 0, timeout=keep)
        try:
            failures = cache.incr(failures_key)
            cache.touch(failures_key, timeout=keep)
        except ValueError:  # expired between add and incr
            cache.set(failures_key, 1, timeout=keep)
            failures = 1
        wait = backoff_seconds(failures)
        if wait:
            # The value decides; the key's lifetime only tidies up.
            cache.set(f"login-wait:{self.pair}", time.time() + wait, timeout=wait + 60)

    def succeeded(self) -> None:
        if self.window_key is not None:
            try:
                cache.decr(self.window_key)  # the attempt was not a failure
            except ValueError:
                pass
        cache.delete_many([f"login-failures:{self.pair}", f"login-wait:{self.pair}"])
        cache.set(f"login-known:{self.pair}", 1, timeout=KNOWN_ADDRESS_SECONDS)
