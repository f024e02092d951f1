"""Input of the feed endpoint and the documented shape of its answer."""

from __future__ import annotations

from rest_framework import serializers

from attachments.serializers import AttachmentSerializer
from ops.fields import QueryIntegerField

from .popular import SIZE as POPULAR_SIZE
from .selectors import FIRST_PAGE, MAX_PAGE


class FeedQuerySerializer(serializers.Serializer):
    cursor = QueryIntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        help_text="`next_cursor` of the previous page; omitted: the newest.",
    )
    limit = QueryIntegerField(required=False, min_value=1, max_value=MAX_PAGE, default=FIRST_PAGE)


class PostChannelSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    handle = serializers.CharField(allow_null=True)


class PostSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The post's message id.")
    channel = PostChannelSerializer()
    seq = serializers.IntegerField(help_text="Its seq in the channel.")
    sender_id = serializers.IntegerField(allow_null=True)
    text = serializers.CharField(allow_blank=True)
    attachments = AttachmentSerializer(many=True)
    created_at = serializers.DateTimeField()
    edited_at = serializers.DateTimeField(allow_null=True)
    version = serializers.IntegerField()
    likes_count = serializers.IntegerField()
    liked_by_me = serializers.BooleanField()


class FeedPageSerializer(serializers.Serializer):
    results = PostSerializer(many=True)
    next_cursor = serializers.IntegerField(allow_null=True, help_text="null: no older posts.")


class PopularQuerySerializer(serializers.Serializer):
    limit = QueryIntegerField(required=False, min_value=1, max_value=POPULAR_SIZE, default=FIRST_PAGE)


class PopularSerializer(serializers.Serializer):
    results = PostSerializer(many=True)
