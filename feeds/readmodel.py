"""How the read model follows the channels: one function per domain event.

Each is idempotent and reads the current state instead of trusting the event's order: a post
is fanned out only while it is live, a subscriber's backfill only while they subscribe, an
unsubscribe removes rows only if they no longer do. So an event handled twice, late or out of
order converges to the same rows (the outbox also runs each handler once per event). Each runs
in the caller's transaction (the event runner opens one per handler) and drops the cache
entries it made stale after commit.

Fan-out on write for channels up to ``FEED_FANOUT_MAX`` subscribers: one INSERT ... SELECT over
the channel's subscription index. Larger channels are marked ``LargeChannel`` (sticky) and their
posts are merged into each subscriber's feed at read time (``feeds.selectors``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection

from ops import metrics

from . import cache
from .models import LargeChannel

BACKFILL = 20  # posts from before a subscription that the new subscriber's feed gets

_LIVE_POST = "m.kind = 'text' AND m.deleted_at IS NULL"

_FANOUT = f"""
INSERT INTO user_feed (user_id, post_id, channel_id)
SELECT s.user_id, m.id, m.chat_id
FROM chats_message m JOIN chats_subscription s ON s.chat_id = m.chat_id
WHERE m.id = %(post)s AND m.chat_id = %(channel)s AND {_LIVE_POST}
ON CONFLICT DO NOTHING
RETURNING user_id
"""  # constant SQL fragments only; every value is a bound parameter  # nosec B608

_BACKFILL = f"""
INSERT INTO user_feed (user_id, post_id, channel_id)
SELECT s.user_id, m.id, m.chat_id
FROM chats_subscription s
CROSS JOIN LATERAL (
    SELECT m.id, m.chat_id FROM chats_message m
    WHERE m.chat_id = s.chat_id AND {_LIVE_POST} ORDER BY m.seq DESC LIMIT %(limit)s
) m
WHERE s.chat_id = %(channel)s AND s.user_id = %(user)s
ON CONFLICT DO NOTHING
"""  # constant SQL fragments only; every value is a bound parameter  # nosec B608


def _is_large(cursor, channel_id: int) -> bool | None:
    """Whether the channel fans out on read (marking it so when it has grown past
    FEED_FANOUT_MAX); None if it is not a channel."""
    cursor.execute("SELECT subscribers_count FROM chats_chat WHERE id = %s AND kind = 'channel'", [channel_id])
    row = cursor.fetchone()
    if row is None:
        return None
    if LargeChannel.objects.filter(channel_id=channel_id).exists():
        return True
    if row[0] > settings.FEED_FANOUT_MAX:
        LargeChannel.objects.get_or_create(channel_id=channel_id)
        return True
    return False


def post_created(*, post_id: int, channel_id: int) -> int:
    """Put a new post in its subscribers' feeds (or, for a large channel, drop the cached
    latest posts its subscribers' feeds merge). Returns the rows written."""
    with connection.cursor() as cursor:
        large = _is_large(cursor, channel_id)
        if large is None:
            return 0
        if large:
            cache.forget_after_commit(channel_ids=[channel_id])
            return 0
        cursor.execute(_FANOUT, {"post": post_id, "channel": channel_id})
        users = [row[0] for row in cursor.fetchall()]
    metrics.FEED_FANOUT_ROWS.inc(len(users))
    cache.forget_after_commit(user_ids=users)
    return len(users)


def post_deleted(*, post_id: int, channel_id: int) -> int:
    """Take a deleted post out of every feed. Returns the rows removed."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM user_feed WHERE post_id = %s AND NOT EXISTS ("
            " SELECT 1 FROM chats_message m WHERE m.id = %s AND m.deleted_at IS NULL) RETURNING user_id",
            [post_id, post_id],
        )
        users = [row[0] for row in cursor.fetchall()]
    cache.forget_after_commit(user_ids=users, channel_ids=[channel_id])
    return len(users)


def subscribed(*, channel_id: int, user_id: int) -> int:
    """A new subscriber's feed gets the channel's latest BACKFILL posts (none for a large
    channel: its posts are merged at read time anyway). Returns the rows written."""
    with connection.cursor() as cursor:
        large = _is_large(cursor, channel_id)
        written = 0
        if large is False:
            cursor.execute(_BACKFILL, {"channel": channel_id, "user": user_id, "limit": BACKFILL})
            written = cursor.rowcount
    cache.forget_after_commit(user_ids=[user_id])
    return written


def unsubscribed(*, channel_id: int, user_id: int) -> int:
    """Remove the channel's posts from the feed of a user who no longer subscribes."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM user_feed WHERE channel_id = %(channel)s AND user_id = %(user)s AND NOT EXISTS ("
            " SELECT 1 FROM chats_subscription s WHERE s.chat_id = %(channel)s AND s.user_id = %(user)s)",
            {"channel": channel_id, "user": user_id},
        )
        removed = cursor.rowcount
    cache.forget_after_commit(user_ids=[user_id])
    return removed
