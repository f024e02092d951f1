"""``bench.attachments`` (S10): its request bodies are what POST /api/uploads takes as the bench
means them (distinct noise JPEGs that are thumbnailed, random bytes that stay a plain file), and
its cleanup deletes exactly the uploads it made and their blobs."""

from __future__ import annotations

import io
import random

import pytest
from django.db import connection
from PIL import Image

from attachments.models import Blob, Upload

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def local_storage(settings, tmp_path):
    settings.ATTACHMENTS_STORAGE = "local"
    settings.UPLOAD_RATE_LIMIT = 0
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "attachments"},
        },
    }


def _pg_base() -> tuple[str, str]:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgresql://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}", s["NAME"]


def test_noise_jpegs_are_distinct_images_near_the_target_size():
    from bench.attachments import noise_jpegs

    target = 256 * 1024
    images = noise_jpegs(3, seed=1, target=target)
    assert len(set(images)) == 3
    for data in images:
        assert 0.7 * target < len(data) < 1.3 * target
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG"
            assert image.size[0] == image.size[1]
    with Image.open(io.BytesIO(images[0])) as a, Image.open(io.BytesIO(images[1])) as b:
        pa, pb = a.convert("RGB").tobytes(), b.convert("RGB").tobytes()
    differing = sum(pa[i : i + 3] != pb[i : i + 3] for i in range(0, len(pa), 3))
    assert 0 < differing < a.size[0] * a.size[1] // 5  # a few pixels (and their JPEG blocks)


def test_the_bench_bodies_upload_as_meant_and_the_cleanup_removes_them(local_storage, make_user, api):
    from bench import db
    from bench.attachments import Problems, check_upload, multipart, noise_jpegs, plain_bytes

    user, other = make_user(), make_user()
    client = api(user)
    problems = Problems()
    answers = []
    for i, data in enumerate(noise_jpegs(2, seed=2, target=32 * 1024)):
        body, ctype = multipart(data, filename=f"noise-{i}.jpg", content_type="image/jpeg")
        response = client.generic("POST", "/api/uploads", body, content_type=ctype)
        answers.append(check_upload(response.status_code, response.content, kind="image", size=None, problems=problems))
    plain = plain_bytes(4096, random.Random(3))
    body, ctype = multipart(plain, filename="random.bin", content_type="application/octet-stream")
    response = client.generic("POST", "/api/uploads", body, content_type=ctype)
    answers.append(check_upload(response.status_code, response.content, kind="file", size=4096, problems=problems))
    assert problems.counts == {}
    assert answers[0]["sha256"] != answers[1]["sha256"]  # nothing deduplicated
    assert answers[2]["mime"] == "application/octet-stream"

    # An answer that is not what was sent is counted, not taken.
    assert check_upload(201, response.content, kind="image", size=None, problems=problems) is None
    assert check_upload(413, b"{}", kind="file", size=1, problems=problems) is None
    assert problems.total == 2

    kept = api(other).generic("POST", "/api/uploads", body, content_type=ctype).json()  # same bytes: one blob
    base, name = _pg_base()
    removed = db.remove_uploads(base, name, [a["id"] for a in answers])
    assert removed == {"uploads": 3, "blobs": 2}  # the plain file's blob is still held by `other`
    assert list(Upload.objects.values_list("id", flat=True)) == [kept["id"]]
    assert list(Blob.objects.values_list("refs", flat=True)) == [1]
    assert db.remove_uploads(base, name, []) == {"uploads": 0, "blobs": 0}
