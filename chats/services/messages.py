"""Sending, reading and typing: the hot paths of every socket and REST call."""

from __future__ import annotations

import contextlib
import datetime as dt

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ops import metrics

from .. import events, selectors, sql
from ..exceptions import (
    ChatNotFound,
    Conflict,
    Forbidden,
    InvalidInput,
    RateLimited,
)
from ..models import Chat, Membership, Message
from ..payloads import message_payload
from .common import (
    ReadResult,
    SendResult,
    _advance_read_all,
    clean_client_id,
    clean_text,
)

# --- rate limits -------------------------------------------------------------------


def send_rate_key(*, user_id: int) -> tuple[str, int, int, float]:
    """The cache key of the user's current window, the window (s), its number, and now."""
    window = max(1, settings.SEND_RATE_WINDOW_SECONDS)
    now = timezone.now().timestamp()
    bucket = int(now // window)
    return f"rl:send:{user_id}:{bucket}", window, bucket, now


def check_send_rate(*, user_id: int) -> None:
    """Fixed-window per-user send limit, shared by all processes through the cache (Redis)."""
    limit = settings.SEND_RATE_LIMIT
    if limit <= 0:
        return
    key, window, bucket, now = send_rate_key(user_id=user_id)
    cache.add(key, 0, timeout=window * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window * 2)
        count = 1
    if count > limit:
        raise RateLimited(
            f"At most {limit} messages per {window} s.", retry_after=(bucket + 1) * window - now
        )


# --- messages ----------------------------------------------------------------------


def send_message(
    *, user_id: int, chat_id: int, client_id: str, text: str, skip_channel: str | None = None
) -> SendResult:
    """Store a message once per (sender, client_id) and wake up every member's sockets.

    A repeat of the key -- same moment or later, any socket, process or REST -- stores
    nothing, consumes no seq, broadcasts nothing and returns the original message.
    ``skip_channel`` is the sending socket, which gets ``message.ack`` instead of
    ``message.new``. Sending marks the chat read up to the sender's own message.
    """
    client_id = clean_client_id(client_id)
    text = clean_text(text)
    try:
        check_send_rate(user_id=user_id)
    except RateLimited:
        # A retry of a message that is already stored is answered, not refused.
        if selectors._valid_id(chat_id) and Message.objects.filter(sender_id=user_id, client_id=client_id).exists():
            metrics.DUPLICATE_SENDS.inc()
            return _original(user_id=user_id, client_id=client_id, chat_id=chat_id)
        metrics.RATE_LIMITED.labels(limit="send").inc()
        raise
    return _send_message(user_id=user_id, chat_id=chat_id, client_id=client_id, text=text, skip_channel=skip_channel)


class _Duplicate(Exception):
    """Raised inside the send transaction to roll it back when the key was used before."""


def _original(*, user_id: int, client_id: str, chat_id: int) -> SendResult:
    original = selectors.one(Message.objects.filter(sender_id=user_id, client_id=client_id).select_related("chat"))
    if original is None:  # pragma: no cover - the unique index said it exists
        raise ChatNotFound()
    if original.chat_id != int(chat_id):
        raise Conflict({"client_id": ["Already used for a message in another chat."]})
    return SendResult(message=original, duplicate=True, read_all_seq=original.chat.read_all_seq)


def _send_message(*, user_id: int, chat_id: int, client_id: str, text: str, skip_channel: str | None) -> SendResult:
    if not selectors._valid_id(chat_id):
        raise ChatNotFound()
    if connection.vendor == "postgresql":
        return _send_message_pg(
            user_id=user_id, chat_id=int(chat_id), client_id=client_id, text=text, skip_channel=skip_channel
        )
    try:
        result, recipients, may_advance = _store_message(
            user_id=user_id, chat_id=int(chat_id), client_id=client_id, text=text, skip_channel=skip_channel
        )
    except _Duplicate:
        # The claim was rolled back: a duplicate never consumes a seq.
        metrics.DUPLICATE_SENDS.inc()
        return _original(user_id=user_id, client_id=client_id, chat_id=chat_id)
    metrics.MESSAGES_STORED.inc()
    if may_advance:  # the sender may have held the read-by-everyone watermark back
        read_all = _advance_read_all(chat_id=int(chat_id), current=result.read_all_seq, member_ids=recipients)
        result = SendResult(message=result.message, duplicate=False, read_all_seq=read_all)
    return result


def _send_message_pg(*, user_id: int, chat_id: int, client_id: str, text: str, skip_channel: str | None) -> SendResult:
    """The PostgreSQL send: one statement stores it (``sql.SEND_PG``), one more after commit
    fetches the recipients and advances read-by-everyone. Same contract as the portable path
    below (:func:`_store_message`), in two round trips instead of eight."""
    now = timezone.now()
    params = {"chat": chat_id, "user": user_id, "client_id": client_id, "text": text, "now": now}
    try:
        # Inside a caller's transaction, a savepoint keeps a refused INSERT from poisoning it.
        with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
            row = sql.run_one(sql.SEND_PG, params)
    except IntegrityError:
        row = None  # a parallel send of this key committed first; the statement rolled back whole
    if row is not None and row[4] is not None:
        return repeated_send(row, user_id=user_id, client_id=client_id, chat_id=chat_id)
    if row is None:
        return refused_send(user_id=user_id, chat_id=chat_id, client_id=client_id)
    metrics.MESSAGES_STORED.inc()
    after = sql.run_one(sql.AFTER_SEND_PG, {"chat": chat_id, "probe": row[2] <= row[1]})
    result, announcements = sent_pg(
        row, after, user_id=user_id, chat_id=chat_id, client_id=client_id, text=text, now=now,
        skip_channel=skip_channel,
    )
    for announcement in announcements:
        events.publish_on_commit(**announcement)
    return result


def sent_pg(
    row: tuple, after: tuple, *, user_id: int, chat_id: int, client_id: str, text: str, now, skip_channel: str | None
) -> tuple[SendResult, list[dict]]:
    """The result of a stored send (``sql.SEND_PG`` row, ``sql.AFTER_SEND_PG`` row) and the
    events it causes, as ``publish_on_commit`` keyword arguments (shared with ``fast.py``)."""
    seq, read_all, _, message_id = row[:4]
    advanced, recipients = after
    recipients = list(recipients or [])
    message = Message(
        id=message_id, chat_id=chat_id, seq=seq, sender_id=user_id, kind=Message.Kind.TEXT, text=text,
        client_id=client_id, created_at=now,
    )
    announcements = [
        {
            "user_ids": recipients,
            "event": {"type": "message.new", "message": message_payload(message, read_all_seq=read_all)},
            "skip_channel": skip_channel,
        }
    ]
    if advanced is not None:
        read_all = advanced
        announcements.append(
            {"user_ids": recipients, "event": {"type": "chat.read_all", "chat_id": chat_id, "up_to_seq": advanced}}
        )
    return SendResult(message=message, duplicate=False, read_all_seq=read_all), announcements


def repeated_send(row: tuple, *, user_id: int, client_id: str, chat_id: int) -> SendResult:
    """A member's repeat of a stored key: the original message, from the ``sql.SEND_PG`` row
    that found it (no query); Conflict when the key was used in another chat."""
    metrics.DUPLICATE_SENDS.inc()
    message_id, original_chat, seq, kind, text, created_at, read_all = row[4:11]
    if original_chat != chat_id:
        raise Conflict({"client_id": ["Already used for a message in another chat."]})
    original = Message(
        id=message_id, chat_id=original_chat, seq=seq, sender_id=user_id, kind=kind, text=text,
        client_id=client_id, created_at=created_at.astimezone(dt.timezone.utc),
    )
    return SendResult(message=original, duplicate=True, read_all_seq=read_all)


def refused_send(*, user_id: int, chat_id: int, client_id: str) -> SendResult:
    """Why the send statement stored nothing: not a member, a duplicate, or a deactivated peer."""
    membership = selectors.get_membership(user_id=user_id, chat_id=chat_id)  # ChatNotFound if not a member
    if Message.objects.filter(sender_id=user_id, client_id=client_id).exists():
        metrics.DUPLICATE_SENDS.inc()
        return _original(user_id=user_id, client_id=client_id, chat_id=chat_id)
    if membership.chat.kind == Chat.Kind.DIRECT and Membership.objects.filter(
        chat_id=chat_id, user__is_active=False
    ).exists():
        raise Forbidden("The other user's account is deactivated.")
    raise ChatNotFound()  # pragma: no cover - the chat vanished between the two statements


@transaction.atomic
def _store_message(
    *, user_id: int, chat_id: int, client_id: str, text: str, skip_channel: str | None
) -> tuple[SendResult, list[int], bool]:
    """The send transaction: claim the next seq under the chat lock, insert, raise the sender's watermark."""
    now = timezone.now()
    db_now = connection.ops.adapt_datetimefield_value(now)
    claimed = sql.run_one(sql.CLAIM_SEQ, {"chat": chat_id, "user": user_id, "client_id": client_id, "now": db_now})
    if claimed is None:
        raise ChatNotFound()
    _, _kind, seq, read_all, membership_id, my_read, earlier_id, peer_inactive = claimed
    if earlier_id is not None:
        raise _Duplicate()
    if peer_inactive:
        raise Forbidden("The other user's account is deactivated.")
    inserted = sql.run_one(
        sql.INSERT_MESSAGE,
        {"chat": chat_id, "seq": seq, "user": user_id, "text": text, "client_id": client_id, "now": db_now},
    )
    if inserted is None:  # a parallel send of this key committed first
        raise _Duplicate()
    sql.run(sql.RAISE_WATERMARK, {"membership": membership_id, "seq": seq})
    recipients = [row[0] for row in sql.run(sql.MEMBER_IDS, {"chat": chat_id})]
    message = Message(
        id=inserted[0], chat_id=chat_id, seq=seq, sender_id=user_id, kind=Message.Kind.TEXT, text=text,
        client_id=client_id, created_at=now,
    )
    events.publish_on_commit(
        user_ids=recipients,
        event={"type": "message.new", "message": message_payload(message, read_all_seq=read_all)},
        skip_channel=skip_channel,
    )
    # my_read may predate the lock (it only grows); if it is above read_all, the sender
    # was not holding the minimum and the probe can be skipped.
    return SendResult(message=message, duplicate=False, read_all_seq=read_all), recipients, my_read <= read_all


def mark_read(*, user_id: int, chat_id: int, up_to_seq: int, skip_channel: str | None = None) -> ReadResult:
    """Move the reader's watermark to max(old, min(up_to_seq, last_seq)).

    O(1) rows whatever the number of messages or members, and no chat lock: one
    membership UPDATE (its own transaction), then one index probe for the chat minimum
    and a chat UPDATE only when the read-by-everyone watermark grows (then
    ``chat.read_all`` goes to all members). Readers never wait for senders.
    """
    if not isinstance(up_to_seq, int) or isinstance(up_to_seq, bool) or up_to_seq < 0:
        raise InvalidInput({"up_to_seq": ["Must be a non-negative integer."]})
    if not selectors._valid_id(chat_id):
        raise ChatNotFound()
    chat_id = int(chat_id)
    raised = sql.run_one(sql.READ_UP_TO, {"chat": chat_id, "user": user_id, "seq": up_to_seq})
    if raised is None:
        state = (
            Membership.objects.filter(chat_id=chat_id, user_id=user_id)
            .values_list("last_read_seq", "chat__read_all_seq")
            .first()
        )
        if state is None:
            raise ChatNotFound()
        return ReadResult(chat_id, user_id, state[0], state[1], changed=False)
    new_value, read_all = raised
    events.publish_on_commit(
        user_ids=[user_id],
        event={"type": "chat.read", "chat_id": chat_id, "user_id": user_id, "last_read_seq": new_value},
        skip_channel=skip_channel,
    )
    read_all = _advance_read_all(chat_id=chat_id, current=read_all)
    return ReadResult(chat_id, user_id, new_value, read_all, changed=True)


def notify_typing(*, user_id: int, chat_id: int) -> bool:
    """Tell other members' sockets that ``user_id`` is typing; at most once per 3 s per chat.

    Typing is ephemeral: nothing is stored. Returns whether an event was sent.
    """
    selectors.get_membership(user_id=user_id, chat_id=chat_id)
    if not cache.add(f"typing:{user_id}:{int(chat_id)}", 1, timeout=settings.TYPING_THROTTLE_SECONDS):
        return False
    others = [uid for uid in selectors.member_ids(chat_id=int(chat_id)) if uid != user_id]
    events.publish_on_commit(user_ids=others, event={"type": "typing", "chat_id": int(chat_id), "user_id": user_id})
    return True
