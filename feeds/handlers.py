"""The feed's event handlers: the outbox runs them after the command that recorded the event
committed -- in ``run_worker`` processes through RabbitMQ, or in the server process without a
broker. Each runs in its own transaction, once per event for good (``outbox.runner``), and the
bodies read the current state, so a retried, late or reordered event converges.

| event                  | recorded by                                  | handlers                          |
|------------------------|----------------------------------------------|-----------------------------------|
| `post.created`         | a send or forward to a channel (chats.sql)   | fan-out to `user_feed`; `channel.post` |
| `post.deleted`         | a delete for everyone in a channel           | remove it from the feeds          |
| `post.liked`           | the ❤️ reaction added or removed on a post   | the popular-posts ranking         |
| `channel.subscribed`   | ``chats.services.subscribe``                 | backfill the new subscriber's feed |
| `channel.unsubscribed` | ``unsubscribe`` / a deleted user             | take the channel out of the feed  |
"""

from __future__ import annotations

from outbox import Event, handler

from . import notify, popular, readmodel


@handler("post.created", name="feeds.fan_out")
def fan_out(event: Event) -> None:
    readmodel.post_created(post_id=event.payload["post_id"], channel_id=event.payload["channel_id"])


@handler("post.created", name="feeds.announce")
def announce(event: Event) -> None:
    notify.channel_posted(channel_id=event.payload["channel_id"])


@handler("post.deleted", name="feeds.remove_post")
def remove_post(event: Event) -> None:
    readmodel.post_deleted(post_id=event.payload["post_id"], channel_id=event.payload["channel_id"])


@handler("post.liked", name="feeds.rank")
def rank(event: Event) -> None:
    popular.refresh()


@handler("channel.subscribed", name="feeds.backfill")
def backfill(event: Event) -> None:
    readmodel.subscribed(channel_id=event.payload["channel_id"], user_id=event.payload["user_id"])


@handler("channel.unsubscribed", name="feeds.forget_channel")
def forget_channel(event: Event) -> None:
    readmodel.unsubscribed(channel_id=event.payload["channel_id"], user_id=event.payload["user_id"])
