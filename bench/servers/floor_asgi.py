"""The framework floor: a stock ``AsyncWebsocketConsumer`` that joins a group per room
and ``group_send``s on receive, on daphne with channels-redis. No database, no auth.

``daphne bench.servers.floor_asgi:application`` with ``DJANGO_SETTINGS_MODULE=bench.servers.floor_settings``.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.servers.floor_settings")

import django

django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

from . import identity


class FloorConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.user_id, self.rooms = identity(self.scope.get("query_string", b"").decode("latin-1"))
        for room in self.rooms:
            await self.channel_layer.group_add(f"room.{room}", self.channel_name)
        await self.accept()
        await self.send(
            text_data=json.dumps(
                {
                    "type": "session.ready",
                    "user": {"id": self.user_id, "username": f"u{self.user_id}"},
                }
            )
        )

    async def disconnect(self, code):
        for room in getattr(self, "rooms", []):
            await self.channel_layer.group_discard(f"room.{room}", self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            frame = json.loads(text_data)
        except (TypeError, ValueError):
            return
        kind = frame.get("type")
        if kind == "message.send":
            chat_id = frame.get("chat_id")
            message = {
                "chat_id": chat_id,
                "seq": 0,
                "sender_id": self.user_id,
                "kind": "text",
                "text": frame.get("text"),
                "client_id": frame.get("client_id"),
            }
            await self.send(
                text_data=json.dumps(
                    {
                        "type": "message.ack",
                        "client_id": frame.get("client_id"),
                        "duplicate": False,
                        "message": message,
                        "ref": frame.get("ref"),
                    }
                )
            )
            await self.channel_layer.group_send(
                f"room.{chat_id}",
                {
                    "type": "room.message",
                    "text": json.dumps({"type": "message.new", "message": message}),
                    "skip": self.channel_name,
                },
            )
        elif kind == "ping":
            await self.send(text_data=json.dumps({"type": "pong", "ref": frame.get("ref")}))

    async def room_message(self, event):
        if event.get("skip") != self.channel_name:
            await self.send(text_data=event["text"])


application = ProtocolTypeRouter({"websocket": URLRouter([path("ws/", FloorConsumer.as_asgi())])})
