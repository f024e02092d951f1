"""ASGI entry point: HTTP goes to Django on leased threads, WebSocket through host and origin checks and JWT auth."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messenger.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from accounts.auth import JWTAuthMiddleware  # noqa: E402
from chats.consumers import SUBPROTOCOL  # noqa: E402
from chats.routing import websocket_application  # noqa: E402
from ops.errors import SocketOutageGuard  # noqa: E402
from outbox.server import StartRelayOnFirstCall  # noqa: E402
from runtime.http import ThreadLeasingHTTP  # noqa: E402
from runtime.origin import HostValidator, OriginValidator  # noqa: E402

# Inline transport (no BROKER_URL): the first call starts this process's outbox relay.
application = StartRelayOnFirstCall(
    ProtocolTypeRouter(
        {
            # Each request on one of HTTP_THREADS long-lived threads, which keep their connections.
            "http": ThreadLeasingHTTP(django_asgi_app, settings.HTTP_THREADS),
            # Host (ALLOWED_HOSTS), then Origin, before the token check and the connect limits.
            "websocket": SocketOutageGuard(
                HostValidator(OriginValidator(JWTAuthMiddleware(websocket_application())), subprotocol=SUBPROTOCOL)
            ),
        }
    )
)
