from django.contrib import admin

from ops.admin_tools import ReadOnlyAdmin

from .models import LargeChannel


@admin.register(LargeChannel)
class LargeChannelAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """Channels whose posts are merged into feeds at read time (the read model's own bookkeeping)."""

    list_display = ("channel_id", "since")
    ordering = ("-since",)
