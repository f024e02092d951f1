"""Attachments in the browser (issue 13): files picked with 📎, dropped on the conversation or
pasted upload with a progress bar each, can be cancelled or removed, and go out as one message
with the caption; the reader sees photos as thumbnails that open full size, files as chips
whose link downloads the same bytes, and voice messages recorded from the microphone (Chromium's
fake device, conftest.py) with their duration and waveform; the chat list previews them.

Each test drives real Chromium contexts against the live daphne (conftest.py), which stores
the files on its local backend in the test's temporary directory.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import Page, expect
except ImportError:
    if os.environ.get("REQUIRE_SERVICES") == "1":
        raise
    pytest.skip(
        "the playwright package is not installed (requirements-dev.txt)",
        allow_module_level=True,
    )

from PIL import Image

from .conftest import LiveServer, User
from .pages import chat_item, expect_online, message, messages, open_pair_in_chat, screenshot, tick

pytestmark = pytest.mark.browser


def picture(width: int, height: int, fmt: str = "PNG") -> bytes:
    """A gradient (so that it compresses like a photo, not to nothing)."""
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 255 // width, y * 255 // height, 160) for y in range(height) for x in range(width)])
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def tray_item(page: Page, name: str):
    return page.locator("#attach-tray .tray-item").filter(has=page.locator(".tray-name").get_by_text(name, exact=True))


def expect_uploaded(page: Page, name: str) -> None:
    """The file's strip entry shows a labelled progress bar that completes."""
    item = tray_item(page, name)
    expect(item.get_by_role("progressbar", name=f"Upload of {name}")).to_be_attached()
    expect(item).to_have_attribute("data-status", "done")
    expect(item.locator("progress")).to_have_js_property("value", 100)
    expect(item.locator(".tray-status")).to_have_text("Ready")


def expect_loaded(page: Page, image, natural_width: int) -> None:
    """The <img> has loaded its picture, which is ``natural_width`` pixels wide."""
    expect(image).to_have_js_property("complete", True)
    expect(image).to_have_js_property("naturalWidth", natural_width)


def dispatch_files(page: Page, selector: str, event: str, files: list[tuple[str, str, bytes]]) -> None:
    """Drops (``event="drop"``) or pastes (``"paste"``) files on the element at ``selector``, as
    the browser does: a DataTransfer holding Files, on dragenter/dragover/drop or paste."""
    page.evaluate(
        """([selector, event, files]) => {
            const target = document.querySelector(selector);
            const transfer = new DataTransfer();
            for (const [name, type, bytes] of files) transfer.items.add(new File([new Uint8Array(bytes)], name, { type }));
            if (event === "paste") {
                target.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
                return;
            }
            for (const type of ["dragenter", "dragover", "drop"]) {
                target.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
            }
        }""",
        [selector, event, [[name, mime, list(data)] for name, mime, data in files]],
    )


def last_message(server: LiveServer, user: User, chat_id: int) -> dict:
    page = server.call("GET", f"/api/chats/{chat_id}/messages?after_seq=0&limit=200", token=user.access)
    return page["results"][-1]


def preview(page: Page, title: str):
    return chat_item(page, title).locator(".chat-item-preview")


# --- tests ----------------------------------------------------------------------------------------


def test_a_photo_uploads_with_progress_and_the_reader_opens_it_full_size(
    open_page, daphne_server: LiveServer, tmp_path: Path
):
    """A photo picked with 📎 previews locally, uploads with a progress bar, goes out with its
    caption; the other side sees its thumbnail live (space reserved) and opens it full size."""
    alice, bob, alice_user, _, chat = open_pair_in_chat(open_page, daphne_server, "Send me the view!")
    photo = tmp_path / "sunset.png"
    photo.write_bytes(picture(640, 480))

    alice.locator("#attach-input").set_input_files(str(photo))
    expect_uploaded(alice, "sunset.png")
    # The local preview is a blob: URL, which the page's CSP allows.
    expect_loaded(alice, tray_item(alice, "sunset.png").locator("img"), 640)
    expect(tray_item(alice, "sunset.png").get_by_role("button", name="Remove sunset.png")).to_be_visible()
    send = alice.get_by_role("button", name="Send", exact=True)
    expect(send).to_be_enabled()
    alice.get_by_label("Message", exact=True).fill("The view from the balcony")
    send.click()
    expect(alice.locator("#attach-tray")).to_be_hidden()
    expect(tick(alice, "The view from the balcony")).to_have_attribute("data-status", re.compile("sent|read"))

    stored = last_message(daphne_server, alice_user, chat["id"])
    assert stored["text"] == "The view from the balcony"
    assert [(a["kind"], a["name"], a["width"], a["height"]) for a in stored["attachments"]] == [
        ("image", "sunset.png", 640, 480)
    ]

    # Bob: the thumbnail arrives live, in a box sized before it loads (280 x 210 for 640 x 480).
    bubble = message(bob, "The view from the balcony")
    thumb = bubble.locator("img[alt='sunset.png']")
    expect(thumb).to_have_attribute("width", "280")
    expect(thumb).to_have_attribute("height", "210")
    expect_loaded(bob, thumb, 320)  # the server's 320 px thumbnail, not the photo
    expect(preview(bob, "alice")).to_have_text("📷 The view from the balcony")

    bubble.get_by_role("button", name="Open sunset.png").click()
    lightbox = bob.locator("#lightbox")
    expect(lightbox).to_be_visible()
    expect(lightbox.locator("#lightbox-caption")).to_have_text("sunset.png")
    expect_loaded(bob, bob.locator("#lightbox-img"), 640)  # the full picture
    screenshot(bob, "attachments-lightbox")
    bob.keyboard.press("Escape")
    expect(lightbox).to_be_hidden()
    expect(bubble.get_by_role("button", name="Open sunset.png")).to_be_focused()
    # A click anywhere closes it too.
    bubble.get_by_role("button", name="Open sunset.png").click()
    expect(lightbox).to_be_visible()
    bob.locator("#lightbox-img").click()
    expect(lightbox).to_be_hidden()


def test_files_are_dropped_pasted_cancelled_removed_and_downloaded(
    open_page, daphne_server: LiveServer, tmp_path: Path
):
    """A running upload can be cancelled (Send waits for it meanwhile), an uploaded file removed;
    a dropped file goes out without a caption and the reader's chip downloads the same bytes."""
    alice, bob, alice_user, _, chat = open_pair_in_chat(open_page, daphne_server, "Do you have the notes?")
    send = alice.get_by_role("button", name="Send", exact=True)

    # A held upload: uploading, Send disabled, then cancelled.
    held = []
    alice.route("**/api/uploads", lambda route: held.append(route))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(200_000))
    alice.locator("#attach-input").set_input_files(str(big))
    item = tray_item(alice, "big.bin")
    expect(item).to_have_attribute("data-status", "uploading")
    expect(send).to_be_disabled()
    item.get_by_role("button", name="Cancel upload of big.bin").click()
    expect(item).to_have_count(0)
    expect(alice.locator("#attach-tray")).to_be_hidden()
    expect(send).to_be_enabled()
    alice.unroute("**/api/uploads")
    for route in held:
        try:
            route.abort()
        except PlaywrightError:
            pass  # the browser gave up on it first

    # A pasted image joins the strip, and is removed again.
    dispatch_files(alice, "#composer-input", "paste", [("image.png", "image/png", picture(60, 40))])
    expect_uploaded(alice, "image.png")
    tray_item(alice, "image.png").get_by_role("button", name="Remove image.png").click()
    expect(alice.locator("#attach-tray")).to_be_hidden()

    # A dropped file, sent with no caption (Enter in the empty composer).
    notes = b"Meeting notes\n" + os.urandom(3100)  # 3114 bytes: "3.0 KB"
    dispatch_files(alice, "#messages", "drop", [("notes.txt", "text/plain", notes)])
    expect(alice.locator("#chat-view")).not_to_have_class(re.compile("dropping"))
    expect_uploaded(alice, "notes.txt")
    alice.get_by_label("Message", exact=True).press("Enter")
    expect(alice.locator("#attach-tray")).to_be_hidden()
    expect(messages(alice)).to_have_count(2)
    expect(messages(alice).last.locator(".tick")).to_have_attribute("data-status", re.compile("sent|read"))
    stored = last_message(daphne_server, alice_user, chat["id"])
    assert stored["text"] == ""
    assert [(a["kind"], a["name"], a["size"]) for a in stored["attachments"]] == [("file", "notes.txt", len(notes))]

    # Bob: a chip with the name and size; its link downloads the same bytes under the same name.
    link = messages(bob).last.get_by_role("link", name=re.compile(r"^Download notes\.txt, "))
    expect(link).to_contain_text("notes.txt")
    expect(link).to_contain_text("3.0 KB")
    expect(preview(bob, "alice")).to_have_text("📎 notes.txt")
    expect(preview(alice, "bob")).to_have_text("You: 📎 notes.txt")
    with bob.expect_download() as started:
        link.click()
    download = started.value
    assert download.suggested_filename == "notes.txt"
    assert Path(download.path()).read_bytes() == notes


def test_a_voice_message_is_recorded_sent_and_shown_with_its_waveform(
    open_page, daphne_server: LiveServer, tmp_path: Path
):
    """🎤 records from the microphone with an elapsed time (Escape throws a recording away);
    🎤 again uploads it as a voice message and sends it; the reader gets a player with the
    duration and the waveform's bars, and the chat list says "🎤 Voice message"."""
    alice, bob, alice_user, _, chat = open_pair_in_chat(open_page, daphne_server, "Tell me on the way")
    alice.context.grant_permissions(["microphone"])

    # Two files in one message first (the screenshot shows every kind).
    photo, ticket = tmp_path / "harbour.jpg", tmp_path / "ticket.pdf"
    photo.write_bytes(picture(480, 320, "JPEG"))
    ticket.write_bytes(b"%PDF-1.4\n" + os.urandom(20_000))
    alice.locator("#attach-input").set_input_files([str(photo), str(ticket)])
    expect_uploaded(alice, "harbour.jpg")
    expect_uploaded(alice, "ticket.pdf")
    alice.get_by_label("Message", exact=True).fill("Tickets for tonight")
    alice.get_by_label("Message", exact=True).press("Enter")
    expect(tick(alice, "Tickets for tonight")).to_have_attribute("data-status", re.compile("sent|read"))
    bubble = message(bob, "Tickets for tonight")
    expect_loaded(bob, bubble.locator("img[alt='harbour.jpg']"), 320)
    expect(bubble.get_by_role("link", name=re.compile(r"^Download ticket\.pdf"))).to_be_visible()

    record = alice.get_by_role("button", name="Record a voice message")
    bar = alice.locator("#recording-bar")

    # Escape cancels: nothing is sent.
    record.click()
    expect(bar).to_be_visible()
    expect(alice.get_by_role("button", name="Stop recording and send")).to_have_attribute("aria-pressed", "true")
    alice.keyboard.press("Escape")
    expect(bar).to_be_hidden()
    expect(record).to_have_attribute("aria-pressed", "false")

    # About 1.5 s (the elapsed time rounds to 0:02), then stop: it uploads and goes out alone.
    record.click()
    expect(bar).to_be_visible()
    expect(alice.locator("#recording-time")).to_have_text(re.compile(r"^0:0[2-9]$"))
    alice.get_by_role("button", name="Stop recording and send").click()
    expect(bar).to_be_hidden()
    mine = messages(alice).filter(has=alice.locator(".att-voice"))
    expect(mine).to_have_count(1)
    expect(mine.locator(".tick")).to_have_attribute("data-status", re.compile("sent|read"))
    expect(alice.locator("#attach-tray")).to_be_hidden()
    expect(messages(alice)).to_have_count(3)  # the cancelled recording sent nothing

    stored = last_message(daphne_server, alice_user, chat["id"])
    assert stored["text"] == ""
    [voice] = stored["attachments"]
    assert voice["kind"] == "voice"
    assert voice["mime"] in ("audio/webm", "audio/ogg")
    assert 1.0 <= voice["duration"] <= 4.0
    assert len(voice["waveform"]) == 64 and max(voice["waveform"]) > 0

    # Bob: a player with the duration and 64 bars whose heights follow the waveform.
    player = messages(bob).last.locator(".att-voice")
    expect(player).to_be_visible()
    expect(player.locator(".att-duration")).to_have_text(re.compile(r"^0:0[1-4]$"))
    expect(player.locator(".waveform:not(.flat) .bar")).to_have_count(64)
    levels = player.locator(".bar").evaluate_all("bars => bars.map(b => b.style.getPropertyValue('--level'))")
    assert [float(level) for level in levels] == [(level + 1) / 32 for level in voice["waveform"]]
    expect(preview(bob, "alice")).to_have_text("🎤 Voice message")
    expect(preview(alice, "bob")).to_have_text("You: 🎤 Voice message")
    screenshot(bob, "attachments")

    # The recording itself loads (the CSP's media-src, the signed URL) and plays.
    audio = player.locator("audio").element_handle()
    bob.wait_for_function("audio => audio.readyState >= 1", arg=audio)
    player.get_by_role("button", name="Play voice message").click()
    bob.wait_for_function("audio => audio.currentTime > 0 || audio.ended", arg=audio)


def test_a_photo_sent_offline_waits_as_pending_and_goes_out_once(open_page, daphne_server: LiveServer, tmp_path: Path):
    """A message with a file written while the socket is down shows as pending with its picture
    and is sent once the socket is back, with the same client_id and the same upload."""
    alice, bob, alice_user, _, chat = open_pair_in_chat(open_page, daphne_server, "Where are you?")
    photo = tmp_path / "platform.png"
    photo.write_bytes(picture(640, 480))
    alice.locator("#attach-input").set_input_files(str(photo))
    expect_uploaded(alice, "platform.png")

    alice.context.set_offline(True)
    alice.evaluate("() => window.messenger.socket.drop()")
    expect(alice.locator("#conn-status")).to_have_text("Reconnecting…")
    alice.get_by_label("Message", exact=True).fill("On the platform")
    alice.get_by_label("Message", exact=True).press("Enter")
    expect(tick(alice, "On the platform")).to_have_attribute("data-status", "pending")
    expect(message(alice, "On the platform").locator("img[alt='platform.png']")).to_be_attached()
    pending = alice.evaluate(
        "() => [...window.messenger.state.outbox.values()].map(p => [p.client_id, p.attachment_ids])"
    )
    assert len(pending) == 1 and len(pending[0][1]) == 1

    alice.context.set_offline(False)
    expect_online(alice)
    expect(tick(alice, "On the platform")).to_have_attribute("data-status", re.compile("sent|read"))
    expect_loaded(alice, message(alice, "On the platform").locator("img[alt='platform.png']"), 320)
    expect_loaded(bob, message(bob, "On the platform").locator("img[alt='platform.png']"), 320)
    expect(messages(bob)).to_have_count(2)
    stored = last_message(daphne_server, alice_user, chat["id"])
    [client_id, attachment_ids] = pending[0]
    assert (stored["client_id"], [a["id"] for a in stored["attachments"]]) == (client_id, attachment_ids)


def test_an_audio_file_plays_inline_with_its_duration(open_page, daphne_server: LiveServer, tmp_path: Path):
    """An audio file (not a voice message) shows the browser's player and its duration; the
    chat list says "🎵 Audio"."""
    from tests.attachments.samples import tone

    alice, bob, alice_user, _, chat = open_pair_in_chat(open_page, daphne_server, "Play me the tune")
    song = tmp_path / "tune.webm"
    song.write_bytes(tone(2.0))
    alice.locator("#attach-input").set_input_files(str(song))
    expect_uploaded(alice, "tune.webm")
    alice.get_by_label("Message", exact=True).press("Enter")
    expect(alice.locator("#attach-tray")).to_be_hidden()
    stored = last_message(daphne_server, alice_user, chat["id"])
    assert [(a["kind"], a["name"]) for a in stored["attachments"]] == [("audio", "tune.webm")]

    player = messages(bob).last.locator(".att-audio")
    expect(player.locator(".att-name")).to_have_text("🎵 tune.webm")
    expect(player.locator(".att-duration")).to_have_text("0:02")
    audio = player.locator("audio[controls]")
    expect(audio).to_be_visible()
    bob.wait_for_function("audio => audio.readyState >= 1 && audio.duration > 1.5", arg=audio.element_handle())
    expect(preview(bob, "alice")).to_have_text("🎵 Audio")


def test_on_s3_photos_videos_and_files_load_from_the_object_store(
    open_s3_page, s3_daphne_server: LiveServer, s3_endpoint: str, tmp_path: Path
):
    """With files on S3 every file URL is a redirect to a presigned URL on the store's own
    origin (moto_server here, another port): the page's CSP admits that origin, so the reader's
    thumbnail, full picture and video load and play, and the file link downloads the bytes."""
    from tests.attachments.samples import video

    alice, bob, alice_user, _, chat = open_pair_in_chat(open_s3_page, s3_daphne_server, "Show me the harbour")
    from_store: list[str] = []  # what Bob's browser fetched from the object store, by path
    bob.on("response", lambda r: r.url.startswith(s3_endpoint) and r.ok and from_store.append(r.url.split("?")[0]))
    photo, clip, notes = tmp_path / "harbour.png", tmp_path / "boats.webm", tmp_path / "plan.txt"
    photo.write_bytes(picture(640, 480))
    clip.write_bytes(video(2.0, width=160, height=120, container="webm"))
    notes.write_bytes(b"Meet at the pier at six.\n" * 40)
    alice.locator("#attach-input").set_input_files([str(photo), str(clip), str(notes)])
    for name in ("harbour.png", "boats.webm", "plan.txt"):
        expect_uploaded(alice, name)
    alice.get_by_label("Message", exact=True).fill("Boats at the harbour")
    alice.get_by_label("Message", exact=True).press("Enter")
    expect(tick(alice, "Boats at the harbour")).to_have_attribute("data-status", re.compile("sent|read"))
    stored = last_message(s3_daphne_server, alice_user, chat["id"])
    assert [(a["kind"], a["name"]) for a in stored["attachments"]] == [
        ("image", "harbour.png"),
        ("video", "boats.webm"),
        ("file", "plan.txt"),
    ]

    bubble = message(bob, "Boats at the harbour")
    expect_loaded(bob, bubble.locator("img[alt='harbour.png']"), 320)
    bubble.get_by_role("button", name="Open harbour.png").click()
    expect_loaded(bob, bob.locator("#lightbox-img"), 640)
    bob.keyboard.press("Escape")

    player = bubble.locator("video[aria-label='boats.webm']")
    expect(player).to_have_attribute("poster", re.compile(r"/thumbnail\?"))
    bob.wait_for_function(
        "video => video.readyState >= 1 && video.duration > 1.5 && video.videoWidth === 160",
        arg=player.element_handle(),
    )
    player.evaluate("video => { video.muted = true; return video.play(); }")
    bob.wait_for_function("video => video.currentTime > 0 || video.ended", arg=player.element_handle())

    with bob.expect_download() as started:
        bubble.get_by_role("link", name=re.compile(r"^Download plan\.txt")).click()
    download = started.value
    assert download.suggested_filename == "plan.txt"
    assert Path(download.path()).read_bytes() == notes.read_bytes()
    # Thumbnails, the picture and the video came from the store: a blob and thumbnails each.
    folders = sorted({url.removeprefix(s3_endpoint).split("/")[2] for url in from_store})
    assert folders == ["blobs", "thumbs"], from_store
