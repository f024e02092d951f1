"""Remove uploads no message took within UPLOAD_UNATTACHED_HOURS (default 24), and every stored
file nothing references any more. Safe to run at any time and from several places at once; run
it from cron or the Compose ``purge`` service, e.g. hourly."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from attachments import services


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, **options):
        uploads, blobs = services.purge()
        self.stdout.write(f"removed {uploads} upload(s) never sent and {blobs} unreferenced file(s)")
