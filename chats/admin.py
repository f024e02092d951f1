"""The operator's console for chats and messages.

List pages cost a fixed number of queries however many rows there are (pinned by
tests/ops/test_admin.py): foreign keys come with ``select_related``, a chat's message count is
``last_seq`` (seq is gap-free: a message deleted for everyone stays as a tombstone row, so no
``COUNT``), its member count is a correlated subquery evaluated for the page's rows only, and big
unfiltered tables are counted from the planner's estimate (:class:`EstimatedCountPaginator`).
A message's "pinned" and reaction total come from columns already on the page (the chat's
``pinned_seqs``, the message's ``reactions`` cache); its page shows the edit history and the
reactions inline, read-only, in one query each.

Nothing here writes domain rows behind the services' back: renaming a group goes through
``services.rename_group`` (the system message and ``chat.updated`` the API writes); chats cannot
be added (a chat needs its members, owner and first message -- the API does that) or deleted
(members would get no event), and memberships, messages, their edit history and reactions are
read-only (each change needs the chat lock, a version, system messages and events: editing,
deleting for everyone, reacting and pinning are the API's). Deactivating and deleting a user go
through ``accounts.services`` (accounts/admin.py).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.html import format_html

from ops.admin_tools import EstimatedCountPaginator, ReadOnlyAdmin

from . import services
from .exceptions import InvalidInput
from .models import Chat, Membership, Message, MessageEdit, Reaction, Subscription
from .validation import clean_title


class ReadOnlyInline(ReadOnlyAdmin, admin.TabularInline):
    """Rows shown on their parent's page that only the services write: no add, change or delete."""

    extra = 0
    can_delete = False


class MembershipInline(ReadOnlyInline):
    model = Membership
    fields = ("user", "role", "joined_at", "last_read_seq")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")


class MessageEditInline(ReadOnlyInline):
    """The edit history: each earlier text and when it was replaced, oldest first."""

    model = MessageEdit
    verbose_name = "earlier text"
    verbose_name_plural = "edit history"
    fields = ("text", "edited_at")
    readonly_fields = fields
    ordering = ("id",)


class ReactionInline(ReadOnlyInline):
    """Who reacted with what; the counts shown elsewhere are the message's ``reactions`` cache."""

    model = Reaction
    fields = ("emoji", "user", "created_at")
    readonly_fields = fields
    ordering = ("id",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")


class _IsSetFilter(admin.SimpleListFilter):
    """Yes / no on whether a nullable column is set."""

    field: str

    def lookups(self, request, model_admin):
        return (("yes", "Yes"), ("no", "No"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(**{f"{self.field}__isnull": False})
        if self.value() == "no":
            return queryset.filter(**{f"{self.field}__isnull": True})
        return queryset


class EditedFilter(_IsSetFilter):
    title = "edited"
    parameter_name = "edited"
    field = "edited_at"


class DeletedFilter(_IsSetFilter):
    title = "deleted for everyone"
    parameter_name = "deleted"
    field = "deleted_at"


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
        "subscribers_count",
        "messages",
        "read_all_seq",
        "version",
        "last_activity_at",
    )
    list_filter = ("kind",)
    search_fields = ("title", "handle")
    list_select_related = ("created_by",)
    fields = (
        "kind", "title", "handle", "about", "subscribers_count", "created_by", "last_seq", "read_all_seq", "version",
        "pinned_seqs", "direct_key", "created_at", "last_activity_at",
    )  # fmt: skip
    readonly_fields = (
        "kind", "handle", "about", "subscribers_count", "created_by", "last_seq", "read_all_seq", "version",
        "pinned_seqs", "direct_key", "created_at", "last_activity_at",
    )  # fmt: skip
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
class MessageAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    # Messages are written through the services only (seq, version, dedup, events); a delete
    # for everyone leaves a tombstone (history offsets and counts rely on gap-free seq): the
    # admin only views them.

    list_display = (
        "id", "chat", "seq", "sender", "kind", "short_text", "version", "edited", "deleted", "pinned",
        "reactions_total", "created_at",
    )  # fmt: skip
    list_filter = ("kind", EditedFilter, DeletedFilter, ChatIdFilter)
    search_fields = ("text", "=client_id")
    list_select_related = ("chat", "sender")
    ordering = ("-id",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fieldsets = (
        (None, {"fields": ("chat", "seq", "sender", "kind", "text", "client_id", "created_at")}),
        ("Changes", {"fields": ("version", "edited_at", "deleted_at", "pinned", "reactions_summary")}),
        ("Reply and forward", {"fields": ("reply_to_seq", "forwarded_from")}),
    )
    readonly_fields = ("pinned", "reactions_summary", "forwarded_from")
    inlines = (MessageEditInline, ReactionInline)

    def get_object(self, request, object_id, from_field=None):
        # The message page shows its chat, sender and forward origin: joined in, not a query each.
        queryset = self.get_queryset(request).select_related("chat", "sender", "forward_chat")
        field = self.model._meta.pk if from_field is None else self.model._meta.get_field(from_field)
        try:
            return queryset.get(**{field.name: field.to_python(object_id)})
        except (self.model.DoesNotExist, ValidationError, ValueError):
            return None

    @admin.display(description="text")
    def short_text(self, obj):
        if obj.deleted_at is not None:
            return "(deleted)"
        return obj.text if len(obj.text) <= 80 else obj.text[:77] + "..."

    @admin.display(description="edited", boolean=True, ordering="edited_at")
    def edited(self, obj):
        return obj.edited_at is not None

    @admin.display(description="deleted", boolean=True, ordering="deleted_at")
    def deleted(self, obj):
        return obj.deleted_at is not None

    @admin.display(description="pinned", boolean=True)
    def pinned(self, obj):
        """From the chat row already joined in: no query."""
        return obj.seq in (obj.chat.pinned_seqs or ())

    @admin.display(description="reactions")
    def reactions_total(self, obj):
        """The total of the ``reactions`` cache (counts per emoji), not a count of Reaction rows."""
        return sum(count for _, count in obj.reactions or ())

    @admin.display(description="reactions (cached counts)")
    def reactions_summary(self, obj):
        return ", ".join(f"{emoji} {count}" for emoji, count in obj.reactions or ()) or "-"

    @admin.display(description="forwarded from")
    def forwarded_from(self, obj):
        """The first origin: its chat (linked to its messages), seq and sender's name at the time."""
        if obj.forward_seq is None and obj.forward_sender_username is None:
            return "-"
        sender = obj.forward_sender_username or "(unknown)"
        when = f" at {obj.forward_created_at:%Y-%m-%d %H:%M:%S %Z}" if obj.forward_created_at else ""
        if obj.forward_chat_id is None:  # the origin chat was deleted since
            return f"a deleted chat, #{obj.forward_seq} by {sender}{when}"
        url = reverse("admin:chats_message_changelist")
        return format_html(
            '<a href="{}?{}={}">{}</a>, #{} by {}{}',
            url,
            ChatIdFilter.parameter_name,
            obj.forward_chat_id,
            obj.forward_chat,
            obj.forward_seq,
            sender,
            when,
        )


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """Who reads which channel (changed only through the API: the counts move with the rows)."""

    list_display = ("id", "chat", "user", "created_at")
    list_select_related = ("chat", "user")
    search_fields = ("=chat__id", "chat__handle", "user__username")
    ordering = ("-id",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
