"""The operator's console for chats and messages. List pages use a fixed number of queries."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count

from .models import Chat, Membership, Message


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)
    fields = ("user", "role", "joined_at", "last_read_seq")
    readonly_fields = ("joined_at", "last_read_seq")


@admin.register(Chat)
class ChatAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "title", "created_by", "members_total", "last_seq", "read_all_seq", "last_activity_at")
    list_filter = ("kind",)
    search_fields = ("title",)
    list_select_related = ("created_by",)
    readonly_fields = ("last_seq", "read_all_seq", "direct_key", "created_at", "last_activity_at")
    raw_id_fields = ("created_by",)
    inlines = [MembershipInline]
    ordering = ("-last_activity_at",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_members=Count("memberships", distinct=True))

    @admin.display(description="members", ordering="_members")
    def members_total(self, obj):
        return obj._members


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "chat", "seq", "sender", "kind", "short_text", "created_at")
    list_filter = ("kind", ("chat", admin.RelatedOnlyFieldListFilter))
    search_fields = ("text", "client_id")
    list_select_related = ("chat", "sender")
    raw_id_fields = ("chat", "sender")
    readonly_fields = ("chat", "seq", "sender", "kind", "client_id", "created_at")
    ordering = ("-id",)
    show_full_result_count = False

    @admin.display(description="text")
    def short_text(self, obj):
        return obj.text if len(obj.text) <= 80 else obj.text[:77] + "..."

    def has_add_permission(self, request):
        # Messages are written through the services only (seq, dedup, events).
        return False
