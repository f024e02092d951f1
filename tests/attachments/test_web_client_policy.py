"""The web client's Content-Security-Policy admits the origin files are loaded from: the app's
own on the local backend, and the object store's on S3 (files redirect to presigned URLs)."""

from __future__ import annotations

import re

import pytest


def media_sources(html: str) -> dict[str, list[str]]:
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    return {name: directives[name].split() for name in ("img-src", "media-src", "connect-src")}


@pytest.mark.django_db
def test_the_page_admits_the_origin_files_come_from(client, storage_backend, settings):
    sources = media_sources(client.get("/").content.decode())
    assert sources["connect-src"] == ["'self'"]  # no fetch() goes to the store
    if storage_backend == "local":
        assert sources == {**sources, "img-src": ["'self'", "data:", "blob:"], "media-src": ["'self'", "blob:"]}
    else:
        public = settings.STORAGES["attachments"]["OPTIONS"]["public_endpoint_url"]
        assert sources["img-src"] == ["'self'", "data:", "blob:", public]
        assert sources["media-src"] == ["'self'", "blob:", public]
