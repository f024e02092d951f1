"""``seed_data --feed``: the feed's load data set, small (the full size is a benchmark's job):
power-law audiences with exact counts, posts, and the read model the handlers would leave, which
the feed reads; a rerun adds nothing."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

from chats.models import Chat, Message, Subscription
from feeds import selectors
from feeds.models import FeedEntry, LargeChannel

pytestmark = pytest.mark.django_db

ARGS = ["--feed", "--feed-users", "300", "--feed-channels", "40", "--feed-posts", "400", "--feed-subscriptions", "2000"]


def _seed() -> str:
    out = io.StringIO()
    call_command("seed_data", *ARGS, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_the_feed_set_is_consistent_and_read_by_the_feed(settings):
    settings.FEED_FANOUT_MAX = 52
    report = _seed()
    channels = Chat.objects.filter(kind="channel", handle__startswith="feed_")
    assert channels.count() == 40
    total = Subscription.objects.count()
    assert 1800 <= total <= 2200, report
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM chats_chat c WHERE c.kind = 'channel' AND c.subscribers_count <> "
            "(SELECT count(*) FROM chats_subscription s WHERE s.chat_id = c.id)"
        )
        assert cursor.fetchone()[0] == 0  # every count exact
    by_number = sorted(channels.values_list("handle", "subscribers_count"), key=lambda hc: int(hc[0][5:]))
    counts = [count for _, count in by_number]
    assert counts[0] == 60  # the biggest: a fifth of the users
    assert counts == sorted(counts, reverse=True) and counts[-1] < counts[0]  # falling with the rank
    assert Message.objects.filter(chat__in=channels).count() == 400
    large = set(LargeChannel.objects.values_list("channel_id", flat=True))
    assert large == set(channels.filter(subscribers_count__gt=52).values_list("id", flat=True))
    assert 0 < len(large) < 40
    small_subscriptions = Subscription.objects.exclude(chat_id__in=large).count()
    assert FeedEntry.objects.count() == small_subscriptions  # each small channel's newest post, per reader
    # A reader's feed merges both kinds, newest first.
    reader = Subscription.objects.filter(chat_id__in=large).values_list("user_id", flat=True).first()
    page = selectors.feed_page(user_id=reader, before=None, limit=50).posts
    mine = set(Subscription.objects.filter(user_id=reader).values_list("chat_id", flat=True))
    assert page and {post.channel_id for post in page} <= mine
    assert any(post.channel_id in large for post in page)
    assert [p.id for p in page] == sorted((p.id for p in page), reverse=True)
    # A rerun adds nothing.
    assert "Created 0 channels, 0 subscriptions, 0 posts, 0 feed rows" in _seed()
    assert Subscription.objects.count() == total
