"""The operator's console for chats and messages.

List pages cost a fixed number of queries however many rows there are (pinned by
tests/ops/test_admin.py): foreign keys come with ``select_related``, a chat's message count is
``last_seq`` (seq is gap-free and messages are never deleted, so no ``COUNT``), its member count
is a correlated subquery evaluated for the page's rows only, and big unfiltered tables are
counted from the planner's estimate (:class:`EstimatedCountPaginator`).

Nothing here writes domain rows behind the services' back: renaming a group goes through
``services.rename_group`` (the system message and ``chat.updated`` the API writes); chats cannot
be added (a chat needs its members, owner and first message -- the API does that) or deleted
(members would get no event), and memberships and messages are read-only (adding a member or a
message needs seq, system messages and events). Deactivating and deleting a user go through
``accounts.services`` (accounts/admin.py).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.html import format_html

from ops.admin_tools import EstimatedCountPaginator

from . import services
from .exceptions import InvalidInput
from .models import Chat, Membership, Message
from .validation import clean_title


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "joined_at", "last_read_seq")
    readonly_fields = fields
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ChatIdFilter(admin.SimpleListFilter):
    """Filter by a typed chat id: a list of every chat (RelatedOnlyFieldListFilter) would scan
    the messages table for its distinct chats on every page load."""

    title = "chat id"
    parameter_name = "chat_id"
    template = "admin/chats/input_filter.html"

    def lookups(self, request, model_admin):
        return ()

    def has_output(self) -> bool:
        return True

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        try:
            chat_id = int(value)
        except ValueError:
            return queryset.none()
        return queryset.filter(chat_id=chat_id)

    def choices(self, changelist):
        yield {
            "value": self.value() or "",
            "preserved": [(key, value) for key, value in changelist.params.items() if key != self.parameter_name],
            "clear_query_string": changelist.get_query_string(remove=[self.parameter_name]),
        }


class ChatForm(forms.ModelForm):
    """The title under the API's rules (``clean_title``), as a form error rather than a 500."""

    class Meta:
        model = Chat
        fields = ("title",)

    def clean_title(self):
        try:
            return clean_title(self.cleaned_data.get("title", ""))
        except InvalidInput as exc:
            raise forms.ValidationError(exc.detail["title"] if isinstance(exc.detail, dict) else exc.detail) from None


@admin.register(Chat)
class ChatAdmin(admin.ModelAdmin):
    form = ChatForm
    list_display = (
        "id",
        "kind",
        "title",
        "created_by",
        "members_total",
        "messages",
        "read_all_seq",
        "last_activity_at",
    )
    list_filter = ("kind",)
    search_fields = ("title",)
    list_select_related = ("created_by",)
    fields = ("kind", "title", "created_by", "last_seq", "read_all_seq", "direct_key", "created_at", "last_activity_at")
    readonly_fields = ("kind", "created_by", "last_seq", "read_all_seq", "direct_key", "created_at", "last_activity_at")
    inlines = (MembershipInline,)
    ordering = ("-id",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.kind == Chat.Kind.DIRECT:
            return (*self.readonly_fields, "title")  # a direct chat has no title
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        # The only editable field is a group's title; the rename is the API's use case.
        if change and "title" in form.changed_data:
            services.rename_group(user_id=request.user.id, chat_id=obj.id, title=obj.title, as_operator=True)

    def get_queryset(self, request):
        members = (
            Membership.objects.filter(chat_id=OuterRef("pk"))
            .order_by()
            .values("chat_id")
            .annotate(n=Count("id"))
            .values("n")[:1]
        )
        return super().get_queryset(request).annotate(_members=Coalesce(Subquery(members), 0))

    @admin.display(description="members", ordering="_members")
    def members_total(self, obj):
        return obj._members

    @admin.display(description="messages", ordering="last_seq")
    def messages(self, obj):
        """``last_seq`` is the message count; links to the chat's messages."""
        url = reverse("admin:chats_message_changelist")
        return format_html('<a href="{}?{}={}">{}</a>', url, ChatIdFilter.parameter_name, obj.pk, obj.last_seq)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "chat", "seq", "sender", "kind", "short_text", "created_at")
    list_filter = ("kind", ChatIdFilter)
    search_fields = ("text", "=client_id")
    list_select_related = ("chat", "sender")
    ordering = ("-id",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    @admin.display(description="text")
    def short_text(self, obj):
        return obj.text if len(obj.text) <= 80 else obj.text[:77] + "..."

    # Messages are written through the services only (seq, dedup, events) and never deleted
    # (history offsets and counts rely on gap-free seq): the admin only views them.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
