"""The feed's read model and query (issue 14), with the event handlers' bodies called as the
worker calls them (``feeds.readmodel``): fan-out on write, fan-out on read for large channels,
idempotence and order-independence of the handlers, the cache and its invalidation, and
``GET /api/feed`` with cursor paging. Everything against PostgreSQL and the test cache."""

from __future__ import annotations

import pytest
from django.db import connection

from chats import services
from feeds import readmodel, selectors
from feeds.models import FeedEntry, LargeChannel
from ops import metrics

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    settings.SEND_RATE_LIMIT = 0
    settings.MESSAGE_CHANGE_RATE_LIMIT = 0
    settings.CHAT_CHANGE_RATE_LIMIT = 0
    settings.GROUP_CREATE_DAILY_LIMIT = 0


@pytest.fixture
def run_handlers(django_capture_on_commit_callbacks):
    """Run a handler body as the worker does: in a transaction, its cache drops after commit."""

    def _run(fn, **payload):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(**payload)

    return _run


_keys = iter(range(10**6))


def _post(owner, channel, text="news", *, fan=None):
    message = services.send_message(
        user_id=owner.id, chat_id=channel.id, client_id=f"k{next(_keys)}", text=text
    ).message
    if fan is not None:
        fan(readmodel.post_created, post_id=message.id, channel_id=channel.id)
    return message


def _subscribe(user, channel, fan=None):
    services.subscribe(user_id=user.id, chat_id=channel.id, invite=channel.invite_token)
    if fan is not None:
        fan(readmodel.subscribed, channel_id=channel.id, user_id=user.id)


def _feed_ids(user, **kwargs) -> list[int]:
    return [post.id for post in selectors.feed_page(user_id=user.id, before=None, **kwargs).posts]


def test_a_post_fans_out_to_each_subscriber_once(make_user, run_handlers):
    owner, *readers = [make_user() for _ in range(4)]
    channel = services.create_channel(user_id=owner.id, title="News", handle="newsroom")
    for reader in readers:
        _subscribe(reader, channel, run_handlers)
    post = _post(owner, channel, "first", fan=run_handlers)
    assert sorted(FeedEntry.objects.values_list("user_id", "post_id")) == sorted((r.id, post.id) for r in readers)
    # The event handled again (at-least-once delivery) writes nothing.
    assert run_handlers(readmodel.post_created, post_id=post.id, channel_id=channel.id) == 0
    assert FeedEntry.objects.count() == 3
    for reader in readers:
        assert _feed_ids(reader) == [post.id]
    assert _feed_ids(owner) == []  # the staff do not subscribe to their own channel here


def test_the_feed_merges_channels_newest_first_and_pages_by_cursor_without_doubles(make_user, run_handlers, api):
    owner, reader = make_user(), make_user()
    channels = [services.create_channel(user_id=owner.id, title=f"C{n}", handle=f"channel{n}x") for n in range(3)]
    for channel in channels:
        _subscribe(reader, channel, run_handlers)
    posts = [_post(owner, channels[n % 3], f"post {n}", fan=run_handlers) for n in range(45)]
    pages, cursor = [], None
    while True:
        response = api(reader).get("/api/feed", {"limit": 20, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200
        body = response.json()
        pages.append([p["id"] for p in body["results"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [len(page) for page in pages] == [20, 20, 5]
    assert [i for page in pages for i in page] == [p.id for p in reversed(posts)]
    first = api(reader).get("/api/feed").json()["results"][0]
    assert first | {"created_at": "", "version": 0} == {
        "id": posts[-1].id,
        "channel": {"id": channels[44 % 3].id, "title": f"C{44 % 3}", "handle": f"channel{44 % 3}x"},
        "seq": posts[-1].seq,
        "sender_id": owner.id,
        "text": "post 44",
        "attachments": [],
        "created_at": "",
        "edited_at": None,
        "version": 0,
        "likes_count": 0,
        "liked_by_me": False,
    }


def test_likes_deleted_posts_and_unsubscribes_show_at_once_and_the_handlers_tidy_up(make_user, run_handlers):
    owner, reader, other = make_user(), make_user(), make_user()
    channel = services.create_channel(user_id=owner.id, title="Tidy", handle="tidyup")
    for user in (reader, other):
        _subscribe(user, channel, run_handlers)
    keep, doomed = _post(owner, channel, "keep", fan=run_handlers), _post(owner, channel, "doomed", fan=run_handlers)
    services.like_post(user_id=other.id, post_id=keep.id, liked=True)
    services.like_post(user_id=reader.id, post_id=keep.id, liked=True)
    [newest, second] = selectors.feed_page(user_id=reader.id, before=None, limit=50).posts
    assert newest.id == doomed.id
    assert (second.id, second.likes_count, second.liked_by_me) == (keep.id, 2, True)
    services.delete_messages(user_id=owner.id, chat_id=channel.id, seqs=[doomed.seq])
    assert _feed_ids(reader, limit=50) == [keep.id]  # before any handler ran
    assert run_handlers(readmodel.post_deleted, post_id=doomed.id, channel_id=channel.id) == 2
    assert not FeedEntry.objects.filter(post_id=doomed.id).exists()
    services.unsubscribe(user_id=reader.id, chat_id=channel.id)
    assert _feed_ids(reader, limit=50) == []
    assert run_handlers(readmodel.unsubscribed, channel_id=channel.id, user_id=reader.id) == 1
    assert not FeedEntry.objects.filter(user_id=reader.id).exists()
    # Subscribing again brings the channel's latest posts back (the backfill).
    _subscribe(reader, channel, run_handlers)
    assert _feed_ids(reader, limit=50) == [keep.id]


def test_handlers_in_any_order_converge(make_user, run_handlers):
    """A late or reordered event changes nothing it should not: the handlers read the state."""
    owner, reader = make_user(), make_user()
    channel = services.create_channel(user_id=owner.id, title="Order", handle="ordering")
    services.subscribe(user_id=reader.id, chat_id=channel.id)
    post = _post(owner, channel)
    services.unsubscribe(user_id=reader.id, chat_id=channel.id)
    # Events arrive late: subscribed and post_created after the unsubscribe committed.
    assert run_handlers(readmodel.subscribed, channel_id=channel.id, user_id=reader.id) == 0
    assert run_handlers(readmodel.post_created, post_id=post.id, channel_id=channel.id) == 0
    assert FeedEntry.objects.count() == 0
    # An unsubscribe event handled after a newer subscribe removes nothing.
    services.subscribe(user_id=reader.id, chat_id=channel.id)
    run_handlers(readmodel.subscribed, channel_id=channel.id, user_id=reader.id)
    assert run_handlers(readmodel.unsubscribed, channel_id=channel.id, user_id=reader.id) == 0
    assert _feed_ids(reader) == [post.id]
    # A post deleted before its creation was handled never lands.
    late = _post(owner, channel, "late")
    services.delete_messages(user_id=owner.id, chat_id=channel.id, seqs=[late.seq])
    assert run_handlers(readmodel.post_created, post_id=late.id, channel_id=channel.id) == 0
    assert _feed_ids(reader) == [post.id]


def test_a_large_channel_fans_out_on_read_and_its_new_posts_refresh_cached_first_pages(
    make_user, run_handlers, settings
):
    settings.FEED_FANOUT_MAX = 2
    owner, *readers = [make_user() for _ in range(5)]
    small = services.create_channel(user_id=owner.id, title="Small", handle="smallone")
    big = services.create_channel(user_id=owner.id, title="Big", handle="bigone")
    for reader in readers:
        _subscribe(reader, big, run_handlers)
    _subscribe(readers[0], small, run_handlers)
    early = _post(owner, small, "small news", fan=run_handlers)
    first = _post(owner, big, "big news", fan=run_handlers)
    assert LargeChannel.objects.filter(channel_id=big.id).exists()
    assert not FeedEntry.objects.filter(channel_id=big.id).exists()  # nothing written per subscriber
    assert _feed_ids(readers[0]) == [first.id, early.id]
    assert _feed_ids(readers[1]) == [first.id]

    def hits():
        return metrics.FEED_CACHE.labels(cache="first_page", result="hit")._value.get()

    before = hits()
    assert _feed_ids(readers[1]) == [first.id]
    assert hits() == before + 1  # the cached first page
    second = _post(owner, big, "more big news", fan=run_handlers)  # drops the channel's latest only
    assert _feed_ids(readers[1]) == [second.id, first.id]  # the cached page saw the new head
    assert hits() == before + 1
    # Sticky: fewer subscribers later, its posts are still merged at read time.
    services.unsubscribe(user_id=readers[3].id, chat_id=big.id)
    services.unsubscribe(user_id=readers[2].id, chat_id=big.id)
    third = _post(owner, big, "still big", fan=run_handlers)
    assert _feed_ids(readers[0]) == [third.id, second.id, first.id, early.id]
    assert _feed_ids(readers[2]) == []


def test_deep_pages_of_a_large_channel_come_from_its_index(make_user, run_handlers, settings):
    settings.FEED_FANOUT_MAX = 0
    owner, reader = make_user(), make_user()
    big = services.create_channel(user_id=owner.id, title="Deep", handle="deepone")
    _subscribe(reader, big, run_handlers)
    posts = [_post(owner, big, f"p{n}", fan=run_handlers) for n in range(130)]  # past CHANNEL_LATEST
    seen, before = [], None
    while True:
        page = selectors.feed_page(user_id=reader.id, before=before, limit=25)
        seen += [p.id for p in page.posts]
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == [p.id for p in reversed(posts)]


def test_a_fan_out_drops_the_subscribers_cached_first_pages(make_user, run_handlers):
    owner, reader = make_user(), make_user()
    channel = services.create_channel(user_id=owner.id, title="Cache", handle="cacheme")
    _subscribe(reader, channel, run_handlers)
    assert _feed_ids(reader) == []  # cached: empty
    post = _post(owner, channel, fan=run_handlers)
    assert _feed_ids(reader) == [post.id]


def test_feed_query_refusals(make_user, api):
    reader = make_user()
    for query in ({"cursor": "abc"}, {"cursor": "0"}, {"cursor": "-5"}, {"limit": 0}, {"limit": 101}, {"limit": ""}):
        response = api(reader).get("/api/feed", query)
        assert response.status_code == 400 and response.json()["code"] == "validation_error", query
    assert api().get("/api/feed").status_code == 401
    assert api(reader).get("/api/feed").json() == {"results": [], "next_cursor": None}


def test_the_feed_reads_use_their_indexes(make_user, run_handlers):
    """The page query walks user_feed's key; the large channels' posts their (chat, seq) index."""
    owner, reader = make_user(), make_user()
    channel = services.create_channel(user_id=owner.id, title="Plan", handle="planned")
    _subscribe(reader, channel, run_handlers)
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT post_id FROM user_feed WHERE user_id = %s AND post_id < %s ORDER BY post_id DESC LIMIT 20",
            [reader.id, 2**62],
        )
        plan = " ".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET enable_seqscan = on")
    assert "user_feed_pkey" in plan, plan
