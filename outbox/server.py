"""The inline relay of a server process: started once, lazily, by the first ASGI call.

Only in the inline transport (no BROKER_URL) and with OUTBOX_SERVER_RELAY on. Starting at the
first connection, not at import, keeps it out of everything that merely imports the ASGI
module (management commands, the test process, ``manage.py check``); ``migrate`` never imports
it. Under ``python -m runtime.serve`` (or daphne) the first request or socket starts it.
"""

from __future__ import annotations

import logging
import os
import threading

from django.conf import settings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_relay = None
_pid: int | None = None


def start_server_relay() -> bool:
    """Start this process's inline relay thread if it should run and is not running; True if
    one runs now. Safe to call from any thread, any number of times (a forked child starts its own)."""
    global _relay, _pid
    if settings.BROKER_URL or not settings.OUTBOX_SERVER_RELAY:
        return False
    with _lock:
        if _relay is not None and _pid == os.getpid() and _relay.is_alive():
            return True
        from outbox.relay import InlineRelay

        _relay = InlineRelay(name="outbox-inline-relay")
        _pid = os.getpid()
        _relay.start()
        logger.info("outbox inline relay started in the server process")
        return True


class StartRelayOnFirstCall:
    """ASGI wrapper: the first call (of any protocol) starts the server's relay."""

    def __init__(self, application):
        self.application = application
        self._started = False

    async def __call__(self, scope, receive, send):
        if not self._started:
            self._started = True
            start_server_relay()
        return await self.application(scope, receive, send)
