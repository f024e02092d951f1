"""The popular posts: the posts of public channels liked most in the last POPULAR_HOURS.

A ranking of post ids (likes given within the window, most first), kept in the cache: the
``post.liked`` handler computes it again at most once per POPULAR_REFRESH_SECONDS (a burst of
likes costs one query), a read computes it on a miss, and FEED_CACHE_SECONDS bounds how stale a
lost refresh can leave it. The query reads the likes of the window only (a partial index on the
❤️ reactions' time), never the whole reaction table. The posts are shown fresh
(``feeds.selectors.popular_posts``): a post deleted since drops out at once.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache as django_cache
from django.db import connection

from chats.services.channels import LIKE

from . import cache

KEY = "feed:popular"
SIZE = 100  # post ids kept in the ranking

_RANKING = """
SELECT r.message_id
FROM chats_reaction r
JOIN chats_message m ON m.id = r.message_id AND m.deleted_at IS NULL
JOIN chats_chat c ON c.id = m.chat_id AND c.kind = 'channel' AND c.handle IS NOT NULL
WHERE r.emoji = %(like)s AND r.created_at > clock_timestamp() - make_interval(hours => %(hours)s)
GROUP BY r.message_id
ORDER BY count(*) DESC, r.message_id DESC
LIMIT %(size)s
"""


def _compute() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(_RANKING, {"like": LIKE, "hours": settings.POPULAR_HOURS, "size": SIZE})
        return [row[0] for row in cursor.fetchall()]


def ranking() -> list[int]:
    """The ranked post ids (most liked first), from the cache or computed now."""
    return cache.cached("popular", KEY, _compute)


def refresh() -> bool:
    """Compute the ranking again unless another refresh ran within POPULAR_REFRESH_SECONDS;
    whether it ran."""
    if not django_cache.add(f"{KEY}:refreshed", 1, timeout=settings.POPULAR_REFRESH_SECONDS):
        return False
    cache.store(KEY, _compute())
    return True
