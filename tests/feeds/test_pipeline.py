"""Command -> outbox -> (RabbitMQ) -> run_worker -> read model -> query, with real worker
processes (issue 14): posts and subscriptions made here reach the subscribers' feeds through
workers started by the test, under both transports (inline: the workers run the handlers from
the outbox table; broker: they publish it to RabbitMQ and consume it), with a worker SIGKILLed
in the middle of the stream and its replacement started: nothing lost, nothing twice."""

from __future__ import annotations

import itertools
import threading

import pytest

from chats import services
from feeds import selectors
from feeds.models import FeedEntry
from outbox.models import ProcessedEvent
from tests.outbox.conftest import kill, metric_value, metrics, outbox_rows, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SUBSCRIBERS = 25
POSTS = 40
_keys = itertools.count()


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    settings.SEND_RATE_LIMIT = 0


def test_posts_reach_every_subscribers_feed_once_through_workers_one_of_them_killed(make_user, workers):
    owner = make_user()
    channel = services.create_channel(user_id=owner.id, title="Wire", handle=f"wire{next(_keys)}pipe")
    readers = [make_user() for _ in range(SUBSCRIBERS)]
    for reader in readers:
        services.subscribe(user_id=reader.id, chat_id=channel.id)
    first = workers.start(threads=2)
    second = workers.start(threads=2)

    posted: list[int] = []
    half = threading.Event()

    def post_all() -> None:
        for n in range(POSTS):
            message = services.send_message(
                user_id=owner.id, chat_id=channel.id, client_id=f"w{n}", text=f"post {n}"
            ).message
            posted.append(message.id)
            if n == POSTS // 2:
                half.set()

    poster = threading.Thread(target=post_all)
    poster.start()
    assert half.wait(60)
    kill(first)  # mid-stream: whatever it had claimed or consumed and not committed comes back
    workers.start(threads=2)
    poster.join(60)
    assert len(posted) == POSTS

    expected = {(reader.id, post) for reader in readers for post in posted}
    wait_until(
        lambda: FeedEntry.objects.count() >= len(expected) and outbox_rows() == 0,
        "every post in every subscriber's feed",
        processes=workers.started,
    )
    assert set(FeedEntry.objects.values_list("user_id", "post_id")) == expected  # the key: never twice
    # Each event's fan-out committed exactly once, whichever worker (or redelivery) ran it.
    fanned = ProcessedEvent.objects.filter(handler="feeds.fan_out").values_list("event_id", flat=True)
    assert len(fanned) == len(set(fanned)) == POSTS
    page = selectors.feed_page(user_id=readers[0].id, before=None)
    assert [post.id for post in page.posts] == sorted(posted, reverse=True)[:20]
    assert page.next_before is not None
    seen = metric_value(metrics(second), "messenger_worker_handler_seconds_count", type="post.created")
    assert seen > 0  # the surviving worker reports its handling time per event type

    services.unsubscribe(user_id=readers[0].id, chat_id=channel.id)
    wait_until(
        lambda: not FeedEntry.objects.filter(user_id=readers[0].id).exists(),
        "the unsubscribed feed emptied",
        processes=workers.started,
    )
