"""``manage.py run_worker``: the outbox worker process (see outbox/worker.py)."""

from __future__ import annotations

import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

logger = logging.getLogger("outbox.worker")


class Command(BaseCommand):
    help = (
        "Deliver outbox events: with BROKER_URL, relay the outbox to RabbitMQ and consume it; without, "
        "run the handlers from the outbox directly. SIGTERM/SIGINT stop it gracefully."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--threads", type=int, default=settings.WORKER_THREADS, help="Handler threads (env WORKER_THREADS)."
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=settings.WORKER_METRICS_PORT,
            help="Port of the Prometheus metrics (env WORKER_METRICS_PORT); 0: none.",
        )

    def handle(self, *args, threads: int, metrics_port: int, **options):
        from outbox.worker import Worker

        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if metrics_port:
            from prometheus_client import start_http_server

            try:
                start_http_server(metrics_port)
            except OSError as exc:
                # A worker without metrics beats no worker; the error says why they are missing.
                logger.error("metrics port %s unavailable (%s); running without metrics", metrics_port, exc)
        worker = Worker(threads=threads)
        worker.start()
        self.stdout.write(f"worker ready: transport={worker.transport} threads={worker.threads}")
        self.stdout.flush()
        try:
            while not stop.wait(1.0):
                pass
        finally:
            worker.stop()
        self.stdout.write("worker stopped")
