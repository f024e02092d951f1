"""Broadcast channels: creating one, subscribing and unsubscribing.

A channel is a chat (kind ``channel``) whose members are its staff: the owner and admins, who
post through ``send_message`` like anyone sending a message. Readers are ``Subscription`` rows
and never memberships, so a post touches one row per staff member, not per subscriber; the
channel's ``subscribers_count`` moves by one in the transaction that adds or removes a row.
Each change counts in the user's ``CHAT_CHANGE`` window; creating one also in the daily
``GROUP_CREATE`` cap (groups and channels together).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

import outbox
from runtime.plans import Plan, run_sync, use_case

from .. import selectors, sql
from ..exceptions import ChatNotFound, HandleTaken, InvalidInput
from ..models import Chat, Membership
from ..validation import chat_id_or_404, clean_about, clean_handle, clean_title
from . import limits
from .changes import set_reaction
from .common import append_system_message, lock_chat


@dataclass(frozen=True)
class SubscriptionResult:
    chat_id: int
    subscribed: bool  # the state now
    changed: bool  # false: it already was so (an idempotent repeat)
    subscribers_count: int


def create_channel(*, user_id: int, title: str, handle: str | None = None, about: str = "") -> Chat:
    """A channel owned by its creator: public with a ``handle`` (unique whatever the case), else
    private (readers join with its invite token). Raises InvalidInput, HandleTaken, RateLimited."""
    title = clean_title(title)
    handle = clean_handle(handle)
    about = clean_about(about)
    limits.check(limits.CHAT_CHANGE, user_id=user_id)
    limits.check(limits.GROUP_CREATE, user_id=user_id)
    try:
        return _create_channel(user_id=user_id, title=title, handle=handle, about=about)
    except IntegrityError as error:
        if (
            getattr(error.__cause__, "diag", None)
            and error.__cause__.diag.constraint_name == "chats_chat_handle_ci_unique"
        ):
            raise HandleTaken() from None
        raise


@transaction.atomic
def _create_channel(*, user_id: int, title: str, handle: str | None, about: str) -> Chat:
    now = timezone.now()
    chat = Chat.objects.create(
        kind=Chat.Kind.CHANNEL,
        title=title,
        handle=handle,
        about=about,
        invite_token=secrets.token_urlsafe(16),
        created_by_id=user_id,
        created_at=now,
        last_activity_at=now,
    )
    Membership.objects.create(chat=chat, user_id=user_id, role=Membership.Role.OWNER, joined_at=now)
    locked = lock_chat(chat_id=chat.id, user_id=user_id)
    run_sync(
        append_system_message(
            chat=locked, actor_id=user_id, text=f"Channel «{title}» created", recipients=None, read_all_seq=0
        )
    )
    chat.refresh_from_db()
    return chat


_SUBSCRIBE = """
WITH channel AS (
    SELECT id FROM chats_chat
    WHERE id = %(chat)s AND kind = 'channel' AND (handle IS NOT NULL OR invite_token = %(invite)s
        OR EXISTS (SELECT 1 FROM chats_membership m WHERE m.chat_id = chats_chat.id AND m.user_id = %(user)s))
),
added AS (
    INSERT INTO chats_subscription (chat_id, user_id, created_at)
    SELECT id, %(user)s, %(now)s FROM channel
    ON CONFLICT (chat_id, user_id) DO NOTHING
    RETURNING chat_id
)
SELECT (SELECT count(*) FROM channel), (SELECT count(*) FROM added)
"""
_COUNT = "UPDATE chats_chat SET subscribers_count = subscribers_count + %(delta)s WHERE id = %(chat)s RETURNING subscribers_count"


@transaction.atomic
def subscribe(*, user_id: int, chat_id: object, invite: str = "") -> SubscriptionResult:
    """Subscribe to a public channel, or to a private one with its invite token (its staff need
    none). Idempotent: a repeat, or a parallel one, leaves one subscription and the count moved
    once (the unique row decides). Raises ChatNotFound (no such channel, or private without
    the token: the same answer), RateLimited."""
    chat_id = chat_id_or_404(chat_id)
    limits.check(limits.CHAT_CHANGE, user_id=user_id)
    with connection.cursor() as cursor:
        cursor.execute(_SUBSCRIBE, {"chat": chat_id, "user": user_id, "invite": invite or None, "now": timezone.now()})
        found, added = cursor.fetchone()
        if not found:
            if _is_subscribed(cursor, chat_id=chat_id, user_id=user_id):  # a private channel, already in
                return SubscriptionResult(chat_id, True, False, _count(cursor, chat_id))
            raise ChatNotFound()
        if not added:
            return SubscriptionResult(chat_id, True, False, _count(cursor, chat_id))
        cursor.execute(_COUNT, {"delta": 1, "chat": chat_id})
        count = cursor.fetchone()[0]
    _record_subscription("channel.subscribed", chat_id=chat_id, user_id=user_id)
    return SubscriptionResult(chat_id, True, True, count)


@transaction.atomic
def unsubscribe(*, user_id: int, chat_id: object) -> SubscriptionResult:
    """Stop reading a channel. Idempotent like ``subscribe``. Raises ChatNotFound for a channel
    the user may not see, RateLimited."""
    chat_id = chat_id_or_404(chat_id)
    limits.check(limits.CHAT_CHANGE, user_id=user_id)
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM chats_subscription WHERE chat_id = %(chat)s AND user_id = %(user)s RETURNING id",
            {"chat": chat_id, "user": user_id},
        )
        if cursor.fetchone() is not None:
            cursor.execute(_COUNT, {"delta": -1, "chat": chat_id})
            count = cursor.fetchone()[0]
            _record_subscription("channel.unsubscribed", chat_id=chat_id, user_id=user_id)
            return SubscriptionResult(chat_id, False, True, count)
        cursor.execute(
            "SELECT subscribers_count FROM chats_chat WHERE id = %(chat)s AND kind = 'channel' AND (handle IS NOT NULL"
            " OR EXISTS (SELECT 1 FROM chats_membership m WHERE m.chat_id = chats_chat.id AND m.user_id = %(user)s))",
            {"chat": chat_id, "user": user_id},
        )
        row = cursor.fetchone()
        if row is None:
            raise ChatNotFound()
        return SubscriptionResult(chat_id, False, False, row[0])


def unsubscribe_all(*, user_id: int) -> None:
    """End every subscription of a user about to be deleted, keeping each channel's count exact
    (a cascade would delete the rows without moving the counts). Not rate limited."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_UNSUBSCRIBE_ALL, {"user": user_id})


_UNSUBSCRIBE_ALL = f"""
WITH gone AS (DELETE FROM chats_subscription WHERE user_id = %(user)s RETURNING chat_id),
announced AS ({
    outbox.record_sql(
        "SELECT 'channel.unsubscribed' AS type, jsonb_build_object('channel_id', chat_id, 'user_id', %(user)s::bigint) AS payload,"
        " 'channel:' || chat_id AS key FROM gone"
    )
})
UPDATE chats_chat c SET subscribers_count = c.subscribers_count - 1 FROM gone WHERE c.id = gone.chat_id
"""  # constant SQL fragments only; every value is a bound parameter  # nosec B608


def _record_subscription(event_type: str, *, chat_id: int, user_id: int) -> None:
    """The domain event of a subscription that changed, in its transaction (feeds/handlers.py
    keeps the subscriber's feed in step)."""
    outbox.record(event_type, {"channel_id": chat_id, "user_id": user_id}, key=f"channel:{chat_id}")


def _is_subscribed(cursor, *, chat_id: int, user_id: int) -> bool:
    cursor.execute(
        "SELECT 1 FROM chats_subscription WHERE chat_id = %(chat)s AND user_id = %(user)s",
        {"chat": chat_id, "user": user_id},
    )
    return cursor.fetchone() is not None


def _count(cursor, chat_id: int) -> int:
    cursor.execute("SELECT subscribers_count FROM chats_chat WHERE id = %(chat)s", {"chat": chat_id})
    return cursor.fetchone()[0]


# --- likes ---------------------------------------------------------------------------------

LIKE = sql.LIKE  # a like is this reaction: the same rows, events and change log as any other


@dataclass(frozen=True)
class LikeResult:
    post_id: int
    chat_id: int
    seq: int
    likes_count: int
    liked_by_me: bool
    changed: bool
    version: int

    def payload(self) -> dict:
        return {
            "id": self.post_id,
            "channel_id": self.chat_id,
            "seq": self.seq,
            "likes_count": self.likes_count,
            "liked_by_me": self.liked_by_me,
            "changed": self.changed,
            "version": self.version,
        }


def like_post(*, user_id: int, post_id: object, liked: bool) -> LikeResult:
    """Like (or unlike) a channel post by its message id: the ❤️ reaction through
    ``set_reaction``, so idempotent and exact under concurrency (its unique row and the chat
    lock). Subscribers and staff like; a public channel's other readers are Forbidden (subscribe
    first). Raises ChatNotFound (no such post, or one the user may not see), Gone, Forbidden,
    RateLimited."""
    chat_id, seq = selectors.post_ref(user_id=user_id, post_id=post_id)
    result = set_reaction(user_id=user_id, chat_id=chat_id, seq=seq, emoji=LIKE, add=liked)
    likes = next((count for emoji, count in result.reactions if emoji == LIKE), 0)
    return LikeResult(int(post_id), chat_id, seq, likes, LIKE in result.mine, result.changed, result.version)


# --- watching a channel ------------------------------------------------------------------------


@use_case
def watch_access(*, user_id: int, chat_id: object) -> Plan[bool]:
    """May the user's socket watch this channel's live events (``channel.watch``)? Returns
    whether it must join the watchers' group: False for its staff, whose sockets get every event
    as members. Raises ChatNotFound (unreadable, missing), InvalidInput (a chat, not a channel)."""
    chat_id = chat_id_or_404(chat_id)
    access = yield sql.WATCH_ACCESS.one(chat=chat_id, user=user_id)
    if access is None or not access.can_read:
        raise ChatNotFound()
    if not access.is_channel:
        raise InvalidInput({"chat_id": ["Only channels are watched; a chat's members get its events anyway."]})
    return not access.is_member
