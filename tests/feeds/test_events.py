"""The feed's domain events (issue 14): each command records its event in the transaction (or
the one statement) that makes the change, only when it changed something, and the outbox's
relay runs the feed handlers that keep the read model: a post reaches the subscribers' feeds, a
deleted one leaves them, a subscription backfills and an unsubscribe empties, a like re-ranks the
popular posts. Here one inline relay pass in the test process delivers them (tests/feeds/
test_pipeline.py runs worker processes on RabbitMQ)."""

from __future__ import annotations

import itertools

import pytest
from django.core.cache import cache
from django.db import IntegrityError, transaction

from accounts.services import delete_user
from chats import services
from chats.exceptions import ChatNotFound, Forbidden
from feeds import popular, selectors
from feeds.models import FeedEntry
from outbox.models import OutboxEvent
from outbox.relay import InlineRelay

pytestmark = pytest.mark.django_db

_keys = itertools.count()


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    settings.SEND_RATE_LIMIT = 0
    settings.MESSAGE_CHANGE_RATE_LIMIT = 0


@pytest.fixture(autouse=True)
def _fresh_ranking():
    """The popular ranking and its refresh window are global cache entries: none from another test."""
    cache.delete_many([popular.KEY, f"{popular.KEY}:refreshed"])


def events() -> list[tuple[str, dict, str]]:
    return [(e.type, e.payload, e.key) for e in OutboxEvent.objects.order_by("id")]


@pytest.fixture
def deliver(django_capture_on_commit_callbacks):
    """Run the outbox's handlers for everything recorded so far (one relay, as the server's),
    the cache drops they make after commit included; returns how many events went."""

    def _deliver() -> int:
        relay = InlineRelay(name="test-relay")
        total = 0
        with django_capture_on_commit_callbacks(execute=True):
            while claimed := relay.pass_once():
                total += claimed
        assert OutboxEvent.objects.filter(dead_at__isnull=False).count() == 0
        return total

    return _deliver


def _post(owner, channel, text="news"):
    return services.send_message(user_id=owner.id, chat_id=channel.id, client_id=f"e{next(_keys)}", text=text).message


def _feed(user) -> list[int]:
    return [post.id for post in selectors.feed_page(user_id=user.id, before=None).posts]


@pytest.fixture
def channel(make_user):
    owner = make_user()
    channel = services.create_channel(user_id=owner.id, title="News", handle=f"news{next(_keys)}x")
    OutboxEvent.objects.all().delete()
    return owner, channel


def test_each_channel_command_records_its_event_and_the_relay_builds_the_feed(make_user, channel, deliver):
    owner, chan = channel
    reader = make_user()
    services.subscribe(user_id=reader.id, chat_id=chan.id)
    post = _post(owner, chan)
    assert events() == [
        ("channel.subscribed", {"channel_id": chan.id, "user_id": reader.id}, f"channel:{chan.id}"),
        ("post.created", {"post_id": post.id, "channel_id": chan.id}, f"channel:{chan.id}"),
    ]
    assert _feed(reader) == []  # nothing until the handlers ran: the feed is eventually consistent
    assert deliver() == 2
    assert _feed(reader) == [post.id]
    assert OutboxEvent.objects.count() == 0  # delivered rows are gone

    services.like_post(user_id=reader.id, post_id=post.id, liked=True)
    services.like_post(user_id=reader.id, post_id=post.id, liked=False)
    assert [(t, p["liked"]) for t, p, _ in events()] == [("post.liked", True), ("post.liked", False)]
    services.delete_messages(user_id=owner.id, chat_id=chan.id, seqs=[post.seq])
    assert events()[-1] == ("post.deleted", {"post_id": post.id, "channel_id": chan.id}, f"channel:{chan.id}")
    deliver()
    assert not FeedEntry.objects.filter(post_id=post.id).exists()

    services.unsubscribe(user_id=reader.id, chat_id=chan.id)
    assert events() == [("channel.unsubscribed", {"channel_id": chan.id, "user_id": reader.id}, f"channel:{chan.id}")]


def test_a_subscription_backfills_and_an_unsubscribe_empties_the_feed(make_user, channel, deliver):
    owner, chan = channel
    posts = [_post(owner, chan, f"p{n}").id for n in range(3)]
    reader = make_user()
    services.subscribe(user_id=reader.id, chat_id=chan.id)
    deliver()
    assert _feed(reader) == posts[::-1]
    services.unsubscribe(user_id=reader.id, chat_id=chan.id)
    deliver()
    assert _feed(reader) == []
    assert not FeedEntry.objects.filter(user_id=reader.id).exists()


def test_a_deleted_users_subscriptions_end_through_events(make_user, channel, deliver):
    owner, chan = channel
    reader = make_user()
    services.subscribe(user_id=reader.id, chat_id=chan.id)
    _post(owner, chan)
    deliver()
    assert FeedEntry.objects.filter(user_id=reader.id).count() == 1
    reader_id = reader.id
    delete_user(user=reader)
    assert ("channel.unsubscribed", {"channel_id": chan.id, "user_id": reader_id}, f"channel:{chan.id}") in events()
    deliver()
    assert not FeedEntry.objects.filter(user_id=reader_id).exists()


def test_a_forward_into_a_channel_is_a_post(make_user, channel, deliver):
    owner, chan = channel
    reader = make_user()
    services.subscribe(user_id=reader.id, chat_id=chan.id)
    group = services.create_group(user_id=owner.id, title="Drafts", member_ids=[])
    draft = services.send_message(user_id=owner.id, chat_id=group.id, client_id="draft", text="forward me").message
    result = services.forward_messages(
        user_id=owner.id, from_chat_id=group.id, seqs=[draft.seq], to_chat_id=chan.id, client_ids=["fw1"]
    )
    forwarded = result.messages[0]
    assert [t for t, _, _ in events()][-1] == "post.created"
    deliver()
    assert _feed(reader) == [forwarded.id]


def test_nothing_is_recorded_for_other_chats_repeats_or_refusals(make_user, channel):
    owner, chan = channel
    reader, friend = make_user(), make_user()
    services.subscribe(user_id=reader.id, chat_id=chan.id)
    services.subscribe(user_id=reader.id, chat_id=chan.id)  # a repeat changes nothing
    post = services.send_message(user_id=owner.id, chat_id=chan.id, client_id="once", text="x").message
    services.send_message(user_id=owner.id, chat_id=chan.id, client_id="once", text="x")  # a retried send
    services.like_post(user_id=reader.id, post_id=post.id, liked=False)  # not liked: no change
    with pytest.raises(Forbidden):
        services.send_message(user_id=reader.id, chat_id=chan.id, client_id="r1", text="readers don't post")
    stranger = make_user()
    with pytest.raises(ChatNotFound):
        services.unsubscribe(user_id=stranger.id, chat_id=10**12)
    before = len(events())
    # Chats that are not channels record nothing, however they change.
    direct = services.open_direct_chat(user_id=owner.id, other_user_id=friend.id).chat
    message = services.send_message(user_id=owner.id, chat_id=direct.id, client_id="d1", text="hi").message
    services.set_reaction(user_id=friend.id, chat_id=direct.id, seq=message.seq, emoji="❤️", add=True)
    services.delete_messages(user_id=owner.id, chat_id=direct.id, seqs=[message.seq])
    assert len(events()) == before
    assert [t for t, _, _ in events()] == ["channel.subscribed", "post.created"]


def test_a_rolled_back_command_leaves_no_event(make_user, channel):
    _owner, chan = channel
    reader = make_user()
    with pytest.raises(IntegrityError), transaction.atomic():
        services.subscribe(user_id=reader.id, chat_id=chan.id)
        assert [t for t, _, _ in events()] == ["channel.subscribed"]
        raise IntegrityError("the caller's transaction fails after the command")
    assert events() == []


def test_the_popular_posts_rank_public_posts_by_likes_and_the_like_handler_reranks(make_user, channel, deliver, api):
    owner, chan = channel
    readers = [make_user() for _ in range(3)]
    for reader in readers:
        services.subscribe(user_id=reader.id, chat_id=chan.id)
    first, second = _post(owner, chan, "first"), _post(owner, chan, "second")
    private = services.create_channel(user_id=owner.id, title="Secret")
    hidden = _post(owner, private, "hidden")
    services.subscribe(user_id=readers[0].id, chat_id=private.id, invite=private.invite_token)
    deliver()
    assert api(readers[0]).get("/api/feed/popular").json() == {"results": []}

    for reader in readers:
        services.like_post(user_id=reader.id, post_id=second.id, liked=True)
    services.like_post(user_id=readers[0].id, post_id=first.id, liked=True)
    services.like_post(user_id=readers[0].id, post_id=hidden.id, liked=True)  # a private channel's post
    deliver()  # the first post.liked re-ranks; the rest fall in the refresh window
    body = api(readers[1]).get("/api/feed/popular").json()
    assert [(p["id"], p["likes_count"], p["liked_by_me"]) for p in body["results"]] == [
        (second.id, 3, True),
        (first.id, 1, False),
    ]
    services.delete_messages(user_id=owner.id, chat_id=chan.id, seqs=[second.seq])
    assert [p["id"] for p in api(readers[1]).get("/api/feed/popular").json()["results"]] == [first.id]
    assert api(readers[1]).get("/api/feed/popular?limit=0").json()["code"] == "validation_error"
