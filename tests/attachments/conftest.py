"""Both storage backends for real: the local filesystem (a temporary directory) and S3 through
django-storages against ``moto_server``, a real S3-compatible HTTP server started here on a free
port (no patching of boto). Tests that take ``storage_backend`` run once on each."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

BUCKET = "messenger-test-attachments"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """A moto_server process for the session; its URL."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115 - closed at teardown
    binary = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"moto_server did not start (see {log.name})", pytrace=False)
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)
    log.close()


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
        import boto3

        endpoint = request.getfixturevalue("s3_endpoint")
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) if _exists(client) else []:
            for item in page.get("Contents", []):
                client.delete_object(Bucket=BUCKET, Key=item["Key"])
        if not _exists(client):
            client.create_bucket(Bucket=BUCKET)
        settings.ATTACHMENTS_STORAGE = "s3"
        settings.STORAGES = s3_storages(endpoint)
    return request.param


def _exists(client) -> bool:
    try:
        client.head_bucket(Bucket=BUCKET)
        return True
    except Exception:
        return False


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
