"""A real S3-compatible HTTP server for tests: ``moto_server`` (from ``moto[server]``) on a free
port of 127.0.0.1, one per test session, with an emptied bucket per test. No patching of boto:
django-storages and browsers talk HTTP to it as they would to MinIO or AWS."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.live import free_port

BUCKET = "messenger-test-attachments"
CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """A moto_server process for the session; its URL."""
    port = free_port()
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


def empty_bucket(endpoint: str) -> None:
    """``BUCKET`` exists on ``endpoint`` and holds nothing."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS)
    try:
        client.head_bucket(Bucket=BUCKET)
    except client.exceptions.ClientError:
        client.create_bucket(Bucket=BUCKET)
        return
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
