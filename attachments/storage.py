"""Where blobs live: the ``attachments`` alias of Django's ``STORAGES``.

The local filesystem (the embedded default, under ``ATTACHMENTS_DIR``) or S3-compatible object
storage through django-storages (``ATTACHMENTS_STORAGE=s3`` and the ``AWS_*`` settings). Names
are ``blobs/<aa>/<sha256>-<random>`` and ``thumbs/<aa>/<sha256>-<random>.webp``: the random
part keeps a blob being removed and a new one of the same content apart.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlsplit

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


def browser_origin() -> str | None:
    """The origin browsers fetch files from when it is not the app's own (S3 redirects to
    presigned URLs on the object store's host): the web client's Content-Security-Policy must
    name it, or no picture, audio or video would load. ``None`` when files come from the app."""
    if not redirects():
        return None
    # A presigned URL is made locally (no request), and names exactly the host browsers get.
    url = urlsplit(storage().url("origin-probe"))
    return f"{url.scheme}://{url.netloc}"


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


try:
    from storages.backends.s3 import S3Storage
except ImportError:  # pragma: no cover - django-storages is in requirements.txt
    S3Storage = object  # type: ignore[assignment,misc]


class PublicS3Storage(S3Storage):
    """S3Storage whose presigned URLs name ``public_endpoint_url`` when one is set: the app
    reaches the object store at one address (``http://minio:9000`` inside Compose), browsers at
    another (``http://localhost:8000`` through nginx). boto3 signs for the host in the URL, so
    the URL is signed by a client configured with the public address; the store checks the
    signature against the Host it receives (nginx passes the browser's)."""

    def __init__(self, *, public_endpoint_url: str | None = None, **options):
        self.public_endpoint_url = public_endpoint_url
        super().__init__(**options)
        self._public_client = None

    def url(self, name, parameters=None, expire=None, http_method=None):
        if not self.public_endpoint_url:
            return super().url(name, parameters=parameters, expire=expire, http_method=http_method)
        if self._public_client is None:
            import boto3
            from botocore.config import Config

            self._public_client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.public_endpoint_url,
                region_name=self.region_name,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                config=Config(signature_version=self.signature_version or "s3v4", s3={"addressing_style": "path"}),
            )
        from storages.utils import clean_name

        params = {"Bucket": self.bucket_name, "Key": self._normalize_name(clean_name(name)), **(parameters or {})}
        return self._public_client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expire or self.querystring_expire, HttpMethod=http_method
        )
