"""WebSocket routing: ``/ws/`` is the chat socket; any other path closes with 4404."""

from __future__ import annotations

from runtime.routing import SocketRouter

from .consumers import ChatConsumer, UnknownPathConsumer

SOCKET_PATH = "/ws/"


def websocket_application() -> SocketRouter:
    # Any other path: a clean close with 4404 instead of a routing error (HTTP 500 + traceback).
    return SocketRouter({SOCKET_PATH: ChatConsumer.as_asgi()}, fallback=UnknownPathConsumer.as_asgi())
