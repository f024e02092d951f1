"""The JSON of an upload (the answer to POST /api/uploads, and each entry of a message's
``attachments``), with signed URLs."""

from __future__ import annotations

from . import signing

# Kinds a browser may show inline; every other file is served as a download.
INLINE_KINDS = {"image", "video", "audio", "voice"}


def attachment_payload(entry: dict) -> dict:
    """An attachment as clients see it, from the cached form messages carry
    (``{id, kind, mime, size, name, width, height, duration, waveform, thumb}``)."""
    upload_id = entry["id"]
    return {
        "id": upload_id,
        "kind": entry["kind"],
        "mime": entry["mime"],
        "size": entry["size"],
        "name": entry["name"],
        "width": entry.get("width"),
        "height": entry.get("height"),
        "duration": entry.get("duration"),
        "waveform": entry.get("waveform"),
        "thumbnail_url": signing.url(upload_id, "thumbnail") if entry.get("thumb") else None,
        "url": signing.url(upload_id, "file"),
    }


def cached_entry(upload) -> dict:
    """What a message keeps of an upload (``Message.attachments``), so that history renders
    without a join; the same for everyone."""
    blob = upload.blob
    return {
        "id": upload.id,
        "kind": upload.kind,
        "mime": blob.mime,
        "size": upload.size,
        "name": upload.name,
        "width": blob.width,
        "height": blob.height,
        "duration": blob.duration,
        "waveform": blob.waveform,
        "thumb": bool(blob.thumbnail_key),
    }


def upload_payload(upload) -> dict:
    return {
        **attachment_payload(cached_entry(upload)),
        "sha256": upload.blob.sha256,
        "thumbnail": bool(upload.blob.thumbnail_key),
    }
