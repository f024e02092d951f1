"""Real-time events: built in services, sent to per-user groups only after commit.

The database is the truth; the channel layer is a wake-up call that may drop. Every
chat event carries ``chat_id`` (and ``seq`` where there is one) so a client that
misses one can fetch what it lacks over REST.

Services call :func:`publish_on_commit`. What happens after the commit depends on
the caller:

* A WebSocket consumer runs the service inside :func:`collect` and then sends the
  collected events from the event loop with :func:`send_collected` -- no blocking
  hop back into async code from the database thread.
* Anything else (REST views, management commands) sends synchronously from the
  ``on_commit`` hook.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from ops import metrics

logger = logging.getLogger(__name__)

# The one channel-layer message type our consumer handles; clients never choose it.
DELIVER = "event.deliver"
# Layer message that closes a user's sockets (logout, deactivation).
REVOKE = "session.revoke"
# Key of the layer message (never of the client frame) holding the commit's wall-clock time,
# from which the receiving consumer measures fan-out latency (messenger_fanout_latency_seconds).
COMMITTED_AT = "committed_at"


def user_group(user_id: int) -> str:
    """Every socket of a user joins this group; events fan out to members' groups."""
    return f"user.{int(user_id)}"


def encode(event: dict) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass
class Outgoing:
    user_ids: list[int]
    text: str
    # channel_name of the socket that caused it and already got a direct reply (e.g. message.ack).
    skip_channel: str | None = None
    # time.time() when the transaction that produced it committed.
    committed_at: float | None = None


_collector: contextvars.ContextVar[list[Outgoing] | None] = contextvars.ContextVar("events_collector", default=None)


def committed(*, user_ids: Iterable[int], event: dict, skip_channel: str | None = None) -> Outgoing | None:
    """An event whose change has committed, ready for :func:`send_collected` (None: nobody to tell).

    For the async hot paths (``chats/services/fast.py``), whose statements commit on their own.
    """
    ids = sorted({int(u) for u in user_ids})
    if not ids:
        return None
    return Outgoing(user_ids=ids, text=encode(event), skip_channel=skip_channel, committed_at=time.time())


def publish_on_commit(*, user_ids: Iterable[int], event: dict, skip_channel: str | None = None) -> None:
    """Send ``event`` to every socket of every user in ``user_ids`` once the transaction commits."""
    outgoing = Outgoing(user_ids=sorted({int(u) for u in user_ids}), text=encode(event), skip_channel=skip_channel)
    if not outgoing.user_ids:
        return

    def _after_commit() -> None:
        outgoing.committed_at = time.time()
        bucket = _collector.get()
        if bucket is not None:
            bucket.append(outgoing)
        else:
            send_now(outgoing)

    transaction.on_commit(_after_commit, robust=True)


@contextmanager
def collect():
    """Within this block, events committed are queued in the yielded list instead of sent."""
    bucket: list[Outgoing] = []
    token = _collector.set(bucket)
    try:
        yield bucket
    finally:
        _collector.reset(token)


async def send_collected(bucket: list[Outgoing]) -> None:
    """Send queued events from async code. A failing layer loses the wake-up, never the data."""
    layer = get_channel_layer()
    if layer is None:
        return
    many = getattr(layer, "group_send_many", None)
    for outgoing in bucket:
        message = {"type": DELIVER, "text": outgoing.text}
        if outgoing.skip_channel:
            message["skip"] = outgoing.skip_channel
        if outgoing.committed_at is not None:
            message[COMMITTED_AT] = outgoing.committed_at
        groups = [user_group(user_id) for user_id in outgoing.user_ids]
        try:
            if many is not None:
                await many(groups, message)
            else:
                for group in groups:
                    await layer.group_send(group, message)
        except Exception as exc:
            _count_failure(exc)
            logger.warning("channel layer send failed (%d users); clients catch up by seq", len(groups), exc_info=True)


def close_user_sockets(*, user_id: int, sid: str | None) -> None:
    """Close the user's sockets of login session ``sid`` (all of them when None) with 4401."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(user_group(user_id), {"type": REVOKE, "sid": sid})
    except Exception as exc:
        _count_failure(exc)
        logger.warning("could not reach sockets of user %s to close them", user_id, exc_info=True)


def _count_failure(exc: BaseException) -> None:
    metrics.CHANNEL_LAYER_SEND_FAILURES.inc()
    if metrics.is_redis_error(exc):
        metrics.REDIS_ERRORS.labels(source="channel_layer").inc()


def send_now(outgoing: Outgoing) -> None:
    """Send from sync code (REST views, commands)."""
    try:
        async_to_sync(send_collected)([outgoing])
    except Exception as exc:
        _count_failure(exc)
        logger.warning("channel layer unavailable; event dropped (clients catch up by seq)", exc_info=True)
