"""Real-time delivery: events to every socket of a set of users, only after commit.

The database is the truth; the channel layer is a wake-up call that may drop. What an event
says is the apps' business (``chats/events.py`` builds every chat event); this module only
carries it: to the per-user group ``user.<id>`` that every socket of a user joins, and to any
other layer groups the caller names (sockets that joined them for a while, e.g. the watchers of
a channel).

* Sync code (a service in a request thread) calls :func:`publish_on_commit`: the event goes
  out from the ``on_commit`` hook of the surrounding transaction.
* Async code holds :class:`Outgoing` events of changes that already committed (from
  ``runtime.plans.run_async``) and sends them with :func:`send_events` when it is ready.
* :func:`close_user_sockets` closes a user's sockets (logout, deactivation).

An event that only states a latest value (``latest``: :class:`runtime.coalesce.Latest`, e.g.
``chat.read_all``) may be held and merged with later ones of its key, from either path: see
:mod:`runtime.coalesce`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from ops import metrics

from .coalesce import Coalescer, Latest

logger = logging.getLogger(__name__)

# The one channel-layer message type that carries events to sockets (the consumer's
# ``event_deliver``; runtime.layers delivers it directly); clients never choose it.
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
    # Layer groups to reach besides the users' own (a socket in both would get it twice).
    groups: tuple[str, ...] = ()
    # Set: a later event of the same key supersedes this one (runtime.coalesce).
    latest: Latest | None = None


def committed(
    *,
    user_ids: Iterable[int],
    event: dict,
    skip_channel: str | None = None,
    groups: tuple[str, ...] = (),
    latest: Latest | None = None,
) -> Outgoing | None:
    """An event whose change has committed, ready for :func:`send_events` (None: nobody to tell).

    For plans run from the event loop, whose statements commit on their own.
    """
    ids = sorted({int(u) for u in user_ids})
    if not ids and not groups:
        return None
    return Outgoing(
        user_ids=ids,
        text=encode(event),
        skip_channel=skip_channel,
        committed_at=time.time(),
        groups=tuple(groups),
        latest=latest,
    )


def publish_on_commit(
    *,
    user_ids: Iterable[int],
    event: dict,
    skip_channel: str | None = None,
    groups: tuple[str, ...] = (),
    latest: Latest | None = None,
) -> None:
    """Send ``event`` to every socket of every user in ``user_ids`` (and in ``groups``) once the
    transaction commits."""
    outgoing = Outgoing(
        user_ids=sorted({int(u) for u in user_ids}),
        text=encode(event),
        skip_channel=skip_channel,
        groups=tuple(groups),
        latest=latest,
    )
    if not outgoing.user_ids and not outgoing.groups:
        return

    def _after_commit() -> None:
        outgoing.committed_at = time.time()
        send_now(outgoing)

    transaction.on_commit(_after_commit, robust=True)


async def send_events(bucket: list[Outgoing]) -> None:
    """Send events of committed changes from async code. A failing layer loses the wake-up, never the data.

    An event with ``latest`` goes out now, later merged with others of its key, or not at all
    (a higher value already went out): :mod:`runtime.coalesce`.
    """
    bucket = [outgoing for outgoing in bucket if outgoing.latest is None or _coalescer.admit(outgoing)]
    if bucket:
        await _publish(bucket)


async def _publish(bucket: list[Outgoing]) -> None:
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
        groups = [user_group(user_id) for user_id in outgoing.user_ids] + list(outgoing.groups)
        try:
            if many is not None:
                await many(groups, message)
            else:
                for group in groups:
                    await layer.group_send(group, message)
        except Exception as exc:
            _count_failure(exc)
            logger.warning("channel layer send failed (%d users); clients catch up by seq", len(groups), exc_info=True)


_coalescer = Coalescer(_publish)


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
        async_to_sync(send_events)([outgoing])
    except Exception as exc:
        _count_failure(exc)
        logger.warning("channel layer unavailable; event dropped (clients catch up by seq)", exc_info=True)
