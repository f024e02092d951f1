"""The worker process behind ``manage.py run_worker``: relays and, with a broker, consumers.

Broker transport: one ``BrokerRelay`` (outbox -> RabbitMQ), a dramatiq ``Worker`` with
``threads`` handler threads on the outbox queue (and its delay queue), and a sampler of the
queue's backlog. Inline transport: ``threads`` ``InlineRelay`` threads. Any number of worker
processes may run side by side (SKIP LOCKED on the outbox, competing consumers on the queue).

``stop()`` is the graceful stop: relays finish the row in hand and commit; dramatiq's threads
finish their message, acknowledge it, and the consumers close (unacknowledged prefetched
messages go back to the queue).
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

from outbox.metrics import QUEUE_BACKLOG
from outbox.relay import BrokerRelay, InlineRelay, Relay

logger = logging.getLogger(__name__)

BACKLOG_SAMPLE_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 60


class BacklogSampler(threading.Thread):
    """``messenger_worker_queue_backlog`` about once a second, on its own connection (NaN while
    the broker cannot be asked, so a dashboard never shows a stale figure as current)."""

    def __init__(self, stopping: threading.Event):
        super().__init__(name="outbox-backlog", daemon=True)
        self.stopping = stopping

    def run(self) -> None:
        from outbox import transport

        conn = channel = None
        while not self.stopping.wait(BACKLOG_SAMPLE_SECONDS):
            try:
                if conn is None or not conn.is_open:
                    conn, channel = transport.blocking_channel()
                QUEUE_BACKLOG.set(transport.ready_count(channel))
            except Exception:
                logger.debug("backlog sample failed", exc_info=True)
                QUEUE_BACKLOG.set(float("nan"))  # unknown, rather than the last value seen
                if conn is not None and conn.is_open:
                    conn.close()
                conn = None
                self.stopping.wait(BACKLOG_SAMPLE_SECONDS * 4)
        if conn is not None and conn.is_open:
            conn.close()


class Worker:
    def __init__(self, *, threads: int):
        self.threads = max(1, threads)
        self.stopping = threading.Event()
        self.relays: list[Relay] = []
        self.consumer = None
        self.sampler: BacklogSampler | None = None

    @property
    def transport(self) -> str:
        return "broker" if settings.BROKER_URL else "inline"

    def start(self) -> None:
        if settings.BROKER_URL:
            import dramatiq

            from outbox import transport

            transport.broker()
            self.consumer = dramatiq.Worker(
                transport.broker(), queues={transport.queue_name()}, worker_threads=self.threads
            )
            self.consumer.start()
            self.relays = [BrokerRelay(publish=transport.publish, name="outbox-relay", stopping=self.stopping)]
            self.sampler = BacklogSampler(self.stopping)
            self.sampler.start()
        else:
            self.relays = [
                InlineRelay(name=f"outbox-inline-relay-{n}", stopping=self.stopping) for n in range(self.threads)
            ]
        for relay in self.relays:
            relay.start()
        logger.info("outbox worker started: transport=%s threads=%s", self.transport, self.threads)

    def stop(self) -> None:
        self.stopping.set()
        for relay in self.relays:
            relay.stop(STOP_TIMEOUT_SECONDS)
        if self.consumer is not None:
            from outbox import transport

            self.consumer.stop(timeout=STOP_TIMEOUT_SECONDS * 1000)
            transport.close()
        if self.sampler is not None:
            self.sampler.join(5)
        logger.info("outbox worker stopped")
