"""The ceiling: a plain ``websockets`` relay (uvloop if installed, no compression, no persistence).

``python -m bench.servers.raw_relay --port N``. A ``message.send`` is acked to the sender
and broadcast as ``message.new`` to every other socket in the room, in process memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from urllib.parse import urlsplit

from websockets.asyncio.server import broadcast, serve

from . import identity

rooms: dict[int, set] = {}


async def handler(ws) -> None:
    user_id, my_rooms = identity(urlsplit(ws.request.path).query)
    for room in my_rooms:
        rooms.setdefault(room, set()).add(ws)
    try:
        await ws.send(
            json.dumps(
                {
                    "type": "session.ready",
                    "user": {"id": user_id, "username": f"u{user_id}"},
                }
            )
        )
        async for text in ws:
            try:
                frame = json.loads(text)
            except ValueError:
                continue
            kind = frame.get("type")
            if kind == "message.send":
                chat_id = frame.get("chat_id")
                message = {
                    "chat_id": chat_id,
                    "seq": 0,
                    "sender_id": user_id,
                    "kind": "text",
                    "text": frame.get("text"),
                    "client_id": frame.get("client_id"),
                }
                await ws.send(
                    json.dumps(
                        {
                            "type": "message.ack",
                            "client_id": frame.get("client_id"),
                            "duplicate": False,
                            "message": message,
                            "ref": frame.get("ref"),
                        }
                    )
                )
                members = rooms.get(chat_id, ())
                broadcast(
                    [m for m in members if m is not ws],
                    json.dumps({"type": "message.new", "message": message}),
                )
            elif kind == "ping":
                await ws.send(json.dumps({"type": "pong", "ref": frame.get("ref")}))
    finally:
        for room in my_rooms:
            members = rooms.get(room)
            if members is not None:
                members.discard(ws)
                if not members:
                    del rooms[room]


async def main(port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(
        handler,
        "127.0.0.1",
        port,
        compression=None,
        max_size=65536,
        ping_interval=None,
        backlog=4096,
    ):
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(args.port))
    else:
        uvloop.run(main(args.port))
