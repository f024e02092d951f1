"""Single sign-on in a real Chromium: the login screen's "Sign in with <provider>" link, the
provider's own authorization form (oidc-provider-mock, tests/oidc.py), and back to the client
logged in; a failed sign-in is explained on the login screen."""

from __future__ import annotations

import os
import uuid

import pytest

try:
    from playwright.sync_api import expect
except ImportError:
    if os.environ.get("REQUIRE_SERVICES") == "1":
        raise
    pytest.skip("the playwright package is not installed (requirements-dev.txt)", allow_module_level=True)

from tests.oidc import PROVIDER_NAME, OidcProvider

from .conftest import LiveServer
from .pages import expect_online, screenshot

pytestmark = pytest.mark.browser


def test_sign_in_with_the_provider(open_sso_page, sso_daphne_server: LiveServer, oidc_provider: OidcProvider):
    """Click "Sign in with Test ID", submit the provider's form, land in the app logged in as the
    new SSO user; the one-time code is gone from the URL and from history, and a reload keeps
    the session."""
    sub = f"browser-{uuid.uuid4().hex[:8]}"
    oidc_provider.set_user(sub, preferred_username="Sso Browser", email=f"{sub}@example.com", email_verified=True)
    page = open_sso_page()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    link = page.get_by_role("link", name=f"Sign in with {PROVIDER_NAME}")
    expect(link).to_be_visible()
    screenshot(page, "sso-login")
    link.click()

    page.wait_for_url(f"{oidc_provider.issuer}/oauth2/authorize?**")
    page.locator('input[name="sub"]').fill(sub)
    page.get_by_role("button", name="Authorize").click()

    expect(page.locator("#me-name")).to_have_text("Sso-Browser")
    expect_online(page)
    assert page.url == f"{sso_daphne_server.url}/", page.url
    me = page.evaluate("() => window.messenger.session.user")
    assert me["username"] == "Sso-Browser" and me["email"] == f"{sub}@example.com"

    page.reload()
    expect(page.locator("#me-name")).to_have_text("Sso-Browser")
    expect_online(page)


def test_a_failed_sign_in_is_explained_on_the_login_screen(open_sso_page, sso_daphne_server: LiveServer):
    """An answer from the provider this browser never asked for (a forged callback): the server
    says sso_state_mismatch, and the login screen shows it in words, with the fragment removed."""
    page = open_sso_page()
    page.goto("/api/auth/sso/callback?code=forged&state=forged")
    expect(page.get_by_role("alert").filter(has_text="could not be checked")).to_be_visible()
    assert page.url == f"{sso_daphne_server.url}/", page.url
    expect(page.get_by_role("link", name=f"Sign in with {PROVIDER_NAME}")).to_be_visible()
