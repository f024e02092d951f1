"""The feed's read model: one row per (reader, post) for channels that fan out on write.

Written only by the feed's event handlers (``feeds.readmodel``), read only by
``feeds.selectors``. Nothing here is the truth: every row can be rebuilt from the channels'
subscriptions and messages (``chats``), and the reads check both before showing a row.
"""

from __future__ import annotations

from django.db import models


class FeedEntry(models.Model):
    """A post in a subscriber's feed. The key is also the feed's index: one user's rows,
    newest post first (message ids grow with time; within a channel they follow ``seq``)."""

    # Plain ids, no foreign keys: a read model is rebuilt, not protected (a fan-out of 10 000 rows
    # checks no constraint), and rows of a deleted user, post or channel are never shown.
    pk = models.CompositePrimaryKey("user_id", "post_id")
    user_id = models.BigIntegerField()
    post_id = models.BigIntegerField()
    channel_id = models.BigIntegerField()

    class Meta:
        db_table = "user_feed"
        indexes = [
            # The unsubscribe handler removes one user's rows of one channel.
            models.Index(fields=["channel_id", "user_id"], name="user_feed_channel_user_idx"),
            # A deleted post's rows.
            models.Index(fields=["post_id"], name="user_feed_post_idx"),
        ]

    def __str__(self) -> str:
        return f"post {self.post_id} in {self.user_id}'s feed"


class LargeChannel(models.Model):
    """A channel that fans out on read: it had more than ``FEED_FANOUT_MAX`` subscribers when
    one of its posts was handled. Sticky, so every post of it made since is found by the read
    path whatever its count does later (its earlier rows in ``user_feed`` stay, and the read
    merges both without doubles)."""

    channel_id = models.BigIntegerField(primary_key=True)
    since = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "feed_large_channel"

    def __str__(self) -> str:
        return f"channel {self.channel_id} (fan-out on read)"
