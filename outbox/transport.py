"""The broker transport: RabbitMQ through dramatiq.

One queue, ``<BROKER_QUEUE_PREFIX>.outbox``, with dramatiq's companions ``.DQ`` (retries waiting
for their time) and ``.XQ`` (dead letters). One message per outbox row, for the actor
``outbox.deliver`` (event id, type, payload, key, created_at). The consumer acknowledges a
message after the actor returned, i.e. after every handler's transaction committed; a failure
is retried by dramatiq's ``Retries`` (exponential backoff between OUTBOX_MIN/MAX_BACKOFF_MS,
OUTBOX_MAX_RETRIES retries) and then parked in ``.XQ`` by ``DeadLetters`` with the final error.
Publishing uses publisher confirms (``confirm_delivery=True``): ``publish`` returns once
RabbitMQ has the message.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

import dramatiq
import pika
from django.conf import settings
from django.db import close_old_connections, connection
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import q_name, xq_name
from dramatiq.middleware import Middleware, Retries

from outbox.metrics import DEAD_LETTERED, RETRIES
from outbox.registry import Event
from outbox.runner import HandlerFailed, deliver

logger = logging.getLogger(__name__)

ACTOR_NAME = "outbox.deliver"
_lock = threading.Lock()
_broker: RabbitmqBroker | None = None
_actor: dramatiq.Actor | None = None


def queue_name() -> str:
    return f"{settings.BROKER_QUEUE_PREFIX}.outbox"


def _deliver(event_id: int, event_type: str, payload: dict, key: str | None, created_at: str) -> None:
    deliver(
        Event(id=event_id, type=event_type, payload=payload, key=key, created_at=datetime.fromisoformat(created_at))
    )


class DjangoConnections(Middleware):
    """Worker threads keep Django connections like request threads: checked before and after
    each message, closed when the thread ends."""

    def before_process_message(self, broker, message):
        close_old_connections()

    def after_process_message(self, broker, message, *, result=None, exception=None):
        close_old_connections()

    def after_worker_thread_shutdown(self, broker, thread):
        connection.close()


class DeadLetters(Middleware):
    """Counts retries, and parks an exhausted message in ``.XQ`` *with its final error*.

    Left to itself, dramatiq rejects the message and RabbitMQ dead-letters the body as it was
    delivered, which carries the traceback of the attempt before. Here, after ``Retries`` marked
    the message failed, a copy with the last error, the failed handlers and the time is published
    to ``.XQ`` (confirmed) and the original acknowledged. Should that publish fail, the message is
    rejected as usual and RabbitMQ dead-letters the older body: nothing is lost either way.
    Listed before ``Retries`` so that its ``after_process_message`` runs after Retries' one.
    """

    def after_process_message(self, broker, message, *, result=None, exception=None):
        if exception is None:
            return
        event_type = message.args[1] if len(message.args) > 1 else "?"
        if not message.failed:
            RETRIES.labels(type=event_type).inc()
            return
        DEAD_LETTERED.labels(type=event_type).inc()
        if isinstance(exception, HandlerFailed):
            error, handlers = exception.report, exception.handlers
        else:
            error, handlers = message.options.get("traceback") or repr(exception), []
        dead = message.copy(
            queue_name=xq_name(message.queue_name),
            options={"outbox_error": error, "outbox_handlers": handlers, "outbox_dead_at": int(time.time() * 1000)},
        )
        try:
            broker.channel.basic_publish(
                exchange="",
                routing_key=xq_name(q_name(message.queue_name)),
                body=dead.encode(),
                properties=pika.BasicProperties(delivery_mode=2),
                mandatory=True,
            )
        except Exception:
            logger.exception("could not park message %s in the dead-letter queue; rejecting it", message.message_id)
            return
        message.failed = False  # the copy is the dead letter: acknowledge the original
        logger.error(
            "outbox event #%s (%s) is dead after %s retries",
            message.args[0],
            event_type,
            message.options.get("retries"),
        )


def broker() -> RabbitmqBroker:
    """This process's broker and its ``outbox.deliver`` actor, built on first use from settings."""
    global _broker, _actor
    with _lock:
        if _broker is None:
            if not settings.BROKER_URL:
                raise RuntimeError("BROKER_URL is not set: the outbox runs inline, there is no broker")
            built = RabbitmqBroker(
                url=settings.BROKER_URL,
                confirm_delivery=True,
                middleware=[
                    DeadLetters(),
                    Retries(
                        max_retries=settings.OUTBOX_MAX_RETRIES,
                        min_backoff=settings.OUTBOX_MIN_BACKOFF_MS,
                        max_backoff=settings.OUTBOX_MAX_BACKOFF_MS,
                    ),
                    DjangoConnections(),
                ],
            )
            _actor = dramatiq.Actor(
                _deliver, broker=built, actor_name=ACTOR_NAME, queue_name=queue_name(), priority=0, options={}
            )
            _broker = built
        return _broker


def message_for(event: Event) -> dramatiq.Message:
    broker()
    return _actor.message(event.id, event.type, event.payload, event.key, event.created_at.isoformat())


def publish(event: Event) -> None:
    """Publish one event; returns when RabbitMQ confirmed it (raises if it did not)."""
    broker().enqueue(message_for(event))


def close() -> None:
    global _broker, _actor
    with _lock:
        if _broker is not None:
            _broker.close()
        _broker = _actor = None


def blocking_channel():
    """A new connection and channel of our own (dlq tool, backlog sampling), confirms on."""
    conn = pika.BlockingConnection(pika.URLParameters(settings.BROKER_URL))
    channel = conn.channel()
    channel.confirm_delivery()
    return conn, channel


def ensure_queues() -> None:
    """The queue, its .DQ and .XQ, declared by dramatiq itself (their arguments must match)."""
    broker().declare_queue(queue_name(), ensure=True)


def ready_count(channel) -> int:
    """Messages ready in the main queue (passive declare: it must exist)."""
    return channel.queue_declare(queue=queue_name(), passive=True).method.message_count
