"""Chats, memberships and messages.

Invariants live in the database: one membership per (chat, user), one message per
(chat, seq), one message per (sender, client_id), one direct chat per pair of users.
``Chat.last_seq`` is the per-chat counter bumped under the chat row lock; messages are
never hard-deleted, so ``seq`` runs 1..last_seq without gaps.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from .validation import CLIENT_ID_MAX


class Chat(models.Model):
    class Kind(models.TextChoices):
        DIRECT = "direct", "Direct"
        GROUP = "group", "Group"

    kind = models.CharField(max_length=6, choices=Kind.choices)
    title = models.CharField(max_length=128, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Highest seq handed out; bumped only under the chat's row lock.
    last_seq = models.BigIntegerField(default=0)
    # Lowest last_read_seq over members, cached so growth can be detected and broadcast once.
    read_all_seq = models.BigIntegerField(default=0)
    # Time of the newest message (or creation), for "most recent activity first".
    last_activity_at = models.DateTimeField(default=timezone.now)
    # "<low user id>:<high user id>" for direct chats; NULL for groups. Unique => one chat per pair.
    direct_key = models.CharField(max_length=41, null=True, blank=True, unique=True, editable=False)

    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="chats")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(kind="direct", direct_key__isnull=False) | models.Q(kind="group", direct_key__isnull=True)
                ),
                name="chats_chat_direct_key_iff_direct",
            ),
            models.CheckConstraint(condition=models.Q(last_seq__gte=0), name="chats_chat_last_seq_non_negative"),
        ]

    def __str__(self) -> str:
        return self.title or f"{self.kind} #{self.pk}"

    @staticmethod
    def make_direct_key(user_a_id: int, user_b_id: int) -> str:
        low, high = sorted((int(user_a_id), int(user_b_id)))
        return f"{low}:{high}"


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    # No single-column FK indexes: (chat, user), (chat, last_read_seq) and (user, chat) lead with them.
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="memberships", db_index=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    role = models.CharField(max_length=6, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(default=timezone.now)
    # Read watermark: every message with seq <= last_read_seq has been read by this member.
    last_read_seq = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chat", "user"], name="chats_membership_chat_user_unique"),
        ]
        indexes = [
            # min(last_read_seq) per chat is one index probe.
            models.Index(fields=["chat", "last_read_seq"], name="chats_member_chat_read_idx"),
            models.Index(fields=["user", "chat"], name="chats_member_user_chat_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.chat_id} ({self.role})"


class Message(models.Model):
    class Kind(models.TextChoices):
        TEXT = "text", "Text"
        SYSTEM = "system", "System"

    id = models.BigAutoField(primary_key=True)
    # No single-column FK indexes: (chat, seq) and (sender, client_id) lead with them, and a
    # redundant chat_id index tempts the planner into sorting a big chat's rows.
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="messages", db_index=False)
    seq = models.BigIntegerField()
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="messages",
        db_index=False,
    )
    kind = models.CharField(max_length=6, choices=Kind.choices, default=Kind.TEXT)
    text = models.TextField()
    client_id = models.CharField(max_length=CLIENT_ID_MAX, null=True, blank=True)  # noqa: DJ001 - NULL (system messages) is not a key; unique (sender, client_id) must ignore it
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Also the index every history query walks: (chat_id, seq).
            models.UniqueConstraint(fields=["chat", "seq"], name="chats_message_chat_seq_unique"),
            models.UniqueConstraint(fields=["sender", "client_id"], name="chats_message_sender_client_id_unique"),
            models.CheckConstraint(condition=models.Q(seq__gte=1), name="chats_message_seq_positive"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} in {self.chat_id}"
