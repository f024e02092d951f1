"""Sending, reading and typing: one implementation each, for REST and the socket alike.

Each is a plan (``runtime.plans``): ``send_message(...)`` runs it in the calling thread, and
``await send_message.run_async(...)`` runs the very same steps from the event loop, returning
the events for the socket to send after its own reply. Nothing here knows which.
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError

from ops import metrics
from runtime.plans import AddKey, Emit, Plan, use_case

from .. import events, sql
from ..exceptions import ChatNotFound, Conflict, Forbidden, Gone, InvalidInput
from ..models import Message
from ..validation import (
    chat_id_or_404,
    clean_attachment_ids,
    clean_caption,
    clean_client_id,
    clean_optional_seq,
    clean_seq,
    clean_text,
)
from . import limits
from .common import ReadResult, SendResult, advance_read_all, new_message_view


@use_case
def send_message(
    *,
    user_id: int,
    chat_id: int,
    client_id: str,
    text: str | None,
    reply_to_seq: int | None = None,
    attachment_ids: list[int] | None = None,
    skip_channel: str | None = None,
) -> Plan[SendResult]:
    """Store a message once per ``(sender, client_id)`` and wake up every member's sockets.

    A repeat of the key -- same moment or later, any socket, process or REST -- stores
    nothing, consumes no seq, broadcasts nothing and returns the original message (also to a
    sender over the rate limit); a key used in another chat is a Conflict. ``skip_channel``
    is the sending socket, which gets ``message.ack`` instead of ``message.new``. Sending
    marks the chat read up to the sender's own message. ``reply_to_seq`` names a live message
    of the chat it answers. ``attachment_ids``: up to 10 of the sender's uploads the message
    carries (its text is then an optional caption); a repeat attaches nothing again. Raises ChatNotFound (not a member), Forbidden (a direct chat with a
    deactivated user), Gone (the answered message was deleted), RateLimited, InvalidInput.
    """
    chat_id = chat_id_or_404(chat_id)
    client_id = clean_client_id(client_id)
    uploads = clean_attachment_ids(attachment_ids)
    text = clean_caption(text) if uploads else clean_text(text)
    reply_to_seq = clean_optional_seq(reply_to_seq, field="reply_to_seq")
    wait = yield from limits.over(limits.SEND, user_id=user_id)
    keys = {"chat": chat_id, "user": user_id, "client_id": client_id, "reply": reply_to_seq, "uploads": uploads}
    send = sql.SEND_ATTACHED if uploads else sql.SEND
    if wait is not None:
        obstacles = yield sql.SEND_OBSTACLES.one(**keys)
        if obstacles.is_member and obstacles.original.id is not None:
            return (yield from _repeat(obstacles.original, user_id=user_id, chat_id=chat_id))
        raise limits.SEND.refusal(wait)

    params = {**keys, "text": text}
    try:
        row = yield send.one(savepoint=True, **params)
    except IntegrityError:
        # A parallel send of this key committed while this one waited for the chat lock (or an
        # upload was purged under it); the statement rolled back whole (no seq used). Once more:
        # now it finds the original, or SEND_OBSTACLES says what is wrong.
        row = yield send.one(savepoint=True, **params)
    if row is not None and row.original.id is not None:
        return (yield from _repeat(row.original, user_id=user_id, chat_id=chat_id))
    if row is None:
        obstacles = yield sql.SEND_OBSTACLES.one(**keys)
        if not obstacles.is_member:
            if obstacles.can_read:  # a channel's reader
                raise Forbidden("Only the channel's owner and admins post in it.")
            raise ChatNotFound()
        if obstacles.original.id is not None:
            return (yield from _repeat(obstacles.original, user_id=user_id, chat_id=chat_id))
        if obstacles.peer_inactive:
            raise Forbidden("The other user's account is deactivated.")
        if obstacles.reply_state == "missing":
            raise InvalidInput({"reply_to_seq": ["No such message in this chat."]})
        if obstacles.reply_state == "deleted":
            raise Gone("The message you answer was deleted.")
        if not obstacles.uploads_ok:
            raise InvalidInput({"attachment_ids": ["Not your uploads, or no longer there: upload the files again."]})
        raise ChatNotFound()  # the chat vanished between the two statements

    metrics.MESSAGES_STORED.inc()
    # The sender may have held read-by-everyone back only if their old watermark was its minimum.
    after = yield sql.AFTER_SEND.one(chat=chat_id, probe=row.my_last_read_seq <= row.read_all_seq)
    recipients = after.recipients or []
    read_all = row.read_all_seq
    if uploads:  # the stored attachments, as the view reads them
        message = (yield sql.MESSAGES_BY_SEQS.all(chat=chat_id, seqs=[row.seq], reader=user_id))[0]
    else:
        message = new_message_view(
            id=row.stored_id,
            chat_id=chat_id,
            seq=row.seq,
            sender_id=user_id,
            kind=Message.Kind.TEXT,
            text=text,
            client_id=client_id,
            created_at=row.created_at,
            version=row.version,
            reply_to=(
                sql.ReplyRef(reply_to_seq, row.reply_sender_id, row.reply_text or "", False)
                if reply_to_seq is not None
                else None
            ),
        )
    yield Emit(recipients, events.message_new(message, read_all_seq=read_all), skip_channel, events.watchers(chat_id))
    if after.advanced_read_all_seq is not None:
        read_all = after.advanced_read_all_seq
        yield Emit(
            recipients,
            events.chat_read_all(chat_id=chat_id, up_to_seq=read_all),
            latest=events.read_all_latest(chat_id=chat_id, up_to_seq=read_all),
        )
    return SendResult(message=message, duplicate=False, read_all_seq=read_all)


def _repeat(original: sql.Original, *, user_id: int, chat_id: int) -> Plan[SendResult]:
    """The answer to a repeat of a stored key: the original as it is now (it may have been
    edited or deleted since), or Conflict if it is in another chat."""
    if original.chat_id != chat_id:
        raise Conflict({"client_id": ["Already used for a message in another chat."]})
    metrics.DUPLICATE_SENDS.inc()
    views = yield sql.MESSAGES_BY_SEQS.all(chat=chat_id, seqs=[original.seq], reader=user_id)
    return SendResult(message=views[0], duplicate=True, read_all_seq=original.read_all_seq)


@use_case
def mark_read(*, user_id: int, chat_id: int, up_to_seq: int, skip_channel: str | None = None) -> Plan[ReadResult]:
    """Move the reader's watermark to max(old, min(up_to_seq, last_seq)).

    O(1) rows whatever the number of messages or members, and no chat lock: one forward-only
    membership UPDATE (its own transaction), then one index probe for the chat minimum and a
    chat UPDATE only when the read-by-everyone watermark grows (then ``chat.read_all`` goes to
    all members). Readers never wait for senders. ``chat.read`` goes to the reader's other
    sockets (not ``skip_channel``).
    """
    chat_id = chat_id_or_404(chat_id)
    up_to_seq = clean_seq(up_to_seq)
    raised = yield sql.READ_UP_TO.one(chat=chat_id, user=user_id, seq=up_to_seq)
    if raised is None:  # nothing moved, or not a member
        state = yield sql.READ_STATE.one(chat=chat_id, user=user_id)
        if state is None:
            raise ChatNotFound()
        return ReadResult(chat_id, user_id, state.last_read_seq, state.read_all_seq, changed=False)
    yield Emit(
        [user_id], events.chat_read(chat_id=chat_id, user_id=user_id, last_read_seq=raised.last_read_seq), skip_channel
    )
    read_all = yield from advance_read_all(chat_id=chat_id, current=raised.read_all_seq)
    return ReadResult(chat_id, user_id, raised.last_read_seq, read_all, changed=True)


@use_case
def notify_typing(*, user_id: int, chat_id: int) -> Plan[bool]:
    """Tell the other members' sockets that ``user_id`` is typing; at most once per
    TYPING_THROTTLE_SECONDS per chat. Ephemeral: nothing is stored. Returns whether it was sent."""
    chat_id = chat_id_or_404(chat_id)
    members = yield sql.MEMBERS_IF_MEMBER.one(chat=chat_id, user=user_id)
    if members is None:
        raise ChatNotFound()
    first = yield AddKey(f"typing:{user_id}:{chat_id}", ttl=settings.TYPING_THROTTLE_SECONDS)
    if not first:
        return False
    yield Emit([uid for uid in members.user_ids if uid != user_id], events.typing(chat_id=chat_id, user_id=user_id))
    return True
