"""What the write paths share: result types, input cleaning, the chat lock, system messages."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from .. import events, selectors, sql
from ..exceptions import (
    ChatNotFound,
    InvalidInput,
)
from ..models import Chat, Message
from ..payloads import message_payload

User = get_user_model()

CLIENT_ID_MAX = 64
TITLE_MAX = 128


# --- results -----------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    message: Message
    duplicate: bool
    read_all_seq: int

    def payload(self) -> dict:
        return message_payload(self.message, read_all_seq=self.read_all_seq)


@dataclass(frozen=True)
class ReadResult:
    chat_id: int
    user_id: int
    last_read_seq: int
    read_all_seq: int
    changed: bool


@dataclass(frozen=True)
class _LockedChat:
    id: int
    kind: str
    last_seq: int
    read_all_seq: int
    membership_id: int
    my_last_read_seq: int
    my_role: str


# --- validation helpers ------------------------------------------------------------


def clean_text(text: object) -> str:
    """Message text: a string of 1..MESSAGE_MAX_LENGTH characters after trimming."""
    if not isinstance(text, str):
        raise InvalidInput({"text": ["Must be a string."]})
    if "\x00" in text:  # PostgreSQL text cannot hold NUL; REST (DRF) refuses it the same way
        raise InvalidInput({"text": ["Null characters are not allowed."]})
    text = text.strip()
    if not text:
        raise InvalidInput({"text": ["Must not be blank."]})
    if len(text) > settings.MESSAGE_MAX_LENGTH:
        raise InvalidInput({"text": [f"At most {settings.MESSAGE_MAX_LENGTH} characters."]})
    return text


def clean_client_id(client_id: object) -> str:
    if not isinstance(client_id, str) or not (1 <= len(client_id) <= CLIENT_ID_MAX) or not client_id.strip():
        raise InvalidInput({"client_id": [f"Must be a string of 1..{CLIENT_ID_MAX} characters."]})
    if "\x00" in client_id:
        raise InvalidInput({"client_id": ["Null characters are not allowed."]})
    return client_id


def clean_title(title: object) -> str:
    if not isinstance(title, str) or not title.strip():
        raise InvalidInput({"title": ["Must not be blank."]})
    title = title.strip()
    if len(title) > TITLE_MAX:
        raise InvalidInput({"title": [f"At most {TITLE_MAX} characters."]})
    return title


# --- locking -----------------------------------------------------------------------

def _lock_chat(*, chat_id: int, user_id: int) -> _LockedChat:
    """Take the chat's row lock on behalf of a member, or raise ChatNotFound.

    A no-op UPDATE rather than SELECT ... FOR UPDATE: it takes the row lock on
    PostgreSQL and the write lock on SQLite (which ignores FOR UPDATE), so the
    same code is race-free on both.
    """
    if not selectors._valid_id(chat_id):
        raise ChatNotFound()
    row = sql.run_one(sql.LOCK_CHAT, {"chat": int(chat_id), "user": int(user_id)})
    if row is None:
        raise ChatNotFound()
    return _LockedChat(*row)


def _advance_read_all(*, chat_id: int, current: int, member_ids: list[int] | None = None) -> int:
    """Recompute the read-by-everyone watermark; broadcast ``chat.read_all`` if it grew.

    Call it *after* the transaction that moved a watermark (or removed a member) has
    committed. Then of two concurrent writers, the one whose probe starts last sees both
    watermarks, so no advance is lost -- without holding the chat lock across a commit.
    The UPDATE only ever raises the value, so racing probes cannot move it backwards.
    """
    row = sql.run_one(sql.ADVANCE_READ_ALL, {"chat": chat_id})
    if row is None:
        return current
    events.publish_on_commit(
        user_ids=member_ids if member_ids is not None else selectors.member_ids(chat_id=chat_id),
        event={"type": "chat.read_all", "chat_id": chat_id, "up_to_seq": row[0]},
    )
    return row[0]


def _append_message(
    *, chat: _LockedChat, sender_id: int | None, kind: str, text: str, client_id: str | None
) -> Message:
    """Insert the next message of a locked chat and bump its counter. Caller holds the lock."""
    seq = chat.last_seq + 1
    now = timezone.now()
    message = Message.objects.create(
        chat_id=chat.id, seq=seq, sender_id=sender_id, kind=kind, text=text, client_id=client_id, created_at=now
    )
    Chat.objects.filter(id=chat.id).update(last_seq=seq, last_activity_at=now)
    return message


def _system_message(
    *, chat: _LockedChat, text: str, recipients: list[int], read_all_seq: int, actor_still_member: bool = True,
    before_broadcast=None,
) -> Message:
    """Append a system message (a member change, a rename) and broadcast it after commit.

    The actor has seen what they did: their watermark moves past it. ``before_broadcast``
    runs between the append and the broadcast (to publish events that must come first).
    """
    message = _append_message(chat=chat, sender_id=None, kind=Message.Kind.SYSTEM, text=text, client_id=None)
    if actor_still_member:
        sql.run(sql.RAISE_WATERMARK, {"membership": chat.membership_id, "seq": message.seq})
    if before_broadcast is not None:
        before_broadcast()
    events.publish_on_commit(
        user_ids=recipients,
        event={"type": "message.new", "message": message_payload(message, read_all_seq=read_all_seq)},
    )
    return message
