"""Socket middleware that fills the ASGI scope in place.

Channels' ``BaseMiddleware.__call__`` copies the scope before calling the inner application;
every routing layer's frame lives as long as the socket, and so did each copy. Subclasses
implement :meth:`ScopeMiddleware.fill` (e.g. authentication) and the scope object is passed on
as it is. The layers above this one (daphne, the outage guard, the origin check) never read
the keys a subclass adds.
"""

from __future__ import annotations


class ScopeMiddleware:
    def __init__(self, inner):
        self.inner = inner

    async def fill(self, scope: dict) -> None:
        """Add this middleware's keys to ``scope``. Its locals end with it: nothing it used is
        kept for the socket's lifetime."""
        raise NotImplementedError

    async def __call__(self, scope, receive, send):
        await self.fill(scope)
        return await self.inner(scope, receive, send)
