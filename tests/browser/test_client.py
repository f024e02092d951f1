"""The browser client at ``/`` in a real Chromium against a live daphne (see conftest.py).

Each test drives one or more browser contexts (separate users, separate storage) through the
page as a person would: labels, buttons, Enter to send. Waiting is Playwright's auto-waiting
``expect`` with generous timeouts, never a sleep. ``UPDATE_SCREENSHOTS=1`` rewrites the
screenshots in ``docs/screenshots/``.
"""

from __future__ import annotations

import json
import os
import re

import pytest

try:
    from playwright.sync_api import WebSocketRoute, expect
except ImportError:
    if os.environ.get("REQUIRE_SERVICES") == "1":
        raise
    pytest.skip(
        "the playwright package is not installed (requirements-dev.txt)",
        allow_module_level=True,
    )

from .conftest import ApiCallError, LiveServer
from .pages import (
    PHONE,
    chat_item,
    expect_online,
    login,
    message,
    messages,
    open_pair_in_chat,
    screenshot,
    send,
    shown_seqs,
    tick,
)

pytestmark = pytest.mark.browser

# --- tests ----------------------------------------------------------------------------------------


def test_sign_up_reload_and_log_out(open_page, daphne_server: LiveServer):
    """A visitor signs up, stays logged in across a reload (sessionStorage), and logs out; a wrong password is explained."""
    page = open_page()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    screenshot(page, "login")

    form = page.locator("#login-form")
    form.get_by_label("Username").fill("nobody")
    form.get_by_label("Password").fill("wrong-password")
    form.get_by_label("Password").press("Enter")
    expect(page.get_by_role("alert").filter(has_text="No active account")).to_be_visible()

    page.get_by_role("button", name="Sign up").click()
    register = page.locator("#register-form")
    expect(register.get_by_label("Username")).to_be_focused()
    register.get_by_label("Username").fill("erin")
    register.get_by_label("Email").fill("erin@example.com")
    register.get_by_label("Password").fill("12345678")
    register.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert").filter(has_text="password")).to_be_visible()  # too common / numeric
    register.get_by_label("Password").fill("Erin-strong-pass-1")
    register.get_by_role("button", name="Create account").click()

    expect(page.locator("#me-name")).to_have_text("erin")
    expect(page.get_by_text("No chats yet")).to_be_visible()
    expect_online(page)

    page.reload()
    expect(page.locator("#me-name")).to_have_text("erin")
    expect_online(page)
    refresh = page.evaluate("() => window.messenger.session.refresh")

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0
    with pytest.raises(ApiCallError) as refused:
        daphne_server.call("POST", "/api/auth/token/refresh", {"refresh": refresh})
    assert refused.value.status == 401


def test_two_users_chat_live_with_typing_and_read_ticks(open_page, daphne_server: LiveServer):
    """Alice finds Bob, they chat in real time; typing shows; ✓ turns ✓✓ when the other reads; badges count unread."""
    alice_user = daphne_server.register("alice")
    bob_user = daphne_server.register("bob")
    alice = open_page(alice_user)
    bob = open_page(bob_user)

    # Escape closes a dialog (native <dialog>); the search finds users by prefix.
    alice.get_by_role("button", name="New chat").click()
    dialog = alice.get_by_role("dialog", name="New chat")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Find a user by username")).to_be_focused()
    alice.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    alice.get_by_role("button", name="New chat").click()
    dialog.get_by_label("Find a user by username").fill("bo")
    dialog.get_by_role("button", name="bob", exact=True).click()
    expect(dialog).to_be_hidden()
    expect(alice.get_by_role("heading", name="bob", exact=True)).to_be_visible()
    expect(alice.get_by_label("Message", exact=True)).to_be_focused()

    # Bob learns of the chat live (chat.created) and sees Alice typing in his list.
    expect(chat_item(bob, "alice")).to_be_visible()
    alice.get_by_label("Message", exact=True).press_sequentially("Hel")
    expect(chat_item(bob, "alice").locator(".chat-item-preview")).to_have_text("typing…")

    alice.get_by_label("Message", exact=True).press_sequentially("lo Bob")
    alice.get_by_label("Message", exact=True).press("Enter")
    expect(tick(alice, "Hello Bob")).to_have_attribute("data-status", "sent")
    expect(tick(alice, "Hello Bob")).to_have_text("✓")
    expect(chat_item(bob, "alice").locator(".badge")).to_have_text("1")
    expect(chat_item(bob, "alice").locator(".chat-item-preview")).to_have_text("Hello Bob")
    expect(chat_item(bob, "alice")).to_have_attribute("aria-label", re.compile("1 unread"))

    # Bob opens the chat: it is read, and Alice's tick turns to ✓✓.
    chat_item(bob, "alice").click()
    expect(message(bob, "Hello Bob")).to_be_visible()
    expect(chat_item(bob, "alice").locator(".badge")).to_be_hidden()
    expect(tick(alice, "Hello Bob")).to_have_attribute("data-status", "read")
    expect(tick(alice, "Hello Bob")).to_have_text("✓✓")

    # Bob types: Alice (chat open) sees "bob is typing…" until his message arrives.
    bob.get_by_label("Message", exact=True).press_sequentially("Hi Alice")
    expect(alice.locator("#typing")).to_have_text("bob is typing…")
    bob.get_by_label("Message", exact=True).press("Enter")
    expect(message(alice, "Hi Alice")).to_be_visible()
    expect(alice.locator("#typing")).to_be_hidden()
    expect(message(alice, "Hi Alice")).to_have_class(re.compile(r"\btheirs\b"))
    expect(message(bob, "Hi Alice")).to_have_class(re.compile(r"\bmine\b"))
    # Alice has the chat open and visible: she reads at once, Bob gets ✓✓.
    expect(tick(bob, "Hi Alice")).to_have_attribute("data-status", "read")
    expect(chat_item(alice, "bob").locator(".badge")).to_be_hidden()
    expect(chat_item(alice, "bob").locator(".chat-item-preview")).to_have_text("Hi Alice")
    assert shown_seqs(alice) == shown_seqs(bob) == [1, 2]


def test_killed_socket_reconnects_and_catches_up_without_duplicates(open_page, daphne_server: LiveServer):
    """A dropped socket shows "Reconnecting…", comes back, fetches what was sent meanwhile once, and sends what was queued."""
    alice, bob, *_ = open_pair_in_chat(open_page, daphne_server, "Before the outage")

    # The network goes away and the socket dies with it.
    alice.context.set_offline(True)
    alice.evaluate("() => window.messenger.socket.drop()")
    expect(alice.locator("#conn-status")).to_have_text("Reconnecting…")
    expect(alice.locator("#conn-status")).to_be_visible()

    for text in (
        "While you were away 1",
        "While you were away 2",
        "While you were away 3",
    ):
        send(bob, text)
        expect(tick(bob, text)).to_have_attribute("data-status", "sent")
    send(alice, "Written offline")
    expect(tick(alice, "Written offline")).to_have_attribute("data-status", "pending")
    expect(message(alice, "While you were away 1")).to_have_count(0)

    alice.context.set_offline(False)
    expect_online(alice)
    for text in (
        "While you were away 1",
        "While you were away 2",
        "While you were away 3",
    ):
        expect(message(alice, text)).to_have_count(1)
    # The queued message went out with its original client_id once the socket was back.
    expect(tick(alice, "Written offline")).to_have_attribute("data-status", re.compile("sent|read"))
    expect(message(bob, "Written offline")).to_have_count(1)
    expect(messages(alice)).to_have_count(5)
    assert shown_seqs(alice) == [1, 2, 3, 4, 5]
    # Alice caught up with the chat open: Bob's messages are read.
    expect(tick(bob, "While you were away 3")).to_have_attribute("data-status", "read")
    expect(messages(bob)).to_have_count(5)
    assert shown_seqs(bob) == [1, 2, 3, 4, 5]


def test_a_missed_event_is_fetched_as_a_gap(open_page, daphne_server: LiveServer):
    """When a message.new is lost in transit, the next one (seq > last + 1) makes the client fetch the hole."""
    alice_user = daphne_server.register("alice")
    bob_user = daphne_server.register("bob")
    chat = daphne_server.direct_chat(bob_user, alice_user)
    daphne_server.send(bob_user, chat["id"], "First", "gap-1")

    alice = open_page()
    dropped: list[dict] = []

    def lossy_socket(route: WebSocketRoute) -> None:
        server = route.connect_to_server()

        def from_server(payload) -> None:
            frame = json.loads(payload) if isinstance(payload, str) else {}
            if frame.get("type") == "message.new" and frame["message"]["text"] == "Lost in transit":
                dropped.append(frame)
                return
            route.send(payload)

        server.on_message(from_server)
        route.on_message(lambda payload: server.send(payload))

    alice.route_web_socket(re.compile(r"/ws/"), lossy_socket)
    login(alice, alice_user)
    chat_item(alice, "bob").click()
    expect(message(alice, "First")).to_be_visible()

    daphne_server.send(bob_user, chat["id"], "Lost in transit", "gap-2")
    daphne_server.send(bob_user, chat["id"], "After the gap", "gap-3")
    expect(message(alice, "After the gap")).to_be_visible()
    expect(message(alice, "Lost in transit")).to_have_count(1)
    assert dropped, "the route did not drop the frame, so no gap was tested"
    assert shown_seqs(alice) == [1, 2, 3]


def test_a_group_of_three_and_a_late_member(open_page, daphne_server: LiveServer):
    """Alice creates a group with Bob and Carol; everyone chats live; ✓✓ only once both have read; Dave is added later."""
    users = {name: daphne_server.register(name) for name in ("alice", "bob", "carol", "dave")}
    alice = open_page(users["alice"])
    bob = open_page(users["bob"])
    carol = open_page(users["carol"])

    alice.get_by_role("button", name="New group").click()
    dialog = alice.get_by_role("dialog", name="New group")
    expect(dialog.get_by_label("Group name")).to_be_focused()
    dialog.get_by_label("Group name").fill("Weekend trip")
    search = dialog.get_by_label("Add members by username")
    search.fill("bo")
    dialog.get_by_role("button", name="bob", exact=True).click()
    search.fill("car")
    dialog.get_by_role("button", name="carol", exact=True).click()
    expect(dialog.get_by_role("button", name="Remove bob")).to_be_visible()
    expect(dialog.get_by_role("button", name="Remove carol")).to_be_visible()
    dialog.get_by_role("button", name="Create group").click()
    expect(dialog).to_be_hidden()

    expect(alice.get_by_role("heading", name="Weekend trip")).to_be_visible()
    expect(alice.locator("#chat-subtitle")).to_have_text("you, bob, carol")
    expect(messages(alice).filter(has_text="alice created the group «Weekend trip»")).to_have_class(
        re.compile(r"\bsystem\b")
    )

    for page in (bob, carol):
        expect(chat_item(page, "Weekend trip")).to_be_visible()

    send(alice, "Who brings snacks?")
    expect(tick(alice, "Who brings snacks?")).to_have_attribute("data-status", "sent")

    chat_item(bob, "Weekend trip").click()
    expect(message(bob, "Who brings snacks?")).to_be_visible()
    expect(message(bob, "Who brings snacks?").locator(".sender")).to_have_text("alice")
    expect(chat_item(bob, "Weekend trip").locator(".badge")).to_be_hidden()
    # Carol has not read yet, so it is not read by the whole group.
    expect(tick(alice, "Who brings snacks?")).to_have_attribute("data-status", "sent")

    expect(chat_item(carol, "Weekend trip").locator(".badge")).to_have_text("1")
    chat_item(carol, "Weekend trip").click()
    expect(message(carol, "Who brings snacks?")).to_be_visible()
    expect(tick(alice, "Who brings snacks?")).to_have_attribute("data-status", "read")

    send(bob, "I do")
    send(carol, "I bring the tent")
    for page in (alice, bob, carol):
        expect(messages(page)).to_have_count(4)
    expect(message(alice, "I do").locator(".sender")).to_have_text("bob")
    expect(message(alice, "I bring the tent").locator(".sender")).to_have_text("carol")
    expect(tick(carol, "I bring the tent")).to_have_attribute("data-status", "read")

    dave = open_page(users["dave"])
    expect(dave.get_by_text("No chats yet")).to_be_visible()
    alice.get_by_role("button", name="Add member").click()
    member_dialog = alice.get_by_role("dialog", name="Add member")
    member_dialog.get_by_label("Find a user by username").fill("d")
    member_dialog.get_by_role("button", name="dave", exact=True).click()
    expect(member_dialog).to_be_hidden()
    for page in (alice, bob, carol):
        expect(messages(page).filter(has_text="alice added dave")).to_have_class(re.compile(r"\bsystem\b"))
    expect(bob.locator("#chat-subtitle")).to_have_text("alice, you, carol, dave")
    expect(chat_item(dave, "Weekend trip")).to_be_visible()
    chat_item(dave, "Weekend trip").click()
    expect(messages(dave).filter(has_text="alice added dave")).to_be_visible()
    send(dave, "Hi all!")
    for page in (alice, bob, carol):
        expect(message(page, "Hi all!").locator(".sender")).to_have_text("dave")
    for page in (alice, bob, carol, dave):
        expect(page.locator("#message-list > li[data-seq]")).to_have_count(6)
        assert shown_seqs(page) == [1, 2, 3, 4, 5, 6]

    # A second chat, so the list shows ordering, previews and a badge.
    direct = daphne_server.direct_chat(users["carol"], users["alice"])
    daphne_server.send(users["carol"], direct["id"], "Are you coming on Saturday?", "sat-1")
    expect(chat_item(alice, "carol").locator(".badge")).to_have_text("1")
    expect(alice.locator("#chat-list .chat-item-title").first).to_have_text("carol")
    screenshot(alice, "desktop")


def test_history_scrolls_back_page_by_page(open_page, daphne_server: LiveServer):
    """Opening a long chat shows the newest page; scrolling up loads older ones (before_seq) until the beginning."""
    alice_user = daphne_server.register("alice")
    bob_user = daphne_server.register("bob")
    chat = daphne_server.direct_chat(bob_user, alice_user)
    total = 130
    for n in range(1, total + 1):
        daphne_server.send(bob_user, chat["id"], f"Message number {n}", f"bulk-{n}")

    alice = open_page(alice_user)
    expect(chat_item(alice, "bob").locator(".badge")).to_have_text(str(total))
    # The catch-up that follows the first page is held back, so the reader scrolls up while the
    # chat is still loading: its arrival must not throw them back to the bottom.
    held: list = []
    catch_up = re.compile(r"/changes\?after_version=")
    alice.route(catch_up, lambda route: held.append(route))
    with alice.expect_request(lambda request: "after_version=" in request.url):
        chat_item(alice, "bob").click()
    expect(message(alice, f"Message number {total}")).to_be_in_viewport()
    first_seq = shown_seqs(alice)[0]
    assert first_seq > 1 and shown_seqs(alice) == list(range(first_seq, total + 1))

    scroller = alice.locator("#messages")
    while first_seq > 1:
        scroller.evaluate("el => { el.scrollTop = 0; }")
        expect(alice.locator("#message-list > li").first).not_to_have_attribute("data-seq", str(first_seq))
        previous_first = first_seq
        first_seq = shown_seqs(alice)[0]
        assert first_seq < previous_first
        # The reader keeps their place: the message that was first is still on screen.
        kept = alice.locator(f'#message-list > li[data-seq="{previous_first}"]')
        expect(kept).to_be_in_viewport()
        if held:
            with alice.expect_response(lambda response: "after_version=" in response.url):
                for route in held:
                    route.continue_()
            held.clear()
            alice.unroute(catch_up)
            expect(alice.get_by_text("Loading older messages…")).to_be_hidden()
            expect(kept).to_be_in_viewport()
    expect(alice.get_by_text("Beginning of the conversation")).to_be_visible()
    assert shown_seqs(alice) == list(range(1, total + 1))
    expect(chat_item(alice, "bob").locator(".badge")).to_be_hidden()


def test_phone_width_shows_one_pane_at_a_time(open_page, daphne_server: LiveServer):
    """At 375 px the list and the conversation take turns, nothing overflows sideways, and Back returns to the list."""
    alice_user = daphne_server.register("alice")
    bob_user = daphne_server.register("bob")
    carol_user = daphne_server.register("carol")
    chat = daphne_server.direct_chat(bob_user, alice_user)
    daphne_server.send(bob_user, chat["id"], "Lunch at noon?", "lunch-1")
    daphne_server.send(alice_user, chat["id"], "Sounds good, see you there", "lunch-2")
    daphne_server.send(bob_user, chat["id"], "Great! I'll book a table by the window.", "lunch-3")
    group = daphne_server.call(
        "POST",
        "/api/chats",
        {
            "kind": "group",
            "title": "Book club",
            "member_ids": [alice_user.id, bob_user.id],
        },
        token=carol_user.access,
    )
    daphne_server.send(carol_user, group["id"], "Next book: The Left Hand of Darkness", "book-1")

    alice = open_page(alice_user, viewport=PHONE)
    expect(alice.get_by_role("heading", name="Log in")).to_be_hidden()
    expect(chat_item(alice, "bob")).to_be_visible()
    expect(alice.locator("#chat-pane")).to_be_hidden()
    assert alice.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(alice, "phone-list")

    chat_item(alice, "bob").click()
    expect(alice.locator("#sidebar")).to_be_hidden()
    expect(message(alice, "Great! I'll book a table by the window.")).to_be_visible()
    back = alice.get_by_role("button", name="Back to chats")
    expect(back).to_be_visible()
    box = back.bounding_box()
    assert box["width"] >= 44 and box["height"] >= 44  # a comfortable touch target
    alice.get_by_label("Message", exact=True).fill("On my way")
    alice.get_by_role("button", name="Send").click()
    expect(tick(alice, "On my way")).to_have_attribute("data-status", re.compile("sent|read"))
    assert alice.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(alice, "phone-chat")

    back.click()
    expect(alice.locator("#sidebar")).to_be_visible()
    expect(alice.locator("#chat-pane")).to_be_hidden()
    expect(chat_item(alice, "bob")).to_be_focused()


def test_token_refresh_reaches_the_socket_and_revocation_logs_out(open_page, daphne_server: LiveServer):
    """A refreshed access token is handed to the open socket (auth.refresh); a revoked session ends at the login screen."""
    alice_user = daphne_server.register("alice")
    bob_user = daphne_server.register("bob")
    daphne_server.direct_chat(bob_user, alice_user)
    page = open_page()
    with page.expect_websocket() as socket_info:
        login(page, alice_user)
    socket = socket_info.value

    old_refresh = page.evaluate("() => window.messenger.session.refresh")
    with (
        socket.expect_event("framereceived", predicate=lambda payload: '"auth.refreshed"' in payload),
        socket.expect_event("framesent", predicate=lambda payload: '"auth.refresh"' in payload),
    ):
        page.evaluate("() => window.messenger.session.refreshTokens()")
    new_refresh = page.evaluate("() => window.messenger.session.refresh")
    assert new_refresh != old_refresh
    with pytest.raises(ApiCallError) as refused:  # refresh tokens rotate
        daphne_server.call("POST", "/api/auth/token/refresh", {"refresh": old_refresh})
    assert refused.value.status == 401

    chat_item(page, "bob").click()
    send(page, "Still here after the refresh")
    expect(tick(page, "Still here after the refresh")).to_have_attribute("data-status", "sent")

    # A refused token on the handshake closes with 4401 in a browser too (the server selects
    # messenger.v1 on the rejection path; otherwise the browser fails the handshake with 1006).
    close_code = page.evaluate(
        """() => new Promise((resolve) => {
            const ws = new WebSocket(`ws://${location.host}/ws/`, ["messenger.v1", "bearer.not-a-valid-token"]);
            ws.onclose = (event) => resolve(event.code);
        })"""
    )
    assert close_code == 4401

    # The session is logged out elsewhere: the socket gets session_revoked + 4401, the refresh is refused.
    daphne_server.call("POST", "/api/auth/logout", {"refresh": new_refresh})
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_text("Your session has ended")).to_be_visible()


def test_bidi_controls_in_user_strings_cannot_reorder_what_is_shown(open_page, daphne_server: LiveServer):
    """A right-to-left override in a title or a message is dropped from what is drawn, and every
    user string is bidi-isolated from the text around it."""
    alice_user = daphne_server.register("alice")
    bob_user = daphne_server.register("bob")
    group = daphne_server.call(
        "POST",
        "/api/chats",
        {"kind": "group", "title": "Plans\u202egnp.exe", "member_ids": [alice_user.id]},
        token=bob_user.access,
    )
    daphne_server.send(bob_user, group["id"], "invoice\u202efdp.exe is attached", "bidi-1")

    alice = open_page(alice_user)
    item = chat_item(alice, "Plansgnp.exe")
    expect(item.locator(".chat-item-preview")).to_have_text("bob: invoicefdp.exe is attached")
    # The sender's name and the text are each their own isolate inside the preview line.
    assert item.locator(".chat-item-preview bdi").all_text_contents() == ["bob", "invoicefdp.exe is attached"]
    item.click()
    expect(alice.locator("#chat-title")).to_have_text("Plansgnp.exe")
    expect(message(alice, "invoicefdp.exe is attached")).to_be_visible()
    system = messages(alice).first.locator(".system-text")
    expect(system).to_have_text("bob created the group «Plansgnp.exe»")
    shown = alice.evaluate(
        """() => [...document.querySelectorAll(
              "#chat-list, #chat-title, #chat-subtitle, #message-list")].map((node) => node.textContent).join("")"""
    )
    assert not re.search("[\u202a-\u202e\u2066-\u2069]", shown), shown
    styles = alice.evaluate(
        """() => ["#chat-title", "#message-list .msg .text", ".chat-item-title", ".system-text"].map(
              (selector) => getComputedStyle(document.querySelector(selector)).unicodeBidi)"""
    )
    assert styles == ["plaintext"] * 4
