"""Fixtures for the security tests: real server processes (see ``live.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .live import LiveServer, server_env


class Servers:
    """``servers(name, serve=..., args=..., **env)`` -> a running LiveServer; all stopped at the end."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.running: list[LiveServer] = []

    def __call__(self, name: str, *, serve: bool | str = False, args: tuple[str, ...] = (), **env: str) -> LiveServer:
        server = LiveServer(self.directory / f"{name}.log", server_env(**env), serve=serve, args=args)
        self.running.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in self.running:
            server.stop()


@pytest.fixture(scope="module")
def start_server(django_db_setup, tmp_path_factory):
    servers = Servers(tmp_path_factory.mktemp("live"))
    yield servers
    servers.stop_all()


class Clock:
    """A settable ``time.time()`` for the windows and back-offs of the limits (no wall-clock waits)."""

    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    """Freezes the clock of ``runtime.limits`` and ``accounts.throttles`` at the start of a
    fixed 3 600 s window (so windows of up to an hour do not roll over by themselves)."""
    import time as real_time

    from accounts import throttles
    from runtime import limits

    fake = Clock(float((int(real_time.time()) // 3600 + 1) * 3600))
    monkeypatch.setattr(limits, "time", fake)
    monkeypatch.setattr(throttles, "time", fake)
    return fake
