"""Every chat event, built in one place: one function per event ``type`` (docs/PROTOCOL.md §6).

Services emit these (``runtime.plans.Emit`` or ``runtime.realtime.publish_on_commit``), and
the consumer builds its own replies from them, so an event has one shape whatever produced
it. Every chat event carries ``chat_id`` (and a ``seq`` where there is one), so a client that
missed one can fetch what it lacks over REST.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .payloads import chat_payload, message_payload

if TYPE_CHECKING:
    from .models import Message
    from .selectors import ChatView


def message_new(message: Message, *, read_all_seq: int) -> dict:
    return {"type": "message.new", "message": message_payload(message, read_all_seq=read_all_seq)}


def chat_read(*, chat_id: int, user_id: int, last_read_seq: int) -> dict:
    """The reader's own watermark moved (to their other devices)."""
    return {"type": "chat.read", "chat_id": chat_id, "user_id": user_id, "last_read_seq": last_read_seq}


def chat_read_all(*, chat_id: int, up_to_seq: int) -> dict:
    """Every member has read up to ``up_to_seq``."""
    return {"type": "chat.read_all", "chat_id": chat_id, "up_to_seq": up_to_seq}


def chat_created(view: ChatView) -> dict:
    """The chat as the recipient sees it: sent to each member on their own."""
    return {"type": "chat.created", "chat": chat_payload(view)}


def chat_updated(*, chat_id: int, title: str) -> dict:
    return {"type": "chat.updated", "chat_id": chat_id, "title": title}


def member_added(*, chat_id: int, user_id: int, role: str) -> dict:
    return {"type": "chat.member_added", "chat_id": chat_id, "user_id": user_id, "role": role}


def member_updated(*, chat_id: int, user_id: int, role: str) -> dict:
    return {"type": "chat.member_updated", "chat_id": chat_id, "user_id": user_id, "role": role}


def member_removed(*, chat_id: int, user_id: int) -> dict:
    return {"type": "chat.member_removed", "chat_id": chat_id, "user_id": user_id}


def typing(*, chat_id: int, user_id: int) -> dict:
    return {"type": "typing", "chat_id": chat_id, "user_id": user_id}
