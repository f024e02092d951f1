"""Chats, memberships and messages.

Invariants live in the database: one membership per (chat, user), one message per
(chat, seq), one message per (sender, client_id), one direct chat per pair of users.
``Chat.last_seq`` is the per-chat counter bumped under the chat row lock; messages are
never hard-deleted, so ``seq`` runs 1..last_seq without gaps.

``Chat.version`` is the chat's change counter: every change to its messages (a send, an edit, a
delete batch, a reaction change, a pin or unpin) bumps it by one under the same row lock, and
stamps the changed messages with the new value, so "what changed after version V" is one range
of the ``(chat_id, version)`` index. A delete leaves a tombstone (text and edit history erased).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import OpClass
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from .validation import CLIENT_ID_MAX


class Chat(models.Model):
    class Kind(models.TextChoices):
        DIRECT = "direct", "Direct"
        GROUP = "group", "Group"
        CHANNEL = "channel", "Channel"

    kind = models.CharField(max_length=7, choices=Kind.choices)
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
    # The change counter: bumped by one per change to the chat's messages, under the row lock.
    version = models.BigIntegerField(default=0, db_default=0)
    # Pinned message seqs, newest pin first (at most PINS_MAX); changed only under the row lock.
    pinned_seqs = ArrayField(
        models.BigIntegerField(),
        default=list,
        db_default=models.Value([], ArrayField(models.BigIntegerField())),
        blank=True,
    )

    # Channels only. Members of a channel are its staff (owner, admins: they post); readers are
    # Subscription rows, which no post walks. A channel with a handle is public: found by its
    # handle or title and read by anyone signed in; one without is private: read only by its
    # staff and subscribers, who join with ``invite_token``.
    handle = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001 - NULL: private or not a channel (unique ignores it)
    about = models.CharField(max_length=255, blank=True, default="", db_default="")
    invite_token = models.CharField(max_length=32, blank=True, default="", db_default="", editable=False)
    # Exact: moved by one in the transaction that adds or removes a subscription row.
    subscribers_count = models.BigIntegerField(default=0, db_default=0)

    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="chats")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(kind="direct", direct_key__isnull=False)
                    | models.Q(kind__in=["group", "channel"], direct_key__isnull=True)
                ),
                name="chats_chat_direct_key_iff_direct",
            ),
            models.CheckConstraint(condition=models.Q(last_seq__gte=0), name="chats_chat_last_seq_non_negative"),
            models.CheckConstraint(
                condition=models.Q(kind="channel") | models.Q(handle__isnull=True),
                name="chats_chat_handle_only_channels",
            ),
            # Handles are unique whatever their case: @News and @news are one channel.
            models.UniqueConstraint(Lower("handle"), name="chats_chat_handle_ci_unique"),
        ]
        indexes = [
            # The directory: public channels by handle or title prefix (LIKE 'abc%' on lower()).
            models.Index(
                OpClass(Lower("handle"), name="text_pattern_ops"),
                name="chats_chat_public_handle_idx",
                condition=models.Q(kind="channel", handle__isnull=False),
            ),
            models.Index(
                OpClass(Lower("title"), name="text_pattern_ops"),
                name="chats_chat_public_title_idx",
                condition=models.Q(kind="channel", handle__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"{self.kind} #{self.pk}"

    @property
    def is_public(self) -> bool:
        return self.kind == self.Kind.CHANNEL and self.handle is not None

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


class Subscription(models.Model):
    """A reader of a channel. Not a membership: a post touches none of these rows (the feed's
    workers read them after commit), and the channel's ``subscribers_count`` moves with them."""

    id = models.BigAutoField(primary_key=True)
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="subscriptions", db_index=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscriptions", db_index=False
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Also the index of a channel's subscribers (fan-out walks it in id order).
            models.UniqueConstraint(fields=["chat", "user"], name="chats_subscription_chat_user_unique"),
        ]
        indexes = [models.Index(fields=["user", "chat"], name="chats_subscription_user_idx")]

    def __str__(self) -> str:
        return f"{self.user_id} reads {self.chat_id}"


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
    # Taken under the chat lock: never decreases along seq.
    created_at = models.DateTimeField(default=timezone.now)
    # The chat's version at this message's latest change.
    version = models.BigIntegerField(default=0, db_default=0)
    edited_at = models.DateTimeField(null=True, blank=True)
    # Set when deleted for everyone: the row stays as a tombstone (seq stays gap-free).
    deleted_at = models.DateTimeField(null=True, blank=True)
    # A message of the same chat this one answers.
    reply_to_seq = models.BigIntegerField(null=True, blank=True)
    # The origin of a forwarded message (the first one, when a forward is forwarded again).
    forward_chat = models.ForeignKey(
        Chat, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    forward_seq = models.BigIntegerField(null=True, blank=True)
    forward_sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    forward_sender_username = models.CharField(max_length=150, null=True, blank=True)  # noqa: DJ001 - NULL: not forwarded, or a system message's
    forward_created_at = models.DateTimeField(null=True, blank=True)
    # [[emoji, count], ...] most used first: a cache of the Reaction rows, rewritten under the chat lock.
    reactions = models.JSONField(default=list, db_default=models.Value([], models.JSONField()), blank=True)
    # The files it carries, in order, as readers see them (attachments.payloads.cached_entry):
    # written with the message, emptied when it is deleted. MessageAttachment holds the references.
    attachments = models.JSONField(default=list, db_default=models.Value([], models.JSONField()), blank=True)

    class Meta:
        indexes = [
            # "What changed after version V": one index range at any depth.
            models.Index(fields=["chat", "version"], name="chats_message_chat_version_idx"),
            # ON DELETE SET NULL of a chat or user finds the forwards that name it.
            models.Index(
                fields=["forward_chat"],
                name="chats_message_fwd_chat_idx",
                condition=models.Q(forward_chat__isnull=False),
            ),
            models.Index(
                fields=["forward_sender"],
                name="chats_message_fwd_sender_idx",
                condition=models.Q(forward_sender__isnull=False),
            ),
        ]
        constraints = [
            # Also the index every history query walks: (chat_id, seq).
            models.UniqueConstraint(fields=["chat", "seq"], name="chats_message_chat_seq_unique"),
            models.UniqueConstraint(fields=["sender", "client_id"], name="chats_message_sender_client_id_unique"),
            models.CheckConstraint(condition=models.Q(seq__gte=1), name="chats_message_seq_positive"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} in {self.chat_id}"


class Reaction(models.Model):
    """One user's one emoji on one message. The unique key makes adding race-safe; the counts
    shown are ``Message.reactions``, recomputed from these rows under the chat lock."""

    id = models.BigAutoField(primary_key=True)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reaction_rows", db_index=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    emoji = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Also the index of "this message's reactions" and "the reader's reactions on a page".
            models.UniqueConstraint(
                fields=["message", "user", "emoji"], name="chats_reaction_message_user_emoji_unique"
            ),
        ]
        indexes = [
            # The popular posts (feeds.popular): the likes of the last day, by time.
            models.Index(
                fields=["created_at"], name="chats_reaction_like_time", condition=models.Q(emoji="\u2764\ufe0f")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.emoji} by {self.user_id} on {self.message_id}"


class MessageEdit(models.Model):
    """An earlier text of a message and when it was replaced. Erased when the message is deleted."""

    id = models.BigAutoField(primary_key=True)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="edits")
    text = models.TextField()
    edited_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"edit of {self.message_id} at {self.edited_at}"


class MessageAttachment(models.Model):
    """A message's reference to an upload (``position`` 1..10 in the message). While one exists
    the upload and its blob stay; the message's delete removes it, and an upload left with none
    is deleted in the same transaction (attachments.services)."""

    id = models.BigAutoField(primary_key=True)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachment_rows", db_index=False)
    upload = models.ForeignKey("attachments.Upload", on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "position"], name="chats_attachment_message_position_unique"),
        ]

    def __str__(self) -> str:
        return f"upload {self.upload_id} in message {self.message_id}"


class CommandKey(models.Model):
    """The answer to a REST command sent with an ``Idempotency-Key``: stored in the command's
    own transaction, so a repeat of the key returns it and changes nothing (``chats.idempotency``).
    Kept ``IDEMPOTENCY_KEY_HOURS``; ``manage.py purge_command_keys`` removes older ones."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=64)
    # What the key was used for ("like:<post id>", "subscribe:<channel id>", ...): another
    # command under the same key is refused, never answered with this one's result.
    command = models.CharField(max_length=80)
    status = models.PositiveSmallIntegerField()
    body = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="chats_commandkey_user_key_unique")]
        indexes = [models.Index(fields=["created_at"], name="chats_commandkey_created_idx")]

    def __str__(self) -> str:
        return f"{self.command} by {self.user_id} ({self.key})"
