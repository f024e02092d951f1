"""Uploaded files: content-addressed blobs and the uploads that reference them.

A :class:`Blob` is one stored content, found by its sha256: the same bytes uploaded twice, or
sent in several messages, are stored once. ``refs`` counts the uploads that hold it, changed
only under the blob's row lock; a blob whose count reaches 0 is removed after the commit that
released it (``services.release``), and ``purge_uploads`` retries any removal a crash left
behind. Its storage keys carry a random part, so a new blob of the same content never shares a
key with one being removed.

An :class:`Upload` is one user's file: the name they gave it, what it is (sniffed from the
bytes) and the blob. It lives while a message carries it (``chats.MessageAttachment``), or for
``UPLOAD_UNATTACHED_HOURS`` after the upload if none ever does.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Blob(models.Model):
    sha256 = models.CharField(max_length=64, unique=True)
    size = models.BigIntegerField()
    mime = models.CharField(max_length=127)
    # Storage keys (Django storage names) of the content and of its thumbnail ("" if none).
    key = models.CharField(max_length=255)
    thumbnail_key = models.CharField(max_length=255, blank=True, default="")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True)  # seconds, audio and video
    waveform = models.JSONField(null=True, blank=True)  # 64 amplitudes 0..31, audio
    refs = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["refs"], name="blob_unreferenced", condition=models.Q(refs=0))]

    def __str__(self) -> str:
        return f"{self.sha256[:12]}… ({self.size} bytes)"


class Upload(models.Model):
    class Kind(models.TextChoices):
        IMAGE = "image", "Image"
        VIDEO = "video", "Video"
        AUDIO = "audio", "Audio"
        VOICE = "voice", "Voice message"
        FILE = "file", "File"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads")
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="uploads")
    kind = models.CharField(max_length=5, choices=Kind.choices)
    name = models.CharField(max_length=255)
    size = models.BigIntegerField()  # the blob's size, kept here for the owner's quota sum
    created_at = models.DateTimeField(default=timezone.now)
    # Set when a message first carries it; unattached uploads are purged after a while.
    attached_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["owner", "created_at"], name="upload_owner_created"),
            models.Index(fields=["created_at"], name="upload_unattached", condition=models.Q(attached_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.size} bytes)"
