"""Both storage backends for real: the local filesystem (a temporary directory) and S3 through
django-storages against ``moto_server``, a real S3-compatible HTTP server started here on a free
port (no patching of boto). Tests that take ``storage_backend`` run once on each."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.s3 import BUCKET, empty_bucket


def s3_storages(endpoint: str) -> dict:
    return {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "attachments.storage.PublicS3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": endpoint,
                # Presigned URLs name another spelling of the address, as browsers behind nginx would.
                "public_endpoint_url": endpoint.replace("127.0.0.1", "localhost"),
                "region_name": "us-east-1",
                "access_key": "testing",
                "secret_key": "testing",
                "querystring_auth": True,
                "querystring_expire": 3600,
                "file_overwrite": False,
                "default_acl": None,
            },
        },
    }


@pytest.fixture(params=["local", "s3"])
def storage_backend(request, settings, tmp_path):
    """The attachments storage for this test: "local" or "s3" (a fresh bucket on moto_server)."""
    if request.param == "local":
        settings.ATTACHMENTS_STORAGE = "local"
        settings.STORAGES = {
            **settings.STORAGES,
            "attachments": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": tmp_path / "attachments"},
            },
        }
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        empty_bucket(endpoint)
        settings.ATTACHMENTS_STORAGE = "s3"
        settings.STORAGES = s3_storages(endpoint)
    return request.param


def stored_names() -> list[str]:
    """Every object in the attachments storage (both backends)."""
    from django.core.files.storage import storages

    store = storages["attachments"]
    names = []

    def walk(prefix: str) -> None:
        dirs, files = store.listdir(prefix)
        names.extend(f"{prefix}/{name}".lstrip("/") for name in files)
        for sub in dirs:
            walk(f"{prefix}/{sub}".lstrip("/"))

    try:
        walk("")
    except FileNotFoundError:
        return []
    return sorted(names)
