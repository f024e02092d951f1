"""Where blobs live: the ``attachments`` alias of Django's ``STORAGES``.

The local filesystem (the embedded default, under ``ATTACHMENTS_DIR``) or S3-compatible object
storage through django-storages (``ATTACHMENTS_STORAGE=s3`` and the ``AWS_*`` settings). Names
are ``blobs/<aa>/<sha256>-<random>`` and ``thumbs/<aa>/<sha256>-<random>.webp``: the random
part keeps a blob being removed and a new one of the same content apart.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages

ALIAS = "attachments"


def storage() -> Storage:
    return storages[ALIAS]


def redirects() -> bool:
    """Whether files are served by redirecting to the object store (presigned URLs) instead of
    through the app: true for S3."""
    return settings.ATTACHMENTS_STORAGE == "s3"


def _name(folder: str, sha256: str, suffix: str = "") -> str:
    return f"{folder}/{sha256[:2]}/{sha256}-{secrets.token_hex(6)}{suffix}"


def put_file(path: Path, *, sha256: str, mime: str) -> str:
    """Stores the file at ``path`` (streamed: S3 gets a multipart upload); returns its name."""
    with open(path, "rb") as handle:
        content = File(handle)
        content.content_type = mime  # django-storages sends it as the object's Content-Type
        return storage().save(_name("blobs", sha256), content)


def put_thumbnail(data: bytes, *, sha256: str) -> str:
    content = ContentFile(data)
    content.content_type = "image/webp"
    return storage().save(_name("thumbs", sha256, ".webp"), content)


def remove(*names: str) -> None:
    for name in names:
        if name:
            storage().delete(name)
