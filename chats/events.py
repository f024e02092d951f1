"""Every chat event, built in one place: one function per event ``type`` (docs/PROTOCOL.md §6).

Services emit these (``runtime.plans.Emit`` or ``runtime.realtime.publish_on_commit``), and
the consumer builds its own replies from them, so an event has one shape whatever produced
it. Every chat event carries ``chat_id`` (and a ``seq`` where there is one), so a client that
missed one can fetch what it lacks over REST.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from runtime.realtime import Latest

from .payloads import chat_payload, message_payload, reactions_payload

if TYPE_CHECKING:
    from .selectors import ChatView
    from .sql import MessageView


def watchers(chat_id: int) -> tuple[str, ...]:
    """The layer group of the sockets watching a channel they read but are not members of
    (``channel.watch``): a chat's message events go to its members and to this group. Members
    never join it (they would get each event twice)."""
    return (f"watch.{int(chat_id)}",)


def message_new(message: MessageView, *, read_all_seq: int) -> dict:
    return {"type": "message.new", "message": message_payload(message, read_all_seq=read_all_seq)}


def chat_read(*, chat_id: int, user_id: int, last_read_seq: int) -> dict:
    """The reader's own watermark moved (to their other devices)."""
    return {"type": "chat.read", "chat_id": chat_id, "user_id": user_id, "last_read_seq": last_read_seq}


def chat_read_all(*, chat_id: int, up_to_seq: int) -> dict:
    """Every member has read up to ``up_to_seq``."""
    return {"type": "chat.read_all", "chat_id": chat_id, "up_to_seq": up_to_seq}


def read_all_latest(*, chat_id: int, up_to_seq: int) -> Latest | None:
    """``chat.read_all`` of a chat goes out at most once per READ_ALL_COALESCE_MS, the latest
    value always last (docs/PROTOCOL.md §4); None when the setting is 0 (every advance is sent)."""
    window_ms = settings.READ_ALL_COALESCE_MS
    if window_ms <= 0:
        return None
    return Latest(key=f"read_all.{int(chat_id)}", value=int(up_to_seq), window=window_ms / 1000)


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


def message_edited(message: MessageView, *, read_all_seq: int) -> dict:
    """A message's text changed (the object as everyone sees it: ``reactions[].me`` false)."""
    return {"type": "message.edited", "message": message_payload(message, read_all_seq=read_all_seq)}


def message_deleted(*, chat_id: int, seqs: list[int], version: int) -> dict:
    """These messages became tombstones (and left the pins), all at ``version``."""
    return {"type": "message.deleted", "chat_id": chat_id, "seqs": seqs, "version": version}


def message_reactions(
    *, chat_id: int, seq: int, reactions: list, user_id: int, emoji: str, added: bool, version: int
) -> dict:
    """A message's reaction counts after ``user_id`` added or removed ``emoji``."""
    return {
        "type": "message.reactions",
        "chat_id": chat_id,
        "seq": seq,
        "reactions": reactions_payload(reactions, None),
        "user_id": user_id,
        "emoji": emoji,
        "added": added,
        "version": version,
    }


def chat_pins(*, chat_id: int, pinned_seqs: list[int], version: int) -> dict:
    """The chat's pinned messages, newest pin first."""
    return {"type": "chat.pins", "chat_id": chat_id, "pinned_seqs": pinned_seqs, "version": version}
