"""WebSocket routing: ``/ws/`` is the chat socket; any other path closes with 4404."""

from __future__ import annotations

from .consumers import ChatConsumer, UnknownPathConsumer

SOCKET_PATH = "/ws/"


class SocketRouter:
    """What ``URLRouter([path("ws/", ChatConsumer), re_path("", UnknownPathConsumer)])`` did, for
    our one fixed path, without its copy of the scope (``path_remaining``, ``url_route``): each
    routing layer's frame lives as long as the socket, and so did that copy (~1 KiB per socket)."""

    def __init__(self) -> None:
        self.chat = ChatConsumer.as_asgi()
        # Any other path: a clean close with 4404 instead of a routing error (HTTP 500 + traceback).
        self.unknown = UnknownPathConsumer.as_asgi()

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        root_path = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path):]
        app = self.chat if path == SOCKET_PATH else self.unknown
        return await app(scope, receive, send)
