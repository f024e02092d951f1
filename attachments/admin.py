"""Uploads and stored files in the operator's console: read-only. Uploads come from the API
(which sniffs, cleans and counts them), references from messages, removal from message deletes
and ``purge_uploads``; nothing here writes them behind the services' back.

The upload list shows owner, kind, size, sha256, whether and when a message took it and how
many messages carry it; the owner filter shows the storage they use against their quota. List
pages cost a fixed number of queries (the reference count is a subquery for the page's rows).
"""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.template.defaultfilters import filesizeformat

from ops.admin_tools import EstimatedCountPaginator, ReadOnlyAdmin

from .models import Blob, Upload


def _references():
    # The chats app holds the references (it depends on this one, not the reverse).
    MessageAttachment = apps.get_model("chats", "MessageAttachment")
    return Coalesce(
        Subquery(
            MessageAttachment.objects.filter(upload_id=OuterRef("pk"))
            .order_by()
            .values("upload_id")
            .annotate(n=Count("id"))
            .values("n"),
            output_field=IntegerField(),
        ),
        0,
    )


@admin.register(Upload)
class UploadAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "owner",
        "kind",
        "human_size",
        "short_sha256",
        "references",
        "attached_at",
        "created_at",
    )
    list_filter = ("kind",)
    search_fields = ("owner__username", "name", "blob__sha256")
    list_select_related = ("owner", "blob")
    readonly_fields = ("owner", "blob", "kind", "name", "size", "created_at", "attached_at", "owner_storage")
    fields = readonly_fields
    ordering = ("-id",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(message_refs=_references())

    @admin.display(description="size", ordering="size")
    def human_size(self, obj: Upload) -> str:
        return filesizeformat(obj.size)

    @admin.display(description="sha256")
    def short_sha256(self, obj: Upload) -> str:
        return f"{obj.blob.sha256[:12]}…"

    @admin.display(description="messages carrying it", ordering="message_refs")
    def references(self, obj: Upload) -> int:
        return obj.message_refs

    @admin.display(description="owner's storage (used / quota)")
    def owner_storage(self, obj: Upload) -> str:
        used = Upload.objects.filter(owner_id=obj.owner_id).aggregate(total=Sum("size"))["total"] or 0
        quota = settings.UPLOAD_QUOTA_BYTES
        return f"{filesizeformat(used)} / {filesizeformat(quota) if quota else 'no quota'}"


@admin.register(Blob)
class BlobAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("id", "sha256", "mime", "size", "refs", "width", "height", "duration", "created_at")
    list_filter = ("mime",)
    search_fields = ("sha256",)
    readonly_fields = (
        "sha256", "size", "mime", "key", "thumbnail_key", "width", "height", "duration", "waveform", "refs", "created_at",
    )  # fmt: skip
    fields = readonly_fields
    ordering = ("-id",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
