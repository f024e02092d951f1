"""The feed's load data set: channels with power-law audiences, their posts, and the read model.

``FeedPlan`` is pure (who subscribes to what, how many posts, which rows the read model holds),
``FeedLoader`` writes it with COPY, one transaction per batch of channels, skipping channels
already loaded (by handle), so a crashed run resumes. The users are the bulk loader's
(``load_0000001``...), loaded first by the same code.

Shape: channel ``c`` (0-based) is ``@feed_<c+1>``, owned by user ``c mod users``, with
``subscribers(c) = min(users, top / (c+1)**alpha)`` subscribers, ``alpha`` solved so that the
counts add up to the requested subscriptions (a few channels get 100 000+, most a few
hundred: a Zipf audience). Its subscribers are users ``(start + k*step) mod users``, k <
subscribers, for a per-channel start and a step coprime with ``users`` (distinct, spread).
Posts are split evenly, one per minute, the newest last. The read model is what the feed's
handlers would have left: channels over ``FEED_FANOUT_MAX`` are ``LargeChannel`` rows, and each
smaller channel's newest ``FEED_ROWS_PER_CHANNEL`` posts are in each subscriber's ``user_feed``
(older posts are history: a retention the handlers do not keep yet, see ARCHITECTURE).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from django.db import connection, transaction

from .plan import username
from .sinks import Clock, PostgresSink, Progress, no_tick

HANDLE_PREFIX = "feed_"
FEED_ROWS_PER_CHANNEL = 1
BATCH_SUBSCRIPTIONS = 2_000_000
POST_TEXTS = ("Morning briefing", "New release notes", "Photo of the day", "Weekly digest", "Breaking news")

CHANNEL_COLUMNS = (
    "id", "kind", "title", "handle", "about", "invite_token", "subscribers_count", "created_by_id", "created_at",
    "last_seq", "read_all_seq", "last_activity_at", "version",
)  # fmt: skip
SUBSCRIPTION_COLUMNS = ("chat_id", "user_id", "created_at")
POST_COLUMNS = ("chat_id", "seq", "sender_id", "kind", "text", "client_id", "created_at", "version")
TABLES = ("chats_chat", "chats_membership", "chats_subscription", "chats_message", "user_feed", "feed_large_channel")


def handle(channel: int) -> str:
    return f"{HANDLE_PREFIX}{channel + 1}"


@dataclass(frozen=True)
class FeedPlan:
    users: int
    channels: int
    posts: int
    subscriptions: int
    fanout_max: int
    alpha: float
    top: float

    @classmethod
    def build(cls, *, users: int, channels: int, posts: int, subscriptions: int, fanout_max: int) -> FeedPlan:
        if users < 2 or channels < 1 or posts < channels:
            raise ValueError("--feed needs at least 2 users, 1 channel and a post per channel.")
        if subscriptions > users * channels:
            raise ValueError("More subscriptions than users x channels.")
        # Solve sum(min(users, top / (c+1)**alpha)) = subscriptions for alpha, with the biggest
        # channel at a fifth of the users (a few above 100 000 for a million users).
        top = max(1.0, users / 5)
        low, high = 0.0, 4.0
        for _ in range(60):
            alpha = (low + high) / 2
            total = sum(min(users, int(top / (c + 1) ** alpha)) or 1 for c in range(channels))
            low, high = (low, alpha) if total < subscriptions else (alpha, high)
        return cls(users, channels, posts, subscriptions, fanout_max, (low + high) / 2, top)

    def subscribers(self, channel: int) -> int:
        return max(1, min(self.users, int(self.top / (channel + 1) ** self.alpha)))

    def subscriber_indices(self, channel: int) -> Iterator[int]:
        """Distinct user indices: an arithmetic walk with a step coprime with ``users``."""
        users = self.users
        start = (channel * 7_919 + 13) % users
        step = (channel * 104_729 + 1) % users or 1
        while math.gcd(step, users) != 1:
            step = step % users + 1
        for k in range(self.subscribers(channel)):
            yield (start + k * step) % users

    def owner_index(self, channel: int) -> int:
        return channel % self.users

    def post_count(self, channel: int) -> int:
        base, extra = divmod(self.posts, self.channels)
        return base + (1 if channel < extra else 0)

    def large(self, channel: int) -> bool:
        return self.subscribers(channel) > self.fanout_max


@dataclass
class FeedReport:
    channels: int = 0
    subscriptions: int = 0
    posts: int = 0
    feed_rows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


class FeedLoader:
    def __init__(self, plan: FeedPlan, *, user_ids: list[int], progress_stream: IO[str]) -> None:
        self.plan, self.user_ids, self.stream = plan, user_ids, progress_stream
        self.sink, self.clock = PostgresSink(), Clock()

    def run(self) -> FeedReport:
        report, started = FeedReport(), time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT handle FROM chats_chat WHERE kind = 'channel' AND handle LIKE %s", [HANDLE_PREFIX + "%"]
            )
            present = {name for (name,) in cursor.fetchall()}
        todo = [c for c in range(self.plan.channels) if handle(c) not in present]
        progress = Progress(self.stream, "subscriptions", sum(self.plan.subscribers(c) for c in todo))
        batch: list[int] = []
        size = 0
        for position, channel in enumerate(todo, start=1):
            batch.append(channel)
            size += self.plan.subscribers(channel)
            if size >= BATCH_SUBSCRIPTIONS or position == len(todo):
                subscriptions, posts, rows = self._write(batch, progress.advance)
                report.channels += len(batch)
                report.subscriptions += subscriptions
                report.posts += posts
                report.feed_rows += rows
                batch, size = [], 0
        progress.close()
        report.seconds["channels, subscriptions, posts, feed rows"] = time.monotonic() - started
        phase = time.monotonic()
        self.sink.optimize(TABLES)
        report.seconds["vacuum + analyze"] = time.monotonic() - phase
        report.seconds["total"] = time.monotonic() - started
        return report

    @transaction.atomic
    def _write(self, channels: list[int], tick) -> tuple[int, int, int]:
        plan, ids = self.plan, self.sink.allocate_ids("chats_chat", len(channels))
        created = {c: 60 * c for c in channels}  # channel c created at minute c; posts follow
        rows = []
        for channel, chat_id in zip(channels, ids, strict=True):
            count = plan.post_count(channel)
            last = created[channel] + 60 * count
            rows.append((
                chat_id, "channel", f"Feed channel {channel + 1}", handle(channel), "A load-test channel.", "",
                plan.subscribers(channel), self.user_ids[plan.owner_index(channel)], self.clock(created[channel]),
                count, 0, self.clock(last), count,
            ))  # fmt: skip
        self.sink.insert("chats_chat", CHANNEL_COLUMNS, rows, no_tick)
        self.sink.insert(
            "chats_membership",
            ("chat_id", "user_id", "role", "joined_at", "last_read_seq"),
            ((chat_id, self.user_ids[plan.owner_index(c)], "owner", self.clock(created[c]), 0)
             for c, chat_id in zip(channels, ids, strict=True)),
            no_tick,
        )  # fmt: skip
        subscriptions = self.sink.insert(
            "chats_subscription", SUBSCRIPTION_COLUMNS, self._subscriptions(channels, ids, created), tick
        )
        posts = self.sink.insert("chats_message", POST_COLUMNS, self._posts(channels, ids, created), no_tick)
        large = [(chat_id,) for c, chat_id in zip(channels, ids, strict=True) if plan.large(c)]
        if large:
            with connection.cursor() as cursor:
                cursor.executemany("INSERT INTO feed_large_channel (channel_id, since) VALUES (%s, now())", large)
        feed_rows = self._feed_rows(channels, ids)
        return subscriptions, posts, feed_rows

    def _subscriptions(self, channels, ids, created) -> Iterator[tuple]:
        user_ids = self.user_ids
        for channel, chat_id in zip(channels, ids, strict=True):
            since = self.clock(created[channel])
            for index in self.plan.subscriber_indices(channel):
                yield (chat_id, user_ids[index], since)

    def _posts(self, channels, ids, created) -> Iterator[tuple]:
        for channel, chat_id in zip(channels, ids, strict=True):
            owner = self.user_ids[self.plan.owner_index(channel)]
            for seq in range(1, self.plan.post_count(channel) + 1):
                text = f"{POST_TEXTS[seq % len(POST_TEXTS)]} #{seq} of @{handle(channel)}"
                yield (
                    chat_id,
                    seq,
                    owner,
                    "text",
                    text,
                    f"feed-{channel}-{seq}",
                    self.clock(created[channel] + 60 * seq),
                    seq,
                )

    def _feed_rows(self, channels, ids) -> int:
        """The newest FEED_ROWS_PER_CHANNEL posts of each fan-out channel, for each subscriber:
        one INSERT ... SELECT per batch (the rows exist in the same transaction)."""
        small = [chat_id for c, chat_id in zip(channels, ids, strict=True) if not self.plan.large(c)]
        if not small:
            return 0
        with connection.cursor() as cursor:
            cursor.execute(
                """
INSERT INTO user_feed (user_id, post_id, channel_id)
SELECT s.user_id, m.id, m.chat_id
FROM chats_subscription s
JOIN chats_chat c ON c.id = s.chat_id
JOIN chats_message m ON m.chat_id = s.chat_id AND m.seq > c.last_seq - %s
WHERE s.chat_id = ANY(%s::bigint[])
""",
                [FEED_ROWS_PER_CHANNEL, small],
            )
            return cursor.rowcount


def load_users(count: int, *, password_hash: str, stream: IO[str]) -> list[int]:
    """The bulk loader's users ``load_0000001``... (created when missing), ids by index."""
    from .loader import Loader
    from .plan import LoadPlan

    plan = LoadPlan.build(users=count, chats=1, messages=0)  # only its users phase runs
    loader = Loader(plan, password_hash=password_hash, progress_stream=stream)
    loader._load_users()
    return loader.user_ids


__all__ = ["FeedLoader", "FeedPlan", "load_users", "username"]
