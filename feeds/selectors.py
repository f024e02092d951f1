"""The feed: a user's posts from the channels they subscribe to, newest first.

The one query side of channels (``GET /api/feed``). A page is the merge of two sources, by post
id (ids grow with time, and within a channel follow ``seq``): the user's ``user_feed`` rows
(channels that fan out on write) and the latest posts of the large channels they subscribe to
(fan-out on read, cached per channel). The ids of a user's first page are cached; the posts
themselves -- text, files, likes, whether the reader liked them -- are read fresh for every
page, and only posts that are live, of a channel the user still subscribes to, are shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.db import connection

from chats.services.channels import LIKE

from . import cache, popular

FIRST_PAGE = 20
MAX_PAGE = 100
_TOP = 2**63 - 1


@dataclass(frozen=True)
class FeedPost:
    id: int
    channel_id: int
    channel_title: str
    channel_handle: str | None
    seq: int
    sender_id: int | None
    text: str
    attachments: list
    created_at: object
    edited_at: object
    version: int
    likes_count: int
    liked_by_me: bool


@dataclass(frozen=True)
class FeedPage:
    posts: list[FeedPost]
    next_before: int | None  # the cursor of the next page; None: the end


def feed_page(*, user_id: int, before: int | None, limit: int = FIRST_PAGE) -> FeedPage:
    """Up to ``limit`` posts older than post id ``before`` (None: the newest).

    A cached first page holds the newest post id of each large channel it merged: when one of
    them has posted since (its own cached latest posts say so), the page is built again, so a
    large channel's post shows as soon as a fanned-out one would.
    """
    if before is None and limit == FIRST_PAGE:
        key = cache.first_page_key(user_id)
        entry = cache.lookup("first_page", key, lambda entry: _heads_unchanged(entry["heads"]))
        if entry is None:
            ids, heads = _page_ids(user_id, _TOP, limit)
            cache.store(key, {"ids": ids, "heads": heads})
        else:
            ids = entry["ids"]
    else:
        ids, _ = _page_ids(user_id, before or _TOP, limit)
    posts = _posts(user_id, ids)
    return FeedPage(posts, ids[-1] if len(ids) == limit else None)


def _page_ids(user_id: int, before: int, limit: int) -> tuple[list[int], dict[str, int]]:
    """The page's post ids, and the newest post id of each large channel merged (by channel)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT post_id FROM user_feed WHERE user_id = %s AND post_id < %s ORDER BY post_id DESC LIMIT %s",
            [user_id, before, limit],
        )
        ids = {row[0] for row in cursor.fetchall()}
        cursor.execute(
            "SELECT s.chat_id FROM chats_subscription s JOIN feed_large_channel l ON l.channel_id = s.chat_id"
            " WHERE s.user_id = %s",
            [user_id],
        )
        heads = {}
        for (channel_id,) in cursor.fetchall():
            latest = _latest(channel_id)
            heads[str(channel_id)] = latest[0] if latest else 0
            ids.update(_channel_posts(cursor, channel_id, latest, before, limit))
    return sorted(ids, reverse=True)[:limit], heads


def _heads_unchanged(heads: dict[str, int]) -> bool:
    for channel_id, head in heads.items():
        latest = _latest(int(channel_id))
        if (latest[0] if latest else 0) != head:
            return False
    return True


def _latest(channel_id: int) -> list[int]:
    """A large channel's newest CHANNEL_LATEST live post ids (cached)."""

    def load() -> list[int]:
        with connection.cursor() as cursor:
            return _live_posts(cursor, channel_id, _TOP, cache.CHANNEL_LATEST)

    return cache.cached("channel_latest", cache.channel_latest_key(channel_id), load)


def _channel_posts(cursor, channel_id: int, latest: list[int], before: int, limit: int) -> list[int]:
    """A large channel's live posts older than ``before``, newest first, at most ``limit``: from
    its latest posts when they reach that far back, else from its (chat, seq) index (ids
    follow seq within a channel)."""
    older = [post for post in latest if post < before]
    if len(older) >= limit or len(latest) < cache.CHANNEL_LATEST:
        return older[:limit]
    return _live_posts(cursor, channel_id, before, limit)


def _live_posts(cursor, channel_id: int, before: int, limit: int) -> list[int]:
    cursor.execute(
        "SELECT id FROM chats_message WHERE chat_id = %s AND kind = 'text' AND deleted_at IS NULL AND id < %s"
        " ORDER BY seq DESC LIMIT %s",
        [channel_id, before, limit],
    )
    return [row[0] for row in cursor.fetchall()]


_POSTS = """
SELECT m.id, m.chat_id, c.title, c.handle, m.seq, m.sender_id, m.text, m.attachments, m.created_at, m.edited_at,
       m.version, m.reactions,
       EXISTS (SELECT 1 FROM chats_reaction r WHERE r.message_id = m.id AND r.user_id = %(user)s AND r.emoji = %(like)s)
FROM chats_message m
JOIN chats_chat c ON c.id = m.chat_id
{scope}
WHERE m.id = ANY(%(ids)s::bigint[]) AND m.kind = 'text' AND m.deleted_at IS NULL
ORDER BY {order}
"""
# Which posts a reader is shown: of the channels they subscribe to (the feed), or of public ones.
_SUBSCRIBED = "JOIN chats_subscription s ON s.chat_id = m.chat_id AND s.user_id = %(user)s"
_PUBLIC = "AND c.kind = 'channel' AND c.handle IS NOT NULL"


def _posts(user_id: int, ids: list[int], *, public: bool = False) -> list[FeedPost]:
    """The live posts among ``ids`` as ``user_id`` sees them, newest first -- or, with
    ``public``, in the order of ``ids`` and only of public channels (subscribed or not)."""
    if not ids:
        return []
    query = _POSTS.format(
        scope=_PUBLIC if public else _SUBSCRIBED,
        order="array_position(%(ids)s::bigint[], m.id)" if public else "m.id DESC",
    )
    with connection.cursor() as cursor:
        cursor.execute(query, {"user": user_id, "ids": ids, "like": LIKE})
        rows = cursor.fetchall()
    posts = []
    for row in rows:
        reactions = _decoded(row[11])
        likes = next((count for emoji, count in reactions if emoji == LIKE), 0)
        posts.append(FeedPost(*row[:7], _decoded(row[7]), *row[8:11], likes, row[12]))
    return posts


def popular_posts(*, user_id: int, limit: int = FIRST_PAGE) -> list[FeedPost]:
    """The most liked posts of public channels in the last POPULAR_HOURS (``feeds.popular``'s
    cached ranking), as ``user_id`` sees them: live ones only, likes read fresh."""
    return _posts(user_id, popular.ranking()[:limit], public=True)


def _decoded(value):
    """A jsonb column: text through Django's connection, decoded elsewhere."""
    return json.loads(value) if isinstance(value, str) else value
