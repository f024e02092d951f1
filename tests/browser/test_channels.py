"""Channels in the browser: creating one, finding it, subscribing, reading its posts live (a
reader's socket watches the open channel, again after a reconnect), likes, and joining a private
channel by its invite link (PROTOCOL.md §2 "Channel", §6 ``channel.watch``, §10 "Channels").

Two users in two browser contexts against the live daphne (see conftest.py): an owner who posts
through the composer and a reader who only reads. Data made "elsewhere" goes through REST.
"""

from __future__ import annotations

import os
import re
import uuid

import pytest

try:
    from playwright.sync_api import Page, expect
except ImportError:
    if os.environ.get("REQUIRE_SERVICES") == "1":
        raise
    pytest.skip(
        "the playwright package is not installed (requirements-dev.txt)",
        allow_module_level=True,
    )

from .conftest import LiveServer, User
from .pages import PHONE, expect_online, message, screenshot, send

pytestmark = pytest.mark.browser


def create_channel(server: LiveServer, owner: User, title: str, handle: str | None = None) -> dict:
    body = {"title": title, **({"handle": handle} if handle else {})}
    return server.call("POST", "/api/channels", body, token=owner.access)


def post(server: LiveServer, owner: User, channel_id: int, text: str) -> dict:
    return server.send(owner, channel_id, text, str(uuid.uuid4()))


def section(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()
    expect(page.get_by_role("tab", name=name, exact=True)).to_have_attribute("aria-selected", "true")


def channel_row(page: Page, list_id: str, title: str):
    return page.locator(f"#{list_id} .channel-item").filter(
        has=page.locator(".channel-title").get_by_text(title, exact=True)
    )


def like_button(page: Page, text: str):
    return message(page, text).locator("button.like")


def test_owner_creates_a_channel_and_a_reader_subscribes_reads_live_and_likes(open_page, daphne_server: LiveServer):
    """The owner creates a public channel (a taken handle is explained) and posts; a reader finds it
    by search, subscribes (the count goes up), reads its posts without a composer, gets a new post
    live, and likes it: the count and their liked state show, and the owner sees the count."""
    owner_user = daphne_server.register("olga")
    reader_user = daphne_server.register("rick")
    other_user = daphne_server.register("otto")
    create_channel(daphne_server, other_user, "Someone else", "DailyNews")
    owner = open_page(owner_user)
    reader = open_page(reader_user)

    # The owner: Channels > New channel; the taken handle is refused readably, then a free one.
    section(owner, "Channels")
    owner.get_by_role("button", name="New channel").click()
    dialog = owner.get_by_role("dialog", name="New channel")
    expect(dialog.get_by_label("Channel name")).to_be_focused()
    dialog.get_by_label("Channel name").fill("Daily News")
    dialog.get_by_label("Handle (optional)").fill("@dailynews")
    dialog.get_by_label("About (optional)").fill("Everything, daily.")
    dialog.get_by_role("button", name="Create channel").click()
    expect(dialog.get_by_role("alert")).to_have_text("That handle is taken. Choose another one.")
    expect(dialog.get_by_label("Handle (optional)")).to_have_attribute("aria-invalid", "true")
    dialog.get_by_label("Handle (optional)").fill("no")
    dialog.get_by_role("button", name="Create channel").click()
    expect(dialog.get_by_role("alert")).to_contain_text("Handle:")
    dialog.get_by_label("Handle (optional)").fill("DailyNewsToday")
    dialog.get_by_role("button", name="Create channel").click()
    expect(dialog).to_be_hidden()

    # The channel opens for its owner: a composer, no Subscribe button; it is in "My channels".
    expect(owner.get_by_role("heading", name="Daily News", exact=True)).to_be_visible()
    expect(owner.locator("#chat-subtitle")).to_have_text("@DailyNewsToday · 0 subscribers")
    expect(owner.get_by_role("button", name="Subscribe", exact=True)).to_be_hidden()
    expect(channel_row(owner, "my-channels", "Daily News").locator(".channel-role")).to_have_text("Yours")
    send(owner, "First post")
    expect(message(owner, "First post")).to_be_visible()

    # The reader searches, subscribes from the results: the count goes up.
    section(reader, "Channels")
    reader.get_by_label("Search public channels").fill("daily")
    result = channel_row(reader, "channel-results", "Daily News")
    expect(result.locator(".channel-meta")).to_have_text("@DailyNewsToday · 0 subscribers")
    expect(channel_row(reader, "channel-results", "Someone else")).to_be_visible()
    result.get_by_role("button", name="Subscribe to Daily News").click()
    expect(result.get_by_role("button", name="Unsubscribe from Daily News")).to_have_attribute("aria-pressed", "true")
    expect(result.locator(".channel-meta")).to_have_text("@DailyNewsToday · 1 subscriber")
    expect(channel_row(reader, "my-channels", "Daily News")).to_be_visible()
    found = daphne_server.call("GET", "/api/channels/DailyNewsToday", token=reader_user.access)
    assert (found["subscribed"], found["subscribers_count"]) == (True, 1)

    # Opening it: the header, the post, no composer but a hint.
    result.locator(".channel-open").click()
    expect(reader.get_by_role("heading", name="Daily News", exact=True)).to_be_visible()
    expect(reader.locator("#chat-subtitle")).to_have_text("@DailyNewsToday · 1 subscriber")
    expect(reader.get_by_role("button", name="Unsubscribe", exact=True)).to_be_visible()
    expect(message(reader, "First post")).to_be_visible()
    expect(reader.get_by_label("Message", exact=True)).to_be_hidden()
    expect(reader.locator("#channel-hint")).to_have_text("Only the channel's admins post here.")
    # A reader is not on the staff: the channel is not one of their chats.
    expect(reader.locator("#chat-list .chat-item")).to_have_count(0)

    # A new post arrives live (this socket watches the channel).
    reader.wait_for_function(f"() => window.messenger.state.watching === {found['id']}")
    send(owner, "Second post")
    expect(message(reader, "Second post")).to_be_visible()

    # The reader likes it: count 1, pressed; the owner sees the count live.
    like = like_button(reader, "Second post")
    expect(like).to_have_attribute("aria-pressed", "false")
    like.click()
    expect(like).to_have_attribute("aria-pressed", "true")
    expect(like.locator(".like-count")).to_have_text("1")
    expect(like).to_have_accessible_name("Like, 1 like")
    expect(like_button(owner, "Second post").locator(".like-count")).to_have_text("1")
    expect(like_button(owner, "Second post")).to_have_attribute("aria-pressed", "false")
    screenshot(reader, "channel")
    second = daphne_server.call(
        "GET", f"/api/chats/{found['id']}/messages?before_seq=100&limit=1", token=reader_user.access
    )["results"][0]
    assert [(r["emoji"], r["count"], r["me"]) for r in second["reactions"]] == [("❤️", 1, True)]

    # A like made elsewhere (the owner's other device) shows live too; and is taken back.
    daphne_server.call("POST", f"/api/posts/{second['id']}/like", token=owner_user.access)
    expect(like.locator(".like-count")).to_have_text("2")
    expect(like).to_have_attribute("aria-pressed", "true")
    like.click()
    expect(like).to_have_attribute("aria-pressed", "false")
    expect(like.locator(".like-count")).to_have_text("1")
    expect(like_button(owner, "Second post").locator(".like-count")).to_have_text("1")
    expect(like_button(owner, "Second post")).to_have_attribute("aria-pressed", "true")

    # Unsubscribing from the header: the count goes down, the hint says what subscribing brings.
    reader.get_by_role("button", name="Unsubscribe", exact=True).click()
    expect(reader.locator("#chat-subtitle")).to_have_text("@DailyNewsToday · 0 subscribers")
    expect(reader.locator("#channel-hint")).to_contain_text("Subscribe to like posts")
    expect(channel_row(reader, "my-channels", "Daily News")).to_have_count(0)
    assert daphne_server.call("GET", f"/api/channels/{found['id']}", token=reader_user.access)["subscribed"] is False


def test_a_reader_who_reconnects_watches_again_and_leaving_stops_watching(open_page, daphne_server: LiveServer):
    """A public channel read without subscribing: after the socket drops and comes back, the watch
    is sent again, so a post made then arrives live; leaving the channel stops the watch."""
    owner_user = daphne_server.register("olga")
    reader_user = daphne_server.register("rick")
    channel = create_channel(daphne_server, owner_user, "Town Hall", "TownHall")
    post(daphne_server, owner_user, channel["id"], "Welcome")
    reader = open_page(reader_user)
    reader.evaluate(
        """() => {
            window.watchingFrames = [];
            window.messenger.socket.addEventListener('frame', (event) => {
                if (event.detail.type === 'channel.watching') window.watchingFrames.push(event.detail.chat_id);
            });
        }"""
    )
    reader.goto(f"/#channel-{channel['id']}")
    expect(message(reader, "Welcome")).to_be_visible()
    expect(reader.get_by_role("button", name="Subscribe", exact=True)).to_be_visible()
    expect(reader.locator("#channel-hint")).to_contain_text("Subscribe to like posts")
    reader.wait_for_function(f"() => window.watchingFrames.join() === '{channel['id']}'")

    # Not subscribed: a like is explained instead of refused.
    like_button(reader, "Welcome").click()
    expect(reader.get_by_role("alert").filter(has_text="Subscribe to the channel to like its posts.")).to_be_visible()

    reader.evaluate("() => window.messenger.socket.drop()")
    expect_online(reader)
    reader.wait_for_function(f"() => window.watchingFrames.join() === '{channel['id']},{channel['id']}'")
    post(daphne_server, owner_user, channel["id"], "After the reconnect")
    expect(message(reader, "After the reconnect")).to_be_visible()

    # Back to the list: the watch stops (chat_id null), and the channel is no longer held.
    reader.goto("/#")
    reader.wait_for_function(
        f"() => window.watchingFrames.join() === '{channel['id']},{channel['id']},'"
        f" && !window.messenger.state.chats.has({channel['id']})"
    )
    expect(reader.get_by_text("Select a chat to start messaging.")).to_be_visible()


def test_joining_a_private_channel_by_its_invite_link(open_page, daphne_server: LiveServer):
    """The owner of a private channel shows its invite link; a reader who opens the link joins
    the channel (subscribes with the token) and reads it; a wrong token is refused readably."""
    owner_user = daphne_server.register("olga")
    reader_user = daphne_server.register("rick")
    channel = create_channel(daphne_server, owner_user, "Inner Circle")
    post(daphne_server, owner_user, channel["id"], "Members only")
    owner = open_page(owner_user)
    reader = open_page(reader_user)

    owner.goto(f"/#chat-{channel['id']}")
    expect(owner.locator("#chat-subtitle")).to_have_text("Private channel · 0 subscribers")
    owner.get_by_role("button", name="Invite link").click()
    link = owner.get_by_role("dialog", name="Invite link").get_by_label(re.compile("Whoever has this link"))
    expect(link).to_have_value(re.compile(rf"#join-{channel['id']}-{re.escape(channel['invite_token'])}$"))
    invite = link.input_value()
    owner.keyboard.press("Escape")

    # A wrong token: refused, said so.
    section(reader, "Channels")
    reader.get_by_role("button", name="Join by invite").click()
    dialog = reader.get_by_role("dialog", name="Join a private channel")
    dialog.get_by_label("Invite link").fill(f"{invite}x")
    dialog.get_by_role("button", name="Join").click()
    expect(dialog.get_by_role("alert")).to_have_text("This invite link is not valid (any more).")
    reader.keyboard.press("Escape")

    # Opening the link itself offers to join.
    reader.goto(invite.replace(daphne_server.url, ""))
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Invite link")).to_have_value(invite)
    dialog.get_by_role("button", name="Join").click()
    expect(dialog).to_be_hidden()
    expect(reader.get_by_role("heading", name="Inner Circle", exact=True)).to_be_visible()
    expect(reader.locator("#chat-subtitle")).to_have_text("Private channel · 1 subscriber")
    expect(message(reader, "Members only")).to_be_visible()
    expect(reader.get_by_label("Message", exact=True)).to_be_hidden()
    expect(channel_row(reader, "my-channels", "Inner Circle")).to_be_visible()
    expect(owner.locator("#chat-subtitle")).to_have_text(re.compile("Private channel"))


def test_phone_width_shows_the_sections_one_pane_at_a_time(open_page, daphne_server: LiveServer):
    """On a phone the sections, a channel and the feed take the whole screen in turn; Back returns."""
    owner_user = daphne_server.register("olga")
    reader_user = daphne_server.register("rick")
    channel = create_channel(daphne_server, owner_user, "Pocket News", "PocketNews")
    post(daphne_server, owner_user, channel["id"], "Small screens too")
    reader = open_page(reader_user, viewport=PHONE)

    section(reader, "Channels")
    reader.get_by_label("Search public channels").fill("@pocket")
    channel_row(reader, "channel-results", "Pocket News").locator(".channel-open").click()
    expect(message(reader, "Small screens too")).to_be_visible()
    expect(reader.locator("#sidebar")).to_be_hidden()
    reader.get_by_role("button", name="Back to chats").click()
    expect(reader.locator("#sidebar")).to_be_visible()
    expect(reader.locator("#chat-view")).to_be_hidden()

    reader.get_by_role("tab", name="Feed", exact=True).click()
    expect(reader.get_by_role("heading", name="Feed", exact=True)).to_be_visible()
    expect(reader.locator("#sidebar")).to_be_hidden()
    expect(reader.locator("#feed-status")).to_contain_text("No posts yet")
    reader.get_by_role("button", name="Back to the sections").click()
    expect(reader.locator("#sidebar")).to_be_visible()
    expect(reader.get_by_role("tab", name="Feed", exact=True)).to_be_focused()
