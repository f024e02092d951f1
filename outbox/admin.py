"""The outbox in the operator's console: read-only (the relays and ``manage.py dlq`` change it)."""

from __future__ import annotations

from django.contrib import admin

from ops.admin_tools import EstimatedCountPaginator, ReadOnlyAdmin

from .models import OutboxEvent


class DeadFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("dead", "dead letters"), ("live", "waiting for delivery")]

    def queryset(self, request, queryset):
        if self.value() == "dead":
            return queryset.filter(dead_at__isnull=False)
        if self.value() == "live":
            return queryset.filter(dead_at__isnull=True)
        return queryset


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("id", "type", "key", "created_at", "attempts", "next_attempt_at", "dead_at")
    list_filter = (DeadFilter, "type")
    search_fields = ("type", "key")
    ordering = ("-id",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]
