from django.urls import path, re_path

from .consumers import ChatConsumer, UnknownPathConsumer

websocket_urlpatterns = [
    path("ws/", ChatConsumer.as_asgi()),
    # Any other path: a clean close with 4404 instead of a routing error (HTTP 500 + traceback).
    re_path(r"", UnknownPathConsumer.as_asgi()),
]
