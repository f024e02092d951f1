"""Uploading a file, and removing what nothing references any more.

:func:`create_upload` takes a file the upload handler spooled to disk: it is inspected (type
from the bytes, images cleaned and thumbnailed, audio and video probed), stored once per
content (a blob found by sha256 gets one more reference instead of a second copy), and recorded
as the user's upload within their quota. Messages take references to uploads
(``chats.MessageAttachment``); when the last message carrying an upload is deleted, the chats
app deletes the upload in the same transaction and hands the blobs that lost their last
reference to :func:`remove_blobs`, which runs after the commit. ``purge_uploads`` removes
uploads no message took within ``UPLOAD_UNATTACHED_HOURS`` and retries blob removals a crash
interrupted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from ops import metrics
from runtime import limits

from . import storage
from .exceptions import QuotaExceeded, TooLarge, UnsupportedType, UploadInvalid
from .inspect import Inspected, Refused, inspect
from .models import Blob, Upload

log = logging.getLogger(__name__)

NAME_MAX = 255
UPLOADS = limits.RateLimit(
    "upload", "UPLOAD_RATE_LIMIT", "At most {limit} uploads per {window} s.", "UPLOAD_RATE_WINDOW_SECONDS"
)


def clean_name(raw: object) -> str:
    """The client's file name made harmless: no directories (``../../etc/passwd`` is
    ``passwd``), no control or bidi-override characters, at most 255 characters; "file" if
    nothing is left."""
    name = str(raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    # Category C: controls (NUL included), format characters (bidi overrides), unassigned.
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C").strip(" .")
    if len(name) > NAME_MAX:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: NAME_MAX - len(ext) - 1] + dot + ext) if dot and len(ext) <= 16 else name[:NAME_MAX]
    return name or "file"


@dataclass(frozen=True)
class Spooled:
    """A file the upload handler wrote to disk, with what it counted on the way."""

    path: Path
    name: str
    size: int
    sha256: str


def used_bytes(owner_id: int) -> int:
    return Upload.objects.filter(owner_id=owner_id).aggregate(total=Sum("size"))["total"] or 0


def create_upload(*, owner_id: int, spooled: Spooled, voice: bool = False) -> Upload:
    """Inspect, store (once per content) and record one user's file. Raises TooLarge,
    QuotaExceeded, UnsupportedType, RateLimited, UploadInvalid."""
    limits.check(UPLOADS, user_id=owner_id)
    if spooled.size == 0:
        raise UploadInvalid({"file": ["The file is empty."]})
    if spooled.size > settings.MAX_UPLOAD_BYTES:
        raise TooLarge(f"Files are limited to {settings.MAX_UPLOAD_BYTES} bytes.")
    _check_quota(owner_id, spooled.size)  # before the work of inspecting; again under the lock
    try:
        info = inspect(spooled.path, voice=voice)
    except Refused as refused:
        raise (TooLarge if refused.code == "too_large" else UnsupportedType)(refused.detail) from None
    try:
        size, sha256 = (spooled.size, spooled.sha256) if info.path == spooled.path else _measure(info.path)
        record = {"owner_id": owner_id, "name": clean_name(spooled.name), "info": info, "size": size, "sha256": sha256}
        try:
            return _record(**record)
        except IntegrityError:  # a parallel upload of the same new content made the blob: reuse it
            return _record(**record)
    finally:
        for path in info.temporary:
            path.unlink(missing_ok=True)


def _check_quota(owner_id: int, size: int) -> None:
    quota = settings.UPLOAD_QUOTA_BYTES
    if quota and used_bytes(owner_id) + size > quota:
        raise QuotaExceeded(f"Your files would take more than your {quota} bytes.")


def _measure(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return os.path.getsize(path), digest.hexdigest()


def _record(*, owner_id: int, name: str, info: Inspected, size: int, sha256: str) -> Upload:
    # Store the bytes first (outside the transaction: no lock is held while they travel),
    # unless a blob with this content exists; a copy that turns out not to be needed goes.
    stored = [] if Blob.objects.filter(sha256=sha256).exists() else _store(info, sha256)
    try:
        with transaction.atomic():
            # The owner's row lock serializes their uploads, so the quota check is exact.
            get_user_model().objects.select_for_update().filter(id=owner_id).values_list("id").first()
            _check_quota(owner_id, size)
            blob = Blob.objects.select_for_update().filter(sha256=sha256).first()
            if blob is not None:
                Blob.objects.filter(pk=blob.pk).update(refs=F("refs") + 1)
                if stored:
                    transaction.on_commit(lambda keys=tuple(stored): storage.remove(*keys))
                    stored = []
            else:
                stored = stored or _store(info, sha256)  # empty: it went between the look and the lock
                blob = Blob.objects.create(
                    sha256=sha256,
                    size=size,
                    mime=info.mime,
                    key=stored[0],
                    thumbnail_key=stored[1] if len(stored) > 1 else "",
                    width=info.width,
                    height=info.height,
                    duration=info.duration,
                    waveform=info.waveform,
                    refs=1,
                )
            upload = Upload.objects.create(owner_id=owner_id, blob=blob, kind=info.kind, name=name, size=size)
    except BaseException:
        storage.remove(*stored)
        raise
    metrics.UPLOADS_STORED.labels(kind=info.kind).inc()
    return upload


def _store(info: Inspected, sha256: str) -> list[str]:
    """The file and its thumbnail into storage: their names."""
    names = [storage.put_file(info.path, sha256=sha256, mime=info.mime)]
    if info.thumbnail:
        names.append(storage.put_thumbnail(info.thumbnail, sha256=sha256))
    return names


def remove_blobs(blob_ids: list[int]) -> None:
    """After a commit that left these blobs unreferenced: delete each row still at 0 references,
    then its files. A blob a new upload took meanwhile (refs > 0) stays."""
    for blob_id in blob_ids:
        with transaction.atomic():
            gone = (
                Blob.objects.select_for_update().filter(id=blob_id, refs=0).values_list("key", "thumbnail_key").first()
            )
            if gone is None:
                continue
            Blob.objects.filter(id=blob_id).delete()
        try:
            storage.remove(*gone)
        except Exception:
            log.exception("blob_file_remove_failed", extra={"blob_id": blob_id})
        metrics.BLOBS_REMOVED.inc()


def purge(*, now=None) -> tuple[int, int]:
    """Remove uploads never attached within UPLOAD_UNATTACHED_HOURS, then every blob at 0
    references (also those a crash left between commit and removal). Returns (uploads, blobs)."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.UPLOAD_UNATTACHED_HOURS)
    removed = 0
    while True:
        with transaction.atomic():
            ids = list(
                Upload.objects.select_for_update(skip_locked=True)
                .filter(attached_at__isnull=True, created_at__lt=cutoff)
                .values_list("id", flat=True)[:500]
            )
            if not ids:
                break
            with connection.cursor() as cursor:
                # Only uploads still unattached: a send that took one meanwhile set attached_at.
                cursor.execute(
                    "WITH gone AS (DELETE FROM attachments_upload WHERE id = ANY(%s::bigint[]) AND attached_at IS NULL"
                    " RETURNING blob_id), counted AS (SELECT blob_id, count(*) AS n FROM gone GROUP BY blob_id)"
                    " UPDATE attachments_blob b SET refs = b.refs - counted.n FROM counted WHERE b.id = counted.blob_id",
                    [ids],
                )
            removed += len(ids)
    idle = list(Blob.objects.filter(refs=0).values_list("id", flat=True))
    remove_blobs(idle)
    return removed, len(idle)
