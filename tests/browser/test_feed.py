"""The feed in the browser: the posts of every channel I subscribe to, newest first, loaded page
by page as I scroll, with likes, a link to each post's channel, and a "New posts" pill when a
channel I follow posts (PROTOCOL.md §7 ``channel.post``, §10 "Feed").

The feed is eventually consistent (its handlers add a post after it is sent), so these tests use
the live server that runs the outbox relay (``relay_daphne_server``), and the setup waits until
the feed answers the seeded posts before the browser looks.
"""

from __future__ import annotations

import os
import time
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
from .pages import message, screenshot

pytestmark = pytest.mark.browser

PAGE = 20  # the feed's first page (feeds.selectors.FIRST_PAGE), as the client asks for it


def feed_texts(server: LiveServer, user: User) -> list[str]:
    return [post["text"] for post in server.call("GET", "/api/feed?limit=100", token=user.access)["results"]]


def wait_for_feed(server: LiveServer, user: User, newest: str, count: int, timeout: float = 20.0) -> None:
    """Waits (polling the API) until the user's feed holds ``count`` posts, ``newest`` first."""
    deadline = time.monotonic() + timeout
    while True:
        texts = feed_texts(server, user)
        if len(texts) == count and texts[0] == newest:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the feed did not catch up: {texts[:3]}… ({len(texts)} posts)")
        time.sleep(0.1)


def posts(page: Page):
    return page.locator("#feed-list > li.feed-post")


def feed_post(page: Page, text: str):
    return posts(page).filter(has=page.locator(".text").get_by_text(text, exact=True))


def shown_texts(page: Page) -> list[str]:
    return posts(page).locator(".text").all_inner_texts()


def test_the_feed_scrolls_page_by_page_likes_and_shows_new_posts_live(open_relay_page, relay_daphne_server: LiveServer):
    """The reader's feed shows the posts of their channels newest first, loads older pages on
    scrolling until there are none (no post twice), likes a post, opens a post's channel, and
    shows a "New posts" pill when a channel they follow posts, which loads the new post on top."""
    daphne_server = relay_daphne_server
    owner = daphne_server.register("olga")
    reader = daphne_server.register("rick")
    channels = {
        title: daphne_server.call("POST", "/api/channels", {"title": title, "handle": handle}, token=owner.access)
        for title, handle in [("Big News", "BigNews"), ("Quiet Corner", "QuietCorner"), ("Late Show", "LateShow")]
    }
    for channel in channels.values():
        daphne_server.call("POST", f"/api/channels/{channel['id']}/subscription", {}, token=reader.access)
    unfollowed = daphne_server.call("POST", "/api/channels", {"title": "Elsewhere"}, token=owner.access)

    def post(channel: dict, text: str) -> dict:
        return daphne_server.send(owner, channel["id"], text, str(uuid.uuid4()))

    post(channels["Quiet Corner"], "Quiet 1")
    post(unfollowed, "Not for the reader")
    for number in range(1, PAGE + 6):
        post(channels["Big News"], f"News {number}")
    expected = [f"News {number}" for number in range(PAGE + 5, 0, -1)] + ["Quiet 1"]
    wait_for_feed(daphne_server, reader, expected[0], len(expected))

    page = open_relay_page(reader)
    page.get_by_role("tab", name="Feed", exact=True).click()
    expect(page.get_by_role("heading", name="Feed", exact=True)).to_be_visible()
    expect(posts(page)).to_have_count(PAGE)
    assert shown_texts(page) == expected[:PAGE]
    first = feed_post(page, "News 25")
    expect(first.locator(".feed-channel")).to_have_text("Big News")
    expect(page.locator("#new-posts")).to_be_hidden()
    screenshot(page, "feed")

    # Scrolling to the end loads the older page, once, and says when there is nothing more.
    page.locator("#feed-sentinel").scroll_into_view_if_needed()
    expect(posts(page)).to_have_count(len(expected))
    assert shown_texts(page) == expected
    expect(page.locator("#feed-status")).to_have_text("You are all caught up.")

    # A like from the feed: the count, the pressed state, and the server agree.
    like = feed_post(page, "Quiet 1").locator("button.like")
    like.click()
    expect(like).to_have_attribute("aria-pressed", "true")
    expect(like.locator(".like-count")).to_have_text("1")
    liked = daphne_server.call("GET", "/api/feed?limit=100", token=reader.access)["results"][-1]
    assert (liked["text"], liked["likes_count"], liked["liked_by_me"]) == ("Quiet 1", 1, True)

    # A post's channel title opens the channel, with the post in it and the like kept; the Feed
    # tab comes back to the feed as it was.
    feed_post(page, "Quiet 1").get_by_role("button", name="Quiet Corner").click()
    expect(page.get_by_role("heading", name="Quiet Corner", exact=True)).to_be_visible()
    expect(message(page, "Quiet 1").locator("button.like")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("tab", name="Channels", exact=True)).to_have_attribute("aria-selected", "true")
    page.get_by_role("tab", name="Feed", exact=True).click()
    expect(posts(page)).to_have_count(len(expected))

    # A channel I follow posts: the pill appears (channel.post), and loads the post on top.
    page.locator("#feed").evaluate("feed => feed.scrollTo(0, feed.scrollHeight)")
    post(channels["Late Show"], "Tonight's show")
    pill = page.get_by_role("button", name="↑ New posts")
    expect(pill).to_be_visible()
    pill.click()
    expect(pill).to_be_hidden()
    expect(posts(page).first.locator(".text")).to_have_text("Tonight's show")
    expect(posts(page).first.locator(".feed-channel")).to_have_text("Late Show")
    assert page.locator("#feed").evaluate("feed => feed.scrollTop") == 0
    # The first page again: the new post, then the newest of the others.
    assert shown_texts(page) == ["Tonight's show", *expected[: PAGE - 1]]
