"""``POST /api/uploads``: one file, multipart, spooled to disk by :class:`HashingUploadHandler`.

Downloads (``/api/files/{id}``) need the chats' access check and live in ``chats.views``.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from ops.errors import ERROR_RESPONSES as E

from . import services
from .exceptions import TooLarge, UploadInvalid
from .handlers import HashingUploadHandler
from .payloads import upload_payload
from .serializers import KINDS


class UploadSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=KINDS)
    mime = serializers.CharField(help_text="Sniffed from the bytes, never taken from the client.")
    size = serializers.IntegerField()
    name = serializers.CharField(help_text="The client's file name without directories or control characters.")
    sha256 = serializers.CharField()
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    duration = serializers.FloatField(allow_null=True, help_text="Seconds (audio and video).")
    waveform = serializers.ListField(
        child=serializers.IntegerField(), allow_null=True, help_text="64 levels 0..31 (voice)."
    )
    thumbnail = serializers.BooleanField(help_text="Whether a 320 px WebP thumbnail exists.")
    thumbnail_url = serializers.CharField(allow_null=True, help_text="Signed, short-lived.")
    url = serializers.CharField(help_text="Signed, short-lived.")


class FormBooleanField(serializers.BooleanField):
    """A boolean form field as the schema states it: exactly "true" or "false"."""

    TRUE_VALUES = {"true", True}
    FALSE_VALUES = {"false", False}
    NULL_VALUES: set = set()


class UploadOptionsSerializer(serializers.Serializer):
    """The form fields besides the file (the file itself goes through the upload handler)."""

    voice = FormBooleanField(required=False, help_text="A voice message: it must be audio.")


class UploadFormSerializer(UploadOptionsSerializer):
    """The multipart body as the schema shows it."""

    file = serializers.FileField()


class UploadView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        summary="Upload one file (photo, video, audio, voice message or any file)",
        description=(
            "Multipart with one part `file`, and optionally `voice=true` for a voice message. "
            "The type is sniffed from the bytes. Images are re-encoded without EXIF/GPS metadata "
            "and get a thumbnail. Attach it to a message with `attachment_ids` when sending."
        ),
        request={"multipart/form-data": UploadFormSerializer},
        responses={201: UploadSerializer, 400: E[400], 401: E[401], 413: E[413], 415: E[415], 429: E[429]},
        examples=[
            OpenApiExample("A photo", response_only=True, status_codes=["201"], value={"id": 7, "kind": "image"})
        ],
    )
    def post(self, request):
        handler = HashingUploadHandler(request._request)
        request._request.upload_handlers = [handler]
        files = request.FILES
        if handler.too_large:
            raise TooLarge(f"Files are limited to {settings.MAX_UPLOAD_BYTES} bytes.")
        parts = files.getlist("file")
        if len(parts) != 1 or len(files) != 1:
            for part in files.values():
                part.close()
            raise UploadInvalid({"file": ["Send exactly one file, in the part named 'file'."]})
        upload = parts[0]
        voice_values = request.data.getlist("voice") if hasattr(request.data, "getlist") else []
        if len(voice_values) > 1:
            upload.close()
            raise UploadInvalid({"voice": ["Give it once."]})
        options = UploadOptionsSerializer(data={"voice": voice_values[0]} if voice_values else {})
        if not options.is_valid():
            upload.close()
            raise UploadInvalid(options.errors)
        voice = options.validated_data.get("voice", False)
        try:
            created = services.create_upload(
                owner_id=request.user.id,
                spooled=services.Spooled(
                    path=Path(upload.temporary_file_path()),
                    name=upload.name,
                    size=handler.size,
                    sha256=handler.sha256.hexdigest(),
                ),
                voice=voice,
            )
        finally:
            upload.close()
        return Response(upload_payload(created), status=status.HTTP_201_CREATED)
