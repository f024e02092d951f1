"""The documented shape of an attachment in message and post objects (``payloads.attachment_payload``)."""

from __future__ import annotations

from rest_framework import serializers

KINDS = ["image", "video", "audio", "voice", "file"]


class AttachmentSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The upload's id.")
    kind = serializers.ChoiceField(choices=KINDS)
    mime = serializers.CharField(help_text="Sniffed from the bytes, never taken from the client.")
    size = serializers.IntegerField()
    name = serializers.CharField()
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    duration = serializers.FloatField(allow_null=True, help_text="Seconds (audio and video).")
    waveform = serializers.ListField(
        child=serializers.IntegerField(), allow_null=True, help_text="64 levels 0..31 (voice)."
    )
    thumbnail_url = serializers.CharField(allow_null=True, help_text="Signed, short-lived.")
    url = serializers.CharField(help_text="Signed, short-lived.")
