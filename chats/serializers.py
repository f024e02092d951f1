"""Input validation for the chats API, and the documented shapes of its responses.

Responses are built by ``chats.payloads`` (shared with socket events); the output
serializers below describe those shapes for OpenAPI, and the schema test keeps the
two in step.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from attachments.serializers import AttachmentSerializer
from ops.fields import QueryIntegerField, StrictCharField

from .models import Chat, Membership, Message
from .validation import ABOUT_MAX, BATCH_MAX, CLIENT_ID_MAX, MAX_ID, TITLE_MAX

MAX_PAGE = 200
DEFAULT_PAGE = 50


# --- output shapes -----------------------------------------------------------------


class ReplyToSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    sender_id = serializers.IntegerField(allow_null=True)
    text = serializers.CharField(allow_blank=True, help_text="The first 100 characters of the replied message now.")
    deleted = serializers.BooleanField()


class ForwardedFromSerializer(serializers.Serializer):
    chat_id = serializers.IntegerField(allow_null=True, help_text="null unless you are a member of the source chat.")
    seq = serializers.IntegerField(allow_null=True, help_text="null unless you are a member of the source chat.")
    sender_id = serializers.IntegerField(allow_null=True)
    sender_username = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField(allow_null=True, help_text="When the original was sent.")


class ReactionCountSerializer(serializers.Serializer):
    emoji = serializers.CharField()
    count = serializers.IntegerField()
    me = serializers.BooleanField(help_text="You reacted with it (always false in socket events).")


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    chat_id = serializers.IntegerField()
    seq = serializers.IntegerField(help_text="Per-chat sequence number: 1, 2, 3, ... without gaps.")
    sender_id = serializers.IntegerField(allow_null=True, help_text="null for system messages.")
    kind = serializers.ChoiceField(choices=Message.Kind.choices)
    text = serializers.CharField()
    client_id = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    is_read = serializers.BooleanField(help_text="Every member other than the sender has read it.")
    version = serializers.IntegerField(help_text="The chat's version at this message's latest change.")
    edited_at = serializers.DateTimeField(allow_null=True)
    deleted = serializers.BooleanField(help_text="Deleted for everyone: a tombstone with empty text.")
    reply_to = ReplyToSerializer(allow_null=True)
    forwarded_from = ForwardedFromSerializer(allow_null=True)
    reactions = ReactionCountSerializer(many=True, help_text="Most used first.")
    pinned = serializers.BooleanField()
    attachments = AttachmentSerializer(many=True, help_text="In order; empty for none (and for a tombstone).")


class MemberSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class ChatSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Chat.Kind.choices)
    title = serializers.CharField(allow_blank=True)
    created_by = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    members = MemberSerializer(
        many=True, allow_null=True, help_text="Inline for chats of up to 100 members, else null."
    )
    members_count = serializers.IntegerField()
    last_seq = serializers.IntegerField()
    last_read_seq = serializers.IntegerField(help_text="The caller's read watermark.")
    unread_count = serializers.IntegerField()
    read_all_seq = serializers.IntegerField(help_text="Lowest read watermark over all members.")
    version = serializers.IntegerField(help_text="The chat's change counter (GET .../changes?after_version=).")
    pinned_seqs = serializers.ListField(child=serializers.IntegerField(), help_text="Newest pin first, at most 100.")
    last_message = MessageSerializer(allow_null=True)


class HistoryPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = MessageSerializer(many=True)


class MessagesPageSerializer(serializers.Serializer):
    results = MessageSerializer(many=True)
    has_more = serializers.BooleanField()


class ChangesPageSerializer(serializers.Serializer):
    results = MessageSerializer(many=True, help_text="Messages changed after after_version, by (version, seq).")
    version = serializers.IntegerField(
        help_text="With has_more false: the version you now hold. With has_more true: the next after_version."
    )
    pinned_seqs = serializers.ListField(child=serializers.IntegerField())
    has_more = serializers.BooleanField()


class EditEntrySerializer(serializers.Serializer):
    text = serializers.CharField(help_text="An earlier text.")
    edited_at = serializers.DateTimeField(help_text="When it was replaced.")


class DeleteResultSerializer(serializers.Serializer):
    chat_id = serializers.IntegerField()
    seqs = serializers.ListField(child=serializers.IntegerField(), help_text="Those that became tombstones now.")
    version = serializers.IntegerField()
    changed = serializers.BooleanField()


class ReactionResultSerializer(serializers.Serializer):
    chat_id = serializers.IntegerField()
    seq = serializers.IntegerField()
    reactions = ReactionCountSerializer(many=True)
    user_id = serializers.IntegerField()
    emoji = serializers.CharField()
    added = serializers.BooleanField()
    version = serializers.IntegerField()
    changed = serializers.BooleanField()


class PinsResultSerializer(serializers.Serializer):
    chat_id = serializers.IntegerField()
    pinned_seqs = serializers.ListField(child=serializers.IntegerField())
    version = serializers.IntegerField()
    changed = serializers.BooleanField()


class ForwardResultSerializer(serializers.Serializer):
    chat_id = serializers.IntegerField()
    messages = MessageSerializer(many=True, help_text="In the order of the seqs asked for.")
    duplicate = serializers.BooleanField(help_text="Every client_id was used before: nothing new was stored.")


class ReadStateSerializer(serializers.Serializer):
    last_read_seq = serializers.IntegerField()
    read_all_seq = serializers.IntegerField()


# --- inputs ------------------------------------------------------------------------


class ChatKindSerializer(serializers.Serializer):
    """The ``kind`` of a new chat, which decides the rest of the body (channels: POST /api/channels)."""

    kind = serializers.ChoiceField(choices=["direct", "group"])


class DirectChatCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[Chat.Kind.DIRECT])
    user_id = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="The other user (not yourself).")


class GroupChatCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[Chat.Kind.GROUP])
    title = StrictCharField(
        max_length=TITLE_MAX, help_text="1..128 characters after trimming, not only invisible characters."
    )
    member_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        required=False,
        default=list,
        help_text="Initial members besides the creator.",
    )

    def validate(self, attrs):
        if len(attrs.get("member_ids") or []) > settings.GROUP_MAX_MEMBERS:
            raise serializers.ValidationError({"member_ids": [f"At most {settings.GROUP_MAX_MEMBERS} members."]})
        return attrs


CHAT_CREATE_SERIALIZERS = {Chat.Kind.DIRECT: DirectChatCreateSerializer, Chat.Kind.GROUP: GroupChatCreateSerializer}

# The request body of POST /api/chats in the schema: one of the two shapes, chosen by ``kind``.
ChatCreateSerializer = PolymorphicProxySerializer(
    component_name="ChatCreate",
    serializers={"direct": DirectChatCreateSerializer, "group": GroupChatCreateSerializer},
    resource_type_field_name="kind",
)


class ChatUpdateSerializer(serializers.Serializer):
    title = StrictCharField(
        max_length=TITLE_MAX, help_text="1..128 characters after trimming, not only invisible characters."
    )


class MemberAddSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    role = serializers.ChoiceField(
        choices=[Membership.Role.MEMBER, Membership.Role.ADMIN], default=Membership.Role.MEMBER
    )


class SendMessageSerializer(serializers.Serializer):
    client_id = StrictCharField(
        min_length=1,
        max_length=CLIENT_ID_MAX,
        trim_whitespace=False,
        required=False,
        help_text="Not only whitespace. Required unless an Idempotency-Key header gives it (the same key).",
    )
    text = StrictCharField(
        max_length=settings.MESSAGE_MAX_LENGTH,
        required=False,
        allow_blank=True,
        help_text="1..4096 characters after trimming, not only invisible characters; optional (a caption) "
        "when attachment_ids are given.",
    )
    reply_to_seq = serializers.IntegerField(
        min_value=1, max_value=MAX_ID, required=False, allow_null=True, help_text="A live message of this chat."
    )
    attachment_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        max_length=settings.ATTACHMENTS_PER_MESSAGE,
        required=False,
        help_text="Up to 10 of your uploads (POST /api/uploads), in the order shown.",
    )


class EditMessageSerializer(serializers.Serializer):
    text = StrictCharField(
        max_length=settings.MESSAGE_MAX_LENGTH,
        help_text="1..4096 characters after trimming, not only invisible characters.",
    )


_SEQS = {"min_length": 1, "max_length": BATCH_MAX}


class DeleteMessagesSerializer(serializers.Serializer):
    seqs = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), **_SEQS, help_text="1..100 distinct seqs."
    )


class ForwardSerializer(serializers.Serializer):
    from_chat_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    seqs = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), **_SEQS, help_text="1..100 distinct seqs."
    )
    client_ids = serializers.ListField(
        child=StrictCharField(min_length=1, max_length=CLIENT_ID_MAX, trim_whitespace=False),
        **_SEQS,
        help_text="One fresh, distinct client_id per seq.",
    )


class ChangesQuerySerializer(serializers.Serializer):
    after_version = QueryIntegerField(required=False, default=0, min_value=0, max_value=2**62)
    limit = QueryIntegerField(required=False, default=100, min_value=1, help_text="Default 100; clamped to 200.")

    def validate_limit(self, value: int) -> int:
        return min(value, MAX_PAGE)


class ReadSerializer(serializers.Serializer):
    up_to_seq = serializers.IntegerField(min_value=0, max_value=MAX_ID)


class HistoryQuerySerializer(serializers.Serializer):
    limit = QueryIntegerField(
        required=False, default=DEFAULT_PAGE, min_value=0, help_text="Default 50; clamped to 200."
    )
    offset = QueryIntegerField(required=False, default=0, min_value=0, max_value=2**62)

    def validate_limit(self, value: int) -> int:
        return min(value, MAX_PAGE)


class CursorQuerySerializer(serializers.Serializer):
    after_seq = QueryIntegerField(
        required=False,
        min_value=0,
        max_value=2**62,
        help_text="Messages with seq > after_seq (exclusive). Not together with before_seq (400).",
    )
    before_seq = QueryIntegerField(
        required=False,
        min_value=1,
        max_value=2**62,
        help_text="Messages with seq < before_seq (exclusive). Not together with after_seq (400).",
    )
    limit = QueryIntegerField(
        required=False, default=DEFAULT_PAGE, min_value=1, help_text="Default 50; clamped to 200."
    )

    def validate_limit(self, value: int) -> int:
        return min(value, MAX_PAGE)

    def validate(self, attrs):
        if "after_seq" in attrs and "before_seq" in attrs:
            raise serializers.ValidationError("Give after_seq or before_seq, not both.")
        return attrs


# --- channels ----------------------------------------------------------------------------


class ChannelSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The channel's chat id: its posts are this chat's messages.")
    kind = serializers.ChoiceField(choices=[Chat.Kind.CHANNEL])
    title = serializers.CharField()
    handle = serializers.CharField(allow_null=True, help_text="Public channels only (null: private).")
    about = serializers.CharField(allow_blank=True)
    public = serializers.BooleanField(help_text="Has a handle: found by search, read by anyone signed in.")
    subscribers_count = serializers.IntegerField(help_text="Exact.")
    subscribed = serializers.BooleanField(help_text="You subscribe to it.")
    role = serializers.ChoiceField(
        choices=[Membership.Role.OWNER, Membership.Role.ADMIN], allow_null=True, help_text="Yours on its staff."
    )
    invite_token = serializers.CharField(
        allow_null=True, help_text="For its staff only: what readers of a private channel subscribe with."
    )
    created_at = serializers.DateTimeField()
    last_seq = serializers.IntegerField()
    version = serializers.IntegerField()
    pinned_seqs = serializers.ListField(child=serializers.IntegerField())


class ChannelCreateSerializer(serializers.Serializer):
    title = StrictCharField(max_length=TITLE_MAX, help_text="1..128 characters after trimming.")
    handle = StrictCharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=33,
        help_text="Makes the channel public: 5..32 letters, digits or _, starting with a letter (a leading @ is "
        "dropped), unique whatever the case. Omitted: a private channel.",
    )
    about = StrictCharField(required=False, allow_blank=True, max_length=ABOUT_MAX + 64, default="")


class ChannelSearchQuerySerializer(serializers.Serializer):
    search = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        help_text="Public channels whose handle or title starts with it (any case; '@news' names handles only; "
        "empty: all of them), most subscribed first. Omitted: the channels you subscribe to or run.",
    )
    limit = QueryIntegerField(required=False, min_value=1, max_value=MAX_PAGE, default=DEFAULT_PAGE)


class SubscribeSerializer(serializers.Serializer):
    invite = StrictCharField(
        required=False, allow_blank=True, max_length=64, default="", help_text="A private channel's invite token."
    )


class SubscriptionSerializer(serializers.Serializer):
    channel_id = serializers.IntegerField()
    subscribed = serializers.BooleanField()
    changed = serializers.BooleanField(help_text="false: it already was so (a repeat changes nothing).")
    subscribers_count = serializers.IntegerField()


class LikeSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The post's message id.")
    channel_id = serializers.IntegerField()
    seq = serializers.IntegerField()
    likes_count = serializers.IntegerField()
    liked_by_me = serializers.BooleanField()
    changed = serializers.BooleanField()
    version = serializers.IntegerField(help_text="The channel's version after the change.")
