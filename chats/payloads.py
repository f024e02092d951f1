"""The JSON shapes of messages and chats, shared by REST responses and socket events.

Plain functions over already-loaded rows: they never query, so a payload costs the
same in a list of 200 messages as in one event fanned out to 1 000 sockets.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from attachments.payloads import attachment_payload

if TYPE_CHECKING:
    from .selectors import ChannelView, ChatView
    from .sql import MessageView


def iso(value: datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def message_payload(message: MessageView, *, read_all_seq: int) -> dict:
    """A message object as its reader sees it (``MessageView``: their own reactions, the forward's
    origin if they can see it); ``is_read`` means every member other than the sender has read it."""
    reply = message.reply_to
    forward = message.forwarded_from
    mine = message.my_reactions
    return {
        "id": message.id,
        "chat_id": message.chat_id,
        "seq": message.seq,
        "sender_id": message.sender_id,
        "kind": message.kind,
        "text": message.text,
        "client_id": message.client_id,
        "created_at": iso(message.created_at),
        "is_read": message.seq <= read_all_seq,
        "version": message.version,
        "edited_at": iso(message.edited_at) if message.edited_at is not None else None,
        "deleted": message.deleted,
        "reply_to": (
            {"seq": reply.seq, "sender_id": reply.sender_id, "text": reply.text, "deleted": reply.deleted}
            if reply is not None
            else None
        ),
        "forwarded_from": (
            {
                "chat_id": forward.chat_id if forward.visible else None,
                "seq": forward.seq if forward.visible else None,
                "sender_id": forward.sender_id,
                "sender_username": forward.sender_username,
                "created_at": iso(forward.created_at) if forward.created_at is not None else None,
            }
            if forward is not None
            else None
        ),
        "reactions": reactions_payload(message.reactions, mine),
        "pinned": message.pinned,
        "attachments": [attachment_payload(entry) for entry in message.attachments],
    }


def reactions_payload(counts: list, mine: list[str] | None) -> list[dict]:
    """``[{emoji, count, me}]`` most used first; ``mine`` None: no ``me`` (an event for everyone)."""
    if mine is None:
        return [{"emoji": emoji, "count": count} for emoji, count in counts]
    return [{"emoji": emoji, "count": count, "me": emoji in mine} for emoji, count in counts]


def chat_payload(view: ChatView) -> dict:
    """A chat as one member sees it (their own read state and unread count)."""
    chat = view.chat
    return {
        "id": chat.id,
        "kind": chat.kind,
        "title": chat.title,
        "created_by": chat.created_by_id,
        "created_at": iso(chat.created_at),
        "members": (
            [{"id": m.user_id, "username": m.user.username, "role": m.role} for m in view.members]
            if view.members is not None
            else None
        ),
        "members_count": view.members_count,
        "last_seq": chat.last_seq,
        "last_read_seq": view.last_read_seq,
        "unread_count": view.unread_count,
        "read_all_seq": chat.read_all_seq,
        "version": chat.version,
        "pinned_seqs": list(chat.pinned_seqs),
        "last_message": (
            message_payload(view.last_message, read_all_seq=chat.read_all_seq)
            if view.last_message is not None
            else None
        ),
    }


def channel_payload(view: ChannelView) -> dict:
    """A channel as one user sees it; its invite token only for its staff."""
    chat = view.chat
    return {
        "id": chat.id,
        "kind": chat.kind,
        "title": chat.title,
        "handle": chat.handle,
        "about": chat.about,
        "public": chat.is_public,
        "subscribers_count": chat.subscribers_count,
        "subscribed": view.subscribed,
        "role": view.role,
        "invite_token": chat.invite_token if view.role is not None else None,
        "created_at": iso(chat.created_at),
        "last_seq": chat.last_seq,
        "version": chat.version,
        "pinned_seqs": list(chat.pinned_seqs),
    }
