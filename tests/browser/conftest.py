"""A live daphne server on the test database and a real Chromium driven by Playwright.

The server is one ``daphne messenger.asgi:application`` subprocess (``DEBUG=false``, so the
client is checked the way production serves it) on a free port, started once per session
against this run's test database, channel-layer and cache prefix. Chromium is Debian's
``/usr/bin/chromium`` (``.ci/run`` installs it); Playwright's own browser download is never used.
Chromium is the one prerequisite ./test.sh cannot bring: without it these tests are skipped,
except in CI (``REQUIRE_SERVICES=1``), where that is an error.

Playwright's sync API runs an event loop in the test's thread, so the ORM cannot be used
while a browser is open: tests make their data over HTTP (:class:`LiveServer`), and each test
starts and stops its own Playwright (under a second) before the database is flushed.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.live import ServerProcess, child_env, daphne_argv, test_database_url
from tests.s3 import BUCKET, CREDENTIALS, empty_bucket

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A microphone that plays a beep and asks nobody (voice messages, test_attachments.py).
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
PASSWORD = "Browser-pass-42"


def _unavailable(reason: str):
    """A missing prerequisite: an error in CI (REQUIRE_SERVICES=1), a skip elsewhere."""
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


class ApiCallError(AssertionError):
    def __init__(self, status: int, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class User:
    id: int
    username: str
    password: str
    access: str


class LiveServer(ServerProcess):
    """The daphne subprocess plus a tiny JSON client for making test data over HTTP."""

    def __init__(self, log_path: Path, **settings: str):
        env = child_env(
            DEBUG="false",
            SECRET_KEY="browser-tests-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            SECURE_SSL_REDIRECT="false",
            DATABASE_URL=test_database_url(),
            FAST_PASSWORD_HASHER="1",
            AUTH_THROTTLE_RATE="100000/min",
            SEND_RATE_LIMIT="10000",
            CHAT_CHANGE_RATE_LIMIT="10000",
            GROUP_CREATE_DAILY_LIMIT="10000",
            ATTACHMENTS_STORAGE="local",
            ATTACHMENTS_DIR=str(log_path.parent / "attachments"),
            UPLOAD_RATE_LIMIT="10000",
        )
        env.update(settings)
        super().__init__(log_path, env, daphne_argv(), ready=self._serves_client)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def _serves_client(port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    # --- JSON over HTTP -------------------------------------------------------------------------

    def call(self, method: str, path: str, body=None, *, token: str | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                raw = response.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw.decode(errors="replace")
            raise ApiCallError(error.code, payload) from None

    def register(self, username: str) -> User:
        created = self.call(
            "POST",
            "/api/auth/register",
            {
                "username": username,
                "email": f"{username}@example.com",
                "password": PASSWORD,
            },
        )
        tokens = self.call("POST", "/api/auth/token", {"username": username, "password": PASSWORD})
        return User(
            id=created["id"],
            username=username,
            password=PASSWORD,
            access=tokens["access"],
        )

    def direct_chat(self, owner: User, other: User) -> dict:
        return self.call(
            "POST",
            "/api/chats",
            {"kind": "direct", "user_id": other.id},
            token=owner.access,
        )

    def send(self, sender: User, chat_id: int, text: str, client_id: str) -> dict:
        return self.call(
            "POST",
            f"/api/chats/{chat_id}/messages",
            {"client_id": client_id, "text": text},
            token=sender.access,
        )


@pytest.fixture(scope="session")
def daphne_server(django_db_setup, django_db_blocker, tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("browser") / "daphne.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_daphne_server(django_db_setup, django_db_blocker, tmp_path_factory, s3_endpoint):
    """A second live server whose attachments live on S3 (moto_server): files are redirects to
    presigned URLs on the store's own origin, as on AWS, so the page loads them cross-origin."""
    server = LiveServer(
        tmp_path_factory.mktemp("browser-s3") / "daphne.log",
        ATTACHMENTS_STORAGE="s3",
        AWS_STORAGE_BUCKET_NAME=BUCKET,
        AWS_S3_ENDPOINT_URL=s3_endpoint,
        AWS_S3_REGION_NAME=CREDENTIALS["region_name"],
        AWS_ACCESS_KEY_ID=CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=CREDENTIALS["aws_secret_access_key"],
    )
    empty_bucket(s3_endpoint)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def relay_daphne_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """A live server that also runs the outbox's inline relay, so the feed's handlers (fan-out,
    ``channel.post``) follow the posts as in production. Module-scoped: it is gone before the
    outbox tests run, whose own workers must be the only ones taking the outbox's rows (the
    other servers run no relay, tests/live.py ``child_env``)."""
    server = LiveServer(tmp_path_factory.mktemp("browser-relay") / "daphne.log", OUTBOX_SERVER_RELAY="true")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sso_daphne_server(django_db_setup, django_db_blocker, tmp_path_factory, oidc_provider):
    """A live server with single sign-on through the session's OpenID Connect provider (tests/oidc.py)."""
    server = LiveServer(tmp_path_factory.mktemp("browser-sso") / "daphne.log", **oidc_provider.settings())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def browser(daphne_server, transactional_db):
    """A fresh Chromium per test. Requested after ``transactional_db``, so it closes before the flush."""
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        _unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -r requirements-dev.txt)")
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture
def open_page(browser, daphne_server: LiveServer):
    """``open_page(user=None, viewport=DESKTOP)`` -> a page in a fresh context, logged in as ``user``.

    Uncaught JavaScript errors on any page fail the test.
    """
    yield from _page_opener(browser, daphne_server)


@pytest.fixture
def open_relay_page(browser, relay_daphne_server: LiveServer):
    """``open_page`` on the server that runs the outbox relay (the feed's handlers)."""
    yield from _page_opener(browser, relay_daphne_server)


@pytest.fixture
def open_s3_page(browser, s3_daphne_server: LiveServer):
    """``open_page`` on the server whose files live on S3."""
    yield from _page_opener(browser, s3_daphne_server)


@pytest.fixture
def open_sso_page(browser, sso_daphne_server: LiveServer):
    """``open_page`` on the server with single sign-on."""
    yield from _page_opener(browser, sso_daphne_server)


def _page_opener(browser, server: LiveServer):
    errors: list[str] = []
    contexts = []

    def _open(user: User | None = None, *, viewport=None):
        context = browser.new_context(viewport=viewport or DESKTOP, base_url=server.url)
        contexts.append(context)
        page = context.new_page()
        page.on(
            "pageerror",
            lambda error: errors.append(f"{user.username if user else '-'}: {error}"),
        )
        page.goto("/")
        if user is not None:
            from .pages import login

            login(page, user)
        return page

    yield _open
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors: {errors}"
