"""``SocketRouter``: WebSocket routing by exact path, without Channels' scope copy.

What ``URLRouter([path("ws/", app), re_path("", fallback)])`` does, for fixed paths only, but
without its copy of the scope (``path_remaining``, ``url_route``): each routing layer's frame
lives as long as the socket, and so did that copy (~1 KiB per socket). ``root_path`` is
honoured as ``URLRouter`` does.
"""

from __future__ import annotations

from . import looplag


class SocketRouter:
    def __init__(self, routes: dict, *, fallback):
        """``routes`` maps exact paths ("/ws/") to ASGI apps; any other path goes to ``fallback``."""
        self.routes = dict(routes)
        self.fallback = fallback

    async def __call__(self, scope, receive, send):
        looplag.ensure_started()
        path = scope.get("path", "")
        root_path = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        app = self.routes.get(path, self.fallback)
        return await app(scope, receive, send)
