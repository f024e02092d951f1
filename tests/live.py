"""Real server processes for tests: ports, the database a child can see, start/wait/stop.

Used by the cross-process, security/fuzzing and browser tests. (The fault suite runs its own
private PostgreSQL and Redis and keeps its own process wrapper in ``tests/faults/infra.py``.)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from websockets.sync.client import connect

from tests.conftest import RUN_PREFIX

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60
DAPHNE = str(Path(sys.executable).with_name("daphne"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """The *test* database this run uses (PostgreSQL), as a URL for child processes."""
    db = django_settings.DATABASES["default"]
    auth = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = quote(db.get("HOST") or "127.0.0.1", safe="")  # a unix socket directory is percent-encoded
    return f"postgres://{auth}@{host}:{db.get('PORT') or 5432}/{db['NAME']}"


test_database_url.__test__ = False  # not a test, whatever pytest's name pattern says


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment minus the test-run switches, plus this run's Redis prefixes;
    no socket connect limits (every client of a test is 127.0.0.1) unless ``extra`` sets them."""
    env = {k: v for k, v in os.environ.items() if k != "TEST_DATABASE_NAME"}
    env.update(
        DJANGO_SETTINGS_MODULE="messenger.settings",
        PYTHONUNBUFFERED="1",
        CHANNEL_PREFIX=RUN_PREFIX,
        CACHE_PREFIX=RUN_PREFIX,
        SOCKET_CONNECTS_PER_USER="0",
        SOCKET_CONNECTS_PER_ADDRESS="0",
        # A server's inline outbox relay would take the rows of the outbox tests' own workers.
        OUTBOX_SERVER_RELAY="false",
    )
    env.update(extra)
    return env


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class ServerProcess:
    """One server subprocess on a free port of 127.0.0.1, its output in ``log_path``.

    ``argv(port)`` builds the command line; ``ready(port)`` says when it serves (default: the
    port accepts TCP). A start that does not become ready is retried on another port.
    """

    def __init__(
        self,
        log_path: Path,
        env: dict[str, str],
        argv: Callable[[int], list[str]],
        ready: Callable[[int], bool] = port_accepts,
    ):
        self.log_path = log_path
        self.env = env
        self.argv = argv
        self.ready = ready
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self):
        for _attempt in range(3):
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    self.argv(self.port), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
                )
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self.ready(self.port):
                    return self
                time.sleep(0.1)
            self.stop()
        raise RuntimeError(f"server did not start; log:\n{self.log()}")

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


def daphne_argv(*extra: str) -> Callable[[int], list[str]]:
    """``daphne -b 127.0.0.1 -p <port> [extra] messenger.asgi:application``."""
    return lambda port: [DAPHNE, "-b", "127.0.0.1", "-p", str(port), *extra, "messenger.asgi:application"]


# --- JSON frames over a websockets sync client (the cross-process and routing tests) ---------

FRAME_TIMEOUT = 10


def recv(connection, timeout: float = FRAME_TIMEOUT) -> dict:
    return json.loads(connection.recv(timeout=timeout))


def recv_until(connection, type_: str, timeout: float = FRAME_TIMEOUT) -> dict:
    while True:
        frame = recv(connection, timeout)
        if frame.get("type") == type_:
            return frame


def send(connection, frame: dict) -> None:
    connection.send(json.dumps(frame))


def ping_barrier(connection, ref: str = "barrier") -> None:
    """The very next frame is the pong: nothing else was queued for this socket."""
    send(connection, {"type": "ping", "ref": ref})
    assert recv(connection) == {"type": "pong", "ref": ref}


def assert_silent(connection, quiet_s: float = 0.3) -> None:
    """Nothing more arrives on the socket (after a ping barrier) for ``quiet_s`` seconds."""
    ping_barrier(connection)
    with pytest.raises(TimeoutError):
        connection.recv(timeout=quiet_s)


class NamedServer(ServerProcess):
    """A server process (plain daphne unless ``argv`` says otherwise) on this run's test database
    and Redis, named for its log, with an authenticated socket helper."""

    def __init__(self, name: str, log_dir: Path, argv=None, **env: str):
        self.name = name
        super().__init__(
            log_dir / f"daphne-{name}.log",
            child_env(DATABASE_URL=test_database_url(), **{"REDIS_URL": os.environ["REDIS_URL"], **env}),
            argv or daphne_argv(),
        )

    def ws(self, token: str, stack, timeout: float = FRAME_TIMEOUT):
        """A socket authenticated with ``token`` (closed when the ExitStack ``stack`` exits),
        past its ``session.ready``."""
        connection = stack.enter_context(
            connect(f"ws://127.0.0.1:{self.port}/ws/?token={token}", open_timeout=timeout, proxy=None)
        )
        ready = recv(connection)
        assert ready["type"] == "session.ready", ready
        return connection


@contextlib.contextmanager
def running(*servers: ServerProcess):
    """Start ``servers``, yield them as a list, stop them all at the end (also after a failed start)."""
    try:
        for server in servers:
            server.start()
        yield list(servers)
    finally:
        for server in servers:
            server.stop()
