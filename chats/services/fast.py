"""The socket hot paths on PostgreSQL, run from the event loop (``runtime/async_db.py``).

:func:`send_message` and :func:`mark_read` are the async twins of the functions of the
same names in ``messages.py``, for the one common case of each: the same statements
(``chats/sql.py``), the same contract -- stored once per ``(sender, client_id)``, seq
claimed under the chat row lock, persisted before anyone is told -- and the same events,
returned to the caller to send instead of collected from ``on_commit`` hooks. Every
statement commits on its own (autocommit), so an event built after it is an event about
a committed change.

A repeat of a stored key is answered here too: the send statement returns the original,
and ``messages.repeated_send`` turns that row into the answer for both paths. Whatever
else is not the common case -- a refused send, a read that moves nothing, a rate-limited
sender, SQLite -- goes to the sync service in a database thread (``run_in_db``), which
answers it exactly as before. So the async path never has to decide anything the sync
one does not also decide.
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from runtime import async_cache as acache
from runtime import async_db as adb
from ops import metrics
from runtime.db_threads import run_in_db

from .. import events, sql
from ..exceptions import RateLimited
from . import messages
from .common import ReadResult, SendResult

Events = list[events.Outgoing]


async def send_message(
    *, user_id: int, chat_id: int, client_id: str, text: str, skip_channel: str | None = None
) -> tuple[SendResult, Events]:
    """``messages.send_message`` for a socket; ``client_id`` and ``text`` are already clean."""
    if not adb.enabled() or not await within_send_rate(user_id=user_id):
        # SQLite, or over the rate limit: the sync path answers a retry of a stored message
        # and refuses anything else.
        return await _in_thread(
            messages.send_message,
            user_id=user_id, chat_id=chat_id, client_id=client_id, text=text, skip_channel=skip_channel,
        )
    now = timezone.now()
    params = {"chat": chat_id, "user": user_id, "client_id": client_id, "text": text, "now": now}
    try:
        row = await adb.fetch_one(sql.SEND_PG, params)
    except IntegrityError:
        # A parallel send of this key committed while this one waited for the chat lock; the
        # statement rolled back whole (no seq used). Once more: now it finds the original.
        try:
            row = await adb.fetch_one(sql.SEND_PG, params)
        except IntegrityError:
            row = None
    if row is not None and row[4] is not None:  # a repeat of a stored key: the original
        return messages.repeated_send(row, user_id=user_id, client_id=client_id, chat_id=chat_id), []
    if row is None:
        # Stored nothing: not a member, a deactivated peer, or a parallel duplicate that
        # won; the sync path finds out which and answers it.
        return await _in_thread(messages.refused_send, user_id=user_id, chat_id=chat_id, client_id=client_id)
    metrics.MESSAGES_STORED.inc()
    after = await adb.fetch_one(sql.AFTER_SEND_PG, {"chat": chat_id, "probe": row[2] <= row[1]})
    result, announcements = messages.sent_pg(
        row, after, user_id=user_id, chat_id=chat_id, client_id=client_id, text=text, now=now,
        skip_channel=skip_channel,
    )
    return result, [e for e in (events.committed(**a) for a in announcements) if e]


async def mark_read(
    *, user_id: int, chat_id: int, up_to_seq: int, skip_channel: str | None = None
) -> tuple[ReadResult, Events]:
    """``messages.mark_read`` for a socket: one forward-only UPDATE, then the minimum probe."""
    raised = None
    if adb.enabled():
        raised = await adb.fetch_one(sql.READ_UP_TO, {"chat": chat_id, "user": user_id, "seq": up_to_seq})
    if raised is None:
        # SQLite, nothing moved, not a member, or an invalid seq: the sync path says which.
        return await _in_thread(
            messages.mark_read, user_id=user_id, chat_id=chat_id, up_to_seq=up_to_seq, skip_channel=skip_channel
        )
    new_value, read_all = raised
    out = [
        events.committed(
            user_ids=[user_id],
            event={"type": "chat.read", "chat_id": chat_id, "user_id": user_id, "last_read_seq": new_value},
            skip_channel=skip_channel,
        )
    ]
    # After the watermark committed, as in messages._advance_read_all.
    advanced = await adb.fetch_one(sql.ADVANCE_READ_ALL, {"chat": chat_id})
    if advanced is not None:
        read_all = advanced[0]
        members = [r[0] for r in await adb.fetch(sql.MEMBER_IDS, {"chat": chat_id})]
        out.append(
            events.committed(
                user_ids=members, event={"type": "chat.read_all", "chat_id": chat_id, "up_to_seq": read_all}
            )
        )
    return ReadResult(chat_id, user_id, new_value, read_all, changed=True), [e for e in out if e]


async def _in_thread(fn, /, **kwargs):
    """Run a sync service in a database thread; return its result and the events it committed."""
    with events.collect() as bucket:
        result = await run_in_db(fn, **kwargs)
    return result, bucket


# --- the send rate limit, shared with messages.check_send_rate ---------------------------


async def within_send_rate(*, user_id: int) -> bool:
    """Count a send against :func:`messages.check_send_rate`'s limit, on the same counter, in one
    pipelined round trip; False when over it (the sync path then refuses and counts it)."""
    limit = settings.SEND_RATE_LIMIT
    if limit <= 0:
        return True
    client = acache.client()
    if client is None:  # in-process cache: no I/O
        try:
            messages.check_send_rate(user_id=user_id)
        except RateLimited:
            return False
        return True
    key, window, _, _ = messages.send_rate_key(user_id=user_id)
    key = acache.key(key)
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(key, 0, ex=window * 2, nx=True)
        pipe.incr(key)
        _, count = await pipe.execute()
    return count <= limit
