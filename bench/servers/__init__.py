"""The two reference servers the bench runs next to ours: a raw relay and a Channels floor.

Both speak the subset of our WebSocket protocol the client uses (``session.ready``,
``message.send`` -> ``message.ack`` + ``message.new``, ``ping``), with the identity and
rooms in the query string instead of a JWT: ``/ws/?token=u<user id>&rooms=<id>,<id>``.
"""

from __future__ import annotations

from urllib.parse import parse_qs


def identity(query: str) -> tuple[int, list[int]]:
    """(user id, room ids) from ``token=u<id>&rooms=1,2``."""
    qs = parse_qs(query)
    token = (qs.get("token") or ["u0"])[0]
    user_id = int(token[1:]) if token.startswith("u") and token[1:].isdigit() else 0
    rooms = [int(r) for r in (qs.get("rooms") or [""])[0].split(",") if r.isdigit()]
    return user_id, rooms
