"""Attachments end to end on both storage backends: upload (type from the bytes, metadata
stripped, thumbnails, voice waveforms, every refusal), sending with files, downloads (signed
URLs, the access rule, ranges, safe headers) and the reference counting that stores a content
once and removes it after its last reference (issue 13)."""

from __future__ import annotations

import io
import urllib.request
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.utils import timezone
from PIL import Image

from attachments import signing
from attachments.models import Blob, Upload
from chats import services
from chats.models import MessageAttachment
from tests.conftest import receive_until, ws_connect

from . import samples
from .conftest import stored_names

pytestmark = pytest.mark.django_db(transaction=True)


def upload(client, data: bytes, name: str = "file.bin", **fields):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(
        "/api/uploads",
        {"file": SimpleUploadedFile(name, data, content_type="application/x-whatever"), **fields},
        format="multipart",
    )


def fetch(client, url: str, **headers):
    """GET a file URL through the app; an S3 redirect is followed to the object store."""
    response = client.get(url, **headers)
    if response.status_code == 302:
        request = urllib.request.Request(
            response["Location"], headers={k[5:].replace("_", "-"): v for k, v in headers.items()}
        )
        with urllib.request.urlopen(request, timeout=10) as remote:
            return remote.status, remote.read(), {k.lower(): v for k, v in remote.headers.items()}
    body = async_to_sync(_collect)(response) if response.streaming else response.content
    return response.status_code, body, {k.lower(): v for k, v in response.items()}


async def _collect(response) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


@pytest.fixture
def pair(make_user, api):
    alice, bob = make_user("alice"), make_user("bob")
    chat_id = services.open_direct_chat(user_id=alice.id, other_user_id=bob.id).chat.id
    return alice, bob, chat_id, api(alice), api(bob)


def send(client, chat_id: int, ids: list[int], text: str | None = None, client_id: str | None = None):
    body = {"client_id": client_id or uuid.uuid4().hex, "attachment_ids": ids}
    if text is not None:
        body["text"] = text
    return client.post(f"/api/chats/{chat_id}/messages", body, format="json")


# --- uploading --------------------------------------------------------------------------------


def test_a_photo_loses_its_gps_and_stands_upright(storage_backend, pair):
    _, _, _, as_alice, _ = pair
    response = upload(as_alice, samples.jpeg_with_gps(64, 32, orientation=6), "holiday.jpg")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["mime"], body["name"]) == ("image", "image/jpeg", "holiday.jpg")
    assert (body["width"], body["height"]) == (32, 64)  # orientation 6 applied
    assert body["thumbnail"] is True and body["thumbnail_url"]
    status, data, headers = fetch(as_alice, body["url"])
    assert status == 200 and headers["content-type"] == "image/jpeg"
    stored = Image.open(io.BytesIO(data))
    assert stored.size == (32, 64)
    exif = stored.getexif()
    assert not exif.get_ifd(samples.GPS_IFD) and samples.ORIENTATION not in exif and 0x010F not in exif
    status, thumb, headers = fetch(as_alice, body["thumbnail_url"])
    assert status == 200 and Image.open(io.BytesIO(thumb)).format == "WEBP"
    assert max(Image.open(io.BytesIO(thumb)).size) <= 320


def test_the_type_comes_from_the_bytes_not_the_name(storage_backend, pair):
    _, _, _, as_alice, _ = pair
    as_png = upload(as_alice, samples.png(), "setup.exe").json()
    assert (as_png["kind"], as_png["mime"], as_png["width"]) == ("image", "image/png", 40)
    as_html = upload(as_alice, samples.HTML, "cat.jpg").json()
    assert (as_html["kind"], as_html["mime"], as_html["thumbnail"]) == ("file", "application/octet-stream", False)


@pytest.mark.parametrize(
    "data, name", [(samples.HTML, "page.html"), (samples.SVG, "logo.svg"), (samples.HTML, "x.jpg")]
)
def test_html_and_svg_are_never_served_inline(storage_backend, pair, data, name):
    _, _, _, as_alice, _ = pair
    body = upload(as_alice, data, name).json()
    status, served, headers = fetch(as_alice, body["url"])
    assert status == 200 and served == data
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"].startswith("attachment")
    if storage_backend == "local":
        assert headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in headers["content-security-policy"]


def test_a_voice_message_gets_its_duration_and_waveform(storage_backend, pair):
    _, _, _, as_alice, _ = pair
    body = upload(as_alice, samples.tone(1.5), "voice.webm", voice="true").json()
    assert (body["kind"], body["mime"]) == ("voice", "audio/webm")
    assert body["duration"] == pytest.approx(1.5, abs=0.1)
    assert len(body["waveform"]) == 64 and all(0 <= level <= 31 for level in body["waveform"])
    assert max(body["waveform"][:30]) < min(body["waveform"][34:])  # quiet first half, loud second
    audio = upload(as_alice, samples.tone(1.0, container="ogg"), "song.ogg").json()
    assert (audio["kind"], audio["mime"], audio["waveform"]) == ("audio", "audio/ogg", None)
    assert audio["duration"] == pytest.approx(1.0, abs=0.1)


def test_a_path_in_the_name_is_harmless(storage_backend, pair):
    _, _, _, as_alice, _ = pair
    body = upload(as_alice, b"plain text", "../../etc/passwd").json()
    assert body["name"] == "passwd"
    assert all(".." not in name and "passwd" not in name for name in stored_names())
    _, _, headers = fetch(as_alice, body["url"])
    assert 'filename="passwd"' in headers["content-disposition"]
    unicode = upload(as_alice, b"x", "отчёт\u202efdp.exe").json()
    assert unicode["name"] == "отчётfdp.exe"


def test_every_refusal_has_its_own_code(storage_backend, pair, settings):
    alice, _, _, as_alice, _ = pair
    assert upload(as_alice, samples.png_bomb(), "bomb.png").json()["code"] == "too_large"
    assert upload(as_alice, samples.png(), "not-voice.png", voice="true").json()["code"] == "unsupported_type"
    broken = samples.png()[:60]
    assert upload(as_alice, broken, "broken.png").json()["code"] == "unsupported_type"
    assert upload(as_alice, b"", "empty.txt").json()["code"] == "validation_error"
    settings.MAX_UPLOAD_BYTES = 1000
    response = upload(as_alice, b"x" * 5000, "big.bin")
    assert (response.status_code, response.json()["code"]) == (413, "too_large")
    settings.MAX_UPLOAD_BYTES = 10_000
    settings.UPLOAD_QUOTA_BYTES = 3000
    assert upload(as_alice, b"a" * 2000, "one.bin").status_code == 201
    response = upload(as_alice, b"b" * 2000, "two.bin")
    assert (response.status_code, response.json()["code"]) == (413, "quota_exceeded")
    settings.UPLOAD_QUOTA_BYTES = 0
    settings.UPLOAD_RATE_LIMIT = 1
    settings.UPLOAD_RATE_WINDOW_SECONDS = 3600
    from django.core.cache import cache

    cache.clear()
    assert upload(as_alice, b"c", "c.bin").status_code == 201
    response = upload(as_alice, b"d", "d.bin")
    assert (response.status_code, response.json()["code"]) == (429, "rate_limited")
    assert response.json()["retry_after"] > 0
    assert Upload.objects.filter(owner=alice).count() == 2  # nothing refused was kept


# --- sending and downloading ------------------------------------------------------------------


def test_members_download_others_get_404_and_links_expire(storage_backend, pair, make_user, api):
    _, _, chat_id, as_alice, as_bob = pair
    photo = upload(as_alice, samples.jpeg_with_gps(), "p.jpg").json()
    outsider = api(make_user("carol"))
    # Before sending only the uploader sees it.
    assert as_bob.get(f"/api/files/{photo['id']}").status_code == 404
    response = send(as_alice, chat_id, [photo["id"]], "Look")
    assert response.status_code == 201, response.content
    message = response.json()
    assert [a["id"] for a in message["attachments"]] == [photo["id"]]
    assert message["attachments"][0]["kind"] == "image" and message["text"] == "Look"
    for path in (f"/api/files/{photo['id']}", f"/api/files/{photo['id']}/thumbnail"):
        assert fetch(as_bob, path)[0] == 200
        assert outsider.get(path).status_code == 404
    assert api().get(f"/api/files/{photo['id']}").status_code == 401
    # The signed URL works without a token; a stale or altered one is 403.
    assert fetch(api(), message["attachments"][0]["url"])[0] == 200
    old = signing.sign(photo["id"], now=timezone.now().timestamp() - 3 * 3600)
    stale = api().get(f"/api/files/{photo['id']}?expires={old['expires']}&signature={old['signature']}")
    assert (stale.status_code, stale.json()["code"]) == (403, "forbidden")
    good = signing.sign(photo["id"])
    assert (
        api().get(f"/api/files/{photo['id'] + 1}?expires={good['expires']}&signature={good['signature']}").status_code
        == 403
    )
    assert (
        api()
        .get(f"/api/files/{photo['id']}/thumbnail?expires={good['expires']}&signature={good['signature']}")
        .status_code
        == 403
    )


def test_byte_ranges(storage_backend, pair):
    _, _, _, as_alice, _ = pair
    data = bytes(range(256)) * 40
    body = upload(as_alice, data, "data.bin").json()
    status, part, headers = fetch(as_alice, body["url"], HTTP_RANGE="bytes=100-199")
    assert (status, part) == (206, data[100:200])
    assert headers["content-range"] == f"bytes 100-199/{len(data)}"
    status, tail, _ = fetch(as_alice, body["url"], HTTP_RANGE="bytes=-16")
    assert (status, tail) == (206, data[-16:])
    if storage_backend == "local":
        outside = as_alice.get(body["url"], HTTP_RANGE=f"bytes={len(data) + 10}-")
        assert outside.status_code == 416 and outside["Content-Range"] == f"bytes */{len(data)}"


def test_a_caption_is_optional_with_files_only(storage_backend, pair):
    _, _, chat_id, as_alice, _ = pair
    photo = upload(as_alice, samples.png(), "p.png").json()
    assert send(as_alice, chat_id, [photo["id"]]).status_code == 201
    refused = as_alice.post(f"/api/chats/{chat_id}/messages", {"client_id": "no-text", "text": " "}, format="json")
    assert refused.json()["code"] == "validation_error"
    too_many = send(as_alice, chat_id, [photo["id"]] * 2)
    assert too_many.json()["code"] == "validation_error"


def test_someone_elses_upload_cannot_be_attached(storage_backend, pair):
    _, _, chat_id, as_alice, as_bob = pair
    photo = upload(as_alice, samples.png(), "p.png").json()
    refused = send(as_bob, chat_id, [photo["id"]], "mine now")
    assert (refused.status_code, refused.json()["code"]) == (400, "validation_error")
    assert "attachment_ids" in refused.json()["detail"]
    assert not MessageAttachment.objects.exists()


def test_a_retried_send_stores_one_message_and_one_reference(storage_backend, pair):
    _, _, chat_id, as_alice, _ = pair
    photo = upload(as_alice, samples.png(), "p.png").json()
    first = send(as_alice, chat_id, [photo["id"]], "once", client_id="retry-1")
    again = send(as_alice, chat_id, [photo["id"]], "once", client_id="retry-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] and again.json()["attachments"][0]["id"] == photo["id"]
    assert MessageAttachment.objects.filter(upload_id=photo["id"]).count() == 1


async def test_the_socket_sends_files_too(storage_backend, pair):
    from channels.db import database_sync_to_async

    alice, bob, chat_id, as_alice, _ = pair
    photo = await database_sync_to_async(lambda: upload(as_alice, samples.png(), "p.png").json())()
    sender = await ws_connect(alice)
    receiver = await ws_connect(bob)
    try:
        await sender.send_json_to(
            {
                "type": "message.send",
                "ref": "s1",
                "chat_id": chat_id,
                "client_id": "ws-file",
                "attachment_ids": [photo["id"]],
            }
        )
        ack, _ = await receive_until(sender, "message.ack")
        new, _ = await receive_until(receiver, "message.new")
        for message in (ack["message"], new["message"]):
            assert message["text"] == "" and [a["id"] for a in message["attachments"]] == [photo["id"]]
            assert message["attachments"][0]["url"].startswith(f"/api/files/{photo['id']}?")
    finally:
        await sender.disconnect()
        await receiver.disconnect()


# --- references: stored once, removed after the last one ------------------------------------------


def test_the_same_content_is_stored_once(storage_backend, pair):
    _, _, _, as_alice, as_bob = pair
    data = samples.png()
    one = upload(as_alice, data, "a.png").json()
    two = upload(as_bob, data, "b.png").json()
    assert one["sha256"] == two["sha256"] and one["id"] != two["id"]
    assert Blob.objects.get().refs == 2
    assert len(stored_names()) == 2  # the file and its thumbnail, once


def test_a_forward_keeps_the_file_until_the_last_message_goes(storage_backend, pair, make_user, api):
    _, bob, chat_id, as_alice, as_bob = pair
    carol = make_user("carol")
    other_id = services.open_direct_chat(user_id=bob.id, other_user_id=carol.id).chat.id
    photo = upload(as_alice, samples.png(), "p.png").json()
    sent = send(as_alice, chat_id, [photo["id"]], "original").json()
    forwarded = as_bob.post(
        f"/api/chats/{other_id}/forward",
        {"from_chat_id": chat_id, "seqs": [sent["seq"]], "client_ids": ["fw-1"]},
        format="json",
    ).json()
    copy = forwarded["messages"][0]
    assert [a["id"] for a in copy["attachments"]] == [photo["id"]]
    assert fetch(api(carol), f"/api/files/{photo['id']}")[0] == 200  # carol sees it through the forward
    files = stored_names()
    assert as_alice.delete(f"/api/chats/{chat_id}/messages/{sent['seq']}").status_code == 200
    assert stored_names() == files and Upload.objects.filter(id=photo["id"]).exists()
    assert fetch(api(carol), f"/api/files/{photo['id']}")[0] == 200
    assert as_alice.get(f"/api/chats/{chat_id}/messages/{sent['seq']}").json()["attachments"] == []
    assert as_bob.delete(f"/api/chats/{other_id}/messages/{copy['seq']}").status_code == 200
    assert not Upload.objects.exists() and not Blob.objects.exists()
    assert stored_names() == []
    assert api(carol).get(f"/api/files/{photo['id']}").status_code == 404


def test_purge_removes_uploads_nobody_sent(storage_backend, pair):
    _, _, chat_id, as_alice, _ = pair
    kept = upload(as_alice, samples.png(10, 10), "kept.png").json()
    send(as_alice, chat_id, [kept["id"]], "sent")
    stale = upload(as_alice, samples.png(20, 20), "stale.png").json()
    fresh = upload(as_alice, samples.png(30, 30), "fresh.png").json()
    Upload.objects.filter(id__in=[kept["id"], stale["id"]]).update(created_at=timezone.now() - timedelta(hours=25))
    out = io.StringIO()
    call_command("purge_uploads", stdout=out)
    assert set(Upload.objects.values_list("id", flat=True)) == {kept["id"], fresh["id"]}
    assert Blob.objects.count() == 2 and len(stored_names()) == 4
    assert "1 upload" in out.getvalue()


def test_the_admin_shows_uploads_their_references_and_the_owners_storage(storage_backend, pair, make_user):
    from django.test import Client

    _, _, chat_id, as_alice, _ = pair
    photo = upload(as_alice, samples.png(), "shown.png").json()
    send(as_alice, chat_id, [photo["id"]], "in a message")
    operator = make_user("operator", is_staff=True, is_superuser=True)
    console = Client()
    console.force_login(operator)
    listing = console.get("/admin/attachments/upload/").content.decode()
    assert "shown.png" in listing and photo["sha256"][:12] in listing
    page = console.get(f"/admin/attachments/upload/{photo['id']}/change/").content.decode()
    assert "no quota" in page or "GB" in page
    assert console.post(f"/admin/attachments/upload/{photo['id']}/delete/").status_code == 403
    assert console.get("/admin/attachments/blob/").status_code == 200


@pytest.mark.parametrize("expires", ["¹", "٣٣", "-5", "1e9", "9" * 13, ""])
def test_a_malformed_expiry_is_a_refused_link(storage_backend, pair, api, expires):
    _, _, _, as_alice, _ = pair
    photo = upload(as_alice, samples.png(), "p.png").json()
    signature = signing.sign(photo["id"])["signature"]
    response = api().get(f"/api/files/{photo['id']}", {"expires": expires, "signature": signature})
    assert (response.status_code, response.json()["code"]) == (403, "forbidden")


def test_a_video_gets_its_size_duration_and_a_thumbnail_of_its_first_frame(storage_backend, pair):
    _, _, _, as_alice, _ = pair
    body = upload(as_alice, samples.video(1.0, width=64, height=48), "clip.mp4").json()
    assert (body["kind"], body["mime"], body["width"], body["height"]) == ("video", "video/mp4", 64, 48)
    assert body["duration"] == pytest.approx(1.0, abs=0.2)
    assert body["thumbnail"] is True and body["waveform"] is None
    status, thumb, _ = fetch(as_alice, body["thumbnail_url"])
    assert status == 200 and Image.open(io.BytesIO(thumb)).size == (64, 48)
    status, _, headers = fetch(as_alice, body["url"])
    assert status == 200 and headers["content-type"] == "video/mp4"
    assert headers["content-disposition"].startswith("inline")
