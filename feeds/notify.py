"""``channel.post``: a light wake-up for subscribers' sockets when a channel posts.

Not the post itself (that comes through the feed, the channel's history or a watch): just
``{"type": "channel.post", "chat_id", "last_seq"}``, at most once per channel per
``CHANNEL_NOTIFY_SECONDS``, to the subscribers' user groups in envelopes of ``CHUNK`` users. A
burst of posts is announced by its first post only; the ``last_seq`` then is the channel's at
that moment, and clients that want the rest read it (the feed, ``/changes``).
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.db import connection

from runtime.realtime import publish_on_commit

CHUNK = 5_000


def channel_posted(*, channel_id: int) -> int:
    """Announce the channel's new posts to its subscribers, unless announced within the last
    CHANNEL_NOTIFY_SECONDS. Returns how many users were told."""
    if not cache.add(f"feed:notify:{int(channel_id)}", 1, timeout=settings.CHANNEL_NOTIFY_SECONDS):
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT last_seq FROM chats_chat WHERE id = %s AND kind = 'channel'", [channel_id])
        row = cursor.fetchone()
        if row is None:
            return 0
        event = {"type": "channel.post", "chat_id": int(channel_id), "last_seq": row[0]}
        cursor.execute("SELECT user_id FROM chats_subscription WHERE chat_id = %s ORDER BY id", [channel_id])
        told = 0
        while chunk := [user_id for (user_id,) in cursor.fetchmany(CHUNK)]:
            publish_on_commit(user_ids=chunk, event=event)
            told += len(chunk)
    return told
