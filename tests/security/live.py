"""A real server process for the security and fuzzing tests, and plain clients for it.

:class:`LiveServer` starts ``daphne messenger.asgi:application`` or ``python -m messenger.serve``
on a free port, against a database the process can see: the test database when the run uses
PostgreSQL (pytest-django created and migrated it), else a fresh SQLite file migrated here. With
``REDIS_URL`` it shares this run's channel-layer and cache prefix. Users are created through
the REST API of the server itself, so tests need no database access of their own.

Clients are stdlib HTTP (``urllib``), the ``websockets`` library, and a raw TCP socket doing
the WebSocket handshake by hand (for a client that stops reading).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote

from django.conf import settings as django_settings

from tests.conftest import PASSWORD, RUN_PREFIX

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60
TIMEOUT = 10
POSTGRES = django_settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _test_database_url() -> str:
    db = django_settings.DATABASES["default"]
    auth = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def server_env(tmp_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a server process: a database it can see, this run's Redis prefixes."""
    env = {k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_NAME", "REQUIRE_SERVICES", "DATABASE_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="messenger.settings",
        PYTHONUNBUFFERED="1",
        FAST_PASSWORD_HASHER="1",
        AUTH_THROTTLE_RATE="",
        CHANNEL_PREFIX=RUN_PREFIX,
        CACHE_PREFIX=RUN_PREFIX,
        CONN_MAX_AGE="0",
    )
    if POSTGRES:
        env["DATABASE_URL"] = _test_database_url()
    else:
        path = tmp_dir / "live.sqlite3"
        env["SQLITE_PATH"] = str(path)
        if not path.exists():
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                cwd=ROOT, env=env, check=True, timeout=120,
            )
    env.update(extra)
    return env


class LiveServer:
    """One server process; ``command`` is the argv after the interpreter/daphne choice."""

    def __init__(self, log_path: Path, env: dict[str, str], *, serve: bool = False, args: tuple[str, ...] = ()):
        self.log_path = log_path
        self.env = env
        self.serve = serve
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def command(self) -> list[str]:
        bind = ["-b", "127.0.0.1", "-p", str(self.port)]
        if self.serve:
            return [sys.executable, "-m", "messenger.serve", *bind, *self.args]
        daphne = str(Path(sys.executable).with_name("daphne"))
        return [daphne, *bind, *self.args, "messenger.asgi:application"]

    def start(self) -> LiveServer:
        for _attempt in range(3):
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
            if self._wait_until_listening():
                return self
            self.stop()
        raise RuntimeError(f"server did not start; log:\n{self.log()}")

    def _wait_until_listening(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss_bytes(self) -> int:
        """Resident memory of the server process (Linux /proc)."""
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    # --- HTTP ---------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def http(self, method: str, path: str, body=None, *, token: str | None = None, headers=None) -> tuple[int, object]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=TIMEOUT) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw

    def register(self, username: str | None = None, password: str = PASSWORD) -> dict:
        username = username or f"u{uuid.uuid4().hex[:12]}"
        status, body = self.http(
            "POST", "/api/auth/register", {"username": username, "email": f"{username}@example.com", "password": password}
        )
        assert status == 201, (status, body)
        return {**body, "password": password}

    def login(self, user: dict) -> dict:
        status, body = self.http("POST", "/api/auth/token", {"username": user["username"], "password": user["password"]})
        assert status == 200, (status, body)
        return body

    def ws_url(self, token: str | None = None) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/" + (f"?token={token}" if token else "")


def raw_websocket(port: int, token: str, *, rcvbuf: int | None = None) -> socket.socket:
    """A WebSocket opened by hand over a plain socket; the caller reads (or does not) itself.

    ``rcvbuf`` shrinks the kernel receive buffer *before* connecting, so a client that stops
    reading pushes back on the server after a few KiB rather than a few MiB.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def masked_text_frame(text: str) -> bytes:
    """One client-to-server text frame (clients must mask)."""
    payload = text.encode()
    mask = os.urandom(4)
    header = bytearray([0x81])
    n = len(payload)
    if n < 126:
        header.append(0x80 | n)
    elif n < 2**16:
        header += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        header += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return bytes(header) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
