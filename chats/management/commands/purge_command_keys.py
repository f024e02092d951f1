"""Delete Idempotency-Key answers older than IDEMPOTENCY_KEY_HOURS (run it hourly, as Compose's
purge service does)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from chats import idempotency


class Command(BaseCommand):
    help = "Delete remembered Idempotency-Key answers past IDEMPOTENCY_KEY_HOURS."

    def handle(self, *args, **options):
        deleted = idempotency.purge()
        self.stdout.write(f"deleted {deleted} idempotency keys")
