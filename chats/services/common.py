"""What the write paths share: result types, the chat lock, read-by-everyone, system messages."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.plans import Emit, Plan, run_sync

from .. import events, sql
from ..exceptions import ChatNotFound
from ..models import Chat, Message
from ..payloads import message_payload
from ..sql import MessageView
from ..validation import chat_id_or_404

# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    message: MessageView
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


# --- shared steps ----------------------------------------------------------------------------


def lock_chat(*, chat_id: object, user_id: int) -> sql.LockedChat:
    """Take the chat's row lock on behalf of a member, or raise ChatNotFound. Call it inside
    the transaction whose writes the lock serializes."""
    row = run_sync(_lock_chat(chat_id=chat_id_or_404(chat_id), user_id=user_id))
    if row is None:
        raise ChatNotFound()
    return row


def lock_chat_as_operator(*, chat_id: object) -> sql.LockedChat:
    """The chat's row lock for a staff user acting from the admin, who needs no membership
    (the ``membership`` fields are None), or ChatNotFound."""
    row = (
        Chat.objects.select_for_update()
        .filter(id=chat_id_or_404(chat_id))
        .values_list("id", "kind", "last_seq", "read_all_seq", "version", "pinned_seqs")
        .first()
    )
    if row is None:
        raise ChatNotFound()
    return sql.LockedChat(*row, membership_id=None, my_last_read_seq=None, my_role=None)


def _lock_chat(*, chat_id: int, user_id: int) -> Plan[sql.LockedChat | None]:
    return (yield sql.LOCK_CHAT.one(chat=chat_id, user=user_id))


def advance_read_all(*, chat_id: int, current: int, member_ids: list[int] | None = None) -> Plan[int]:
    """Recompute the read-by-everyone watermark; ``chat.read_all`` to every member if it grew
    (coalesced per chat: ``events.read_all_latest``).

    Run it *after* the transaction that moved a watermark (or removed a member) committed.
    Then of two concurrent writers, the one whose probe starts last sees both watermarks, so
    no advance is lost -- without holding the chat lock across a commit. The UPDATE only ever
    raises the value, so racing probes cannot move it backwards.
    """
    advanced = yield sql.ADVANCE_READ_ALL.one(chat=chat_id)
    if advanced is None:
        return current
    if member_ids is None:
        member_ids = (yield sql.MEMBER_IDS.one(chat=chat_id)).user_ids
    up_to_seq = advanced.read_all_seq
    yield Emit(
        member_ids,
        events.chat_read_all(chat_id=chat_id, up_to_seq=up_to_seq),
        latest=events.read_all_latest(chat_id=chat_id, up_to_seq=up_to_seq),
    )
    return up_to_seq


def append_system_message(
    *, chat: sql.LockedChat, actor_id: int, text: str, recipients: list[int] | None, read_all_seq: int
) -> Plan[MessageView]:
    """Append a system message (a member change, a rename, a pin) to a chat whose lock the
    caller holds, and announce it to ``recipients`` after commit (None: announce nothing yet).

    The actor has seen what they did: their watermark moves past it while they are a member.
    """
    row = yield sql.APPEND_SYSTEM.one(chat=chat.id, actor=actor_id, text=text)
    message = new_message_view(
        id=row.id,
        chat_id=chat.id,
        seq=row.seq,
        sender_id=None,
        kind=Message.Kind.SYSTEM,
        text=text,
        client_id=None,
        created_at=row.created_at,
        version=row.version,
    )
    if recipients:
        yield Emit(recipients, events.message_new(message, read_all_seq=read_all_seq), None, events.watchers(chat.id))
    return message


def new_message_view(*, reply_to: sql.ReplyRef | None = None, **fields) -> MessageView:
    """The view of a message just stored: not edited, deleted, reacted to or pinned yet."""
    return MessageView(
        **fields,
        edited_at=None,
        deleted=False,
        reply_to=reply_to,
        forwarded_from=None,
        reactions=[],
        my_reactions=[],
        pinned=False,
        attachments=[],
    )
