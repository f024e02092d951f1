"""A real server process for the security and fuzzing tests, and plain clients for it.

:class:`LiveServer` starts ``daphne messenger.asgi:application`` or ``python -m runtime.serve``
on a free port, against this run's test database (pytest-django created and migrated it), with
this run's channel-layer and cache prefix. Users are created through the REST API of the server
itself, so tests need no database access of their own.

Clients are stdlib HTTP (``urllib``), the ``websockets`` library, and a raw TCP socket doing
the WebSocket handshake by hand (for a client that stops reading).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from tests.conftest import PASSWORD
from tests.live import ROOT, ServerProcess, child_env, daphne_argv, test_database_url

__all__ = ["ENTRY_POINTS", "ROOT", "LiveServer", "masked_text_frame", "raw_websocket", "server_env"]

TIMEOUT = 10


def server_env(**extra: str) -> dict[str, str]:
    """Environment for a server process: this run's test database and Redis prefixes."""
    env = child_env(
        FAST_PASSWORD_HASHER="1",
        AUTH_THROTTLE_RATE="",
        CHAT_CHANGE_RATE_LIMIT="0",
        GROUP_CREATE_DAILY_LIMIT="0",
        CONN_MAX_AGE="0",
        DATABASE_URL=test_database_url(),
    )
    env.update(extra)
    return env


# The production entry points, each with the same protections (bounded send buffer, inbound
# backpressure, frame cap, query-free logs, header and body limits): daphne and uvicorn.
ENTRY_POINTS = ("runtime.serve", "runtime.uvserve")


class LiveServer(ServerProcess):
    """One server process: plain daphne, or a production entry point when ``serve`` (True:
    ``python -m runtime.serve``; a module name of :data:`ENTRY_POINTS`: that one)."""

    def __init__(self, log_path: Path, env: dict[str, str], *, serve: bool | str = False, args: tuple[str, ...] = ()):
        self.serve = serve
        self.args = args
        if serve:
            module = serve if isinstance(serve, str) else "runtime.serve"
            assert module in ENTRY_POINTS, module

            def argv(port):
                return [sys.executable, "-m", module, "-b", "127.0.0.1", "-p", str(port), *args]

        else:
            argv = daphne_argv(*args)
        super().__init__(log_path, env, argv)

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
            "POST",
            "/api/auth/register",
            {"username": username, "email": f"{username}@example.com", "password": password},
        )
        assert status == 201, (status, body)
        return {**body, "password": password}

    def login(self, user: dict) -> dict:
        status, body = self.http(
            "POST", "/api/auth/token", {"username": user["username"], "password": user["password"]}
        )
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
