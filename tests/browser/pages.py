"""The page helpers the browser tests share (the ``open_page`` fixture is in conftest.py).

Imported by the test modules after their Playwright import check, so a missing package skips
them (or fails them in CI) before anything here needs it.
"""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Page, expect

from .conftest import User

expect.set_options(timeout=15_000)

PHONE = {"width": 375, "height": 740}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


# --- helpers --------------------------------------------------------------------------------------


def login(page: Page, user: User) -> None:
    form = page.locator("#login-form")
    form.get_by_label("Username").fill(user.username)
    form.get_by_label("Password").fill(user.password)
    form.get_by_role("button", name="Log in").click()
    expect(page.locator("#me-name")).to_have_text(user.username)
    expect_online(page)


def expect_online(page: Page) -> None:
    expect(page.locator("body")).to_have_attribute("data-connection", "online")
    expect(page.locator("#conn-status")).to_be_hidden()


def chat_item(page: Page, title: str):
    return page.locator("#chat-list .chat-item").filter(
        has=page.locator(".chat-item-title").get_by_text(title, exact=True)
    )


def messages(page: Page):
    return page.locator("#message-list > li.msg")


def message(page: Page, text: str):
    return messages(page).filter(has=page.locator(".text").get_by_text(text, exact=True))


def tick(page: Page, text: str):
    return message(page, text).locator(".tick")


def send(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")


def shown_seqs(page: Page) -> list[int]:
    return [
        int(seq)
        for seq in page.locator("#message-list > li[data-seq]").evaluate_all("els => els.map(e => e.dataset.seq)")
    ]


def screenshot(page: Page, name: str) -> None:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def open_pair_in_chat(open_page, server, first_text: str):
    """Alice and Bob in a direct chat holding Bob's ``first_text``, each with it open.

    Returns ``(alice_page, bob_page, alice_user, bob_user, chat)``.
    """
    alice_user = server.register("alice")
    bob_user = server.register("bob")
    chat = server.direct_chat(bob_user, alice_user)
    server.send(bob_user, chat["id"], first_text, "first-1")
    alice = open_page(alice_user)
    bob = open_page(bob_user)
    chat_item(alice, "bob").click()
    chat_item(bob, "alice").click()
    expect(message(alice, first_text)).to_be_visible()
    return alice, bob, alice_user, bob_user, chat
