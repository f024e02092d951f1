from __future__ import annotations

from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "outbox"
    verbose_name = "Outbox and worker"

    def ready(self) -> None:
        # Like the admin's autodiscover: every installed app's ``handlers`` module, plus the
        # modules OUTBOX_EXTRA_HANDLERS names, register their @outbox.handler functions.
        from outbox.registry import autodiscover

        autodiscover()
