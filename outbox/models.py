"""The outbox table (events recorded by committed transactions, not yet delivered) and the
record of which handler already ran for which event."""

from __future__ import annotations

from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import Q
from django.utils import timezone


class OutboxEvent(models.Model):
    """One event recorded by ``outbox.record`` in the transaction that caused it.

    A row lives until it is delivered: published to the broker (broker transport) or run by every
    handler (inline transport), then deleted. A row whose handlers kept failing (inline) is kept
    as a dead letter: ``dead_at`` set, ``last_error`` and ``failed_handlers`` say why.
    """

    type = models.CharField(max_length=200)
    payload = models.JSONField()
    # Grouping information ("channel:42"); handlers must not rely on delivery order anyway.
    key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001 (None: no key, as record() takes it)
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True, default="")
    failed_handlers = models.JSONField(default=list, blank=True)
    dead_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The relays' claim and the lag gauge: live rows in id order.
            models.Index(fields=["id"], name="outbox_live_idx", condition=Q(dead_at__isnull=True)),
            models.Index(fields=["dead_at"], name="outbox_dead_idx", condition=Q(dead_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk}"


class ProcessedEvent(models.Model):
    """Handler ``handler`` has run for event ``event_id``: written in the handler's own
    transaction, so the pair exists exactly when the handler's effects were committed."""

    handler = models.CharField(max_length=300)
    event_id = models.BigIntegerField()
    processed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["handler", "event_id"], name="outbox_processed_once")]
        # The hourly prune of old marks: rows arrive in time order, so a BRIN index is tiny and
        # costs the writers next to nothing.
        indexes = [BrinIndex(fields=["processed_at"], name="outbox_processed_at_brin")]

    def __str__(self) -> str:
        return f"{self.handler} ran for #{self.event_id}"
