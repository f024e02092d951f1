"""HTTP over ASGI runs on a bounded set of long-lived threads (runtime/http.py) that keep their
database connections between requests -- and still drop a connection that died."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.core.signals import request_finished
from django.db import connection, connections

from runtime.http import ThreadLeasingHTTP
from tests.conftest import access_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def finished_on():
    """(thread id, PostgreSQL backend pid) of each request, read in its own thread at request_finished."""
    seen: list[tuple[int, int | None]] = []

    def record(**_):
        raw = connection.connection
        seen.append((threading.get_ident(), raw.info.backend_pid if raw is not None and not raw.closed else None))

    request_finished.connect(record)
    yield seen
    request_finished.disconnect(record)


async def get(app, path: str, token: str) -> int:
    """One GET through the ASGI app, awaited to its very end (request_finished included); the status."""
    sent: list[dict] = []
    requested = False

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # no disconnect; Django cancels this listener when done

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {token}".encode()), (b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), 10)
    return sent[0]["status"]


@pytest.fixture
def keep_connections(monkeypatch):
    """Production's persistent connections (the test settings close them after every request)."""
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 300)


async def test_requests_reuse_one_thread_and_its_connection_and_survive_a_dead_one(
    make_user, finished_on, keep_connections
):
    from django.core.asgi import get_asgi_application

    app = ThreadLeasingHTTP(get_asgi_application(), 4)
    user = await database_sync_to_async(make_user)()
    token = access_token(user)
    for _ in range(5):
        assert await get(app, "/api/users/me", token) == 200
    threads = {t for t, _ in finished_on}
    pids = {p for _, p in finished_on}
    assert len(finished_on) == 5 and len(threads) == 1 and len(pids) == 1 and None not in pids, finished_on

    # The database drops the kept connection (restart, failover): the next request still answers,
    # on the same thread and a new connection -- Django's health check at request start.
    (pid,) = pids

    def terminate():
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

    await database_sync_to_async(terminate)()
    await asyncio.sleep(0.1)
    assert await get(app, "/api/users/me", token) == 200
    thread, new_pid = finished_on[-1]
    assert thread in threads and new_pid not in (None, pid), finished_on

    # Tidy up: close what the leased thread holds, in that thread.
    await asyncio.wrap_future(app._idle[0].submit(connections.close_all))


async def test_concurrent_requests_beyond_the_limit_wait_for_a_thread():
    """Eight concurrent requests through a 2-thread app: never more than 2 threads or 2 at once."""
    running, peak, threads = 0, 0, set()
    lock = threading.Lock()

    def work():
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            threads.add(threading.get_ident())
        time.sleep(0.05)
        with lock:
            running -= 1

    async def app(scope, receive, send):
        await sync_to_async(work)()  # thread-sensitive, as Django's handler runs sync code
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    leasing = ThreadLeasingHTTP(app, 2)
    responses = await asyncio.gather(
        *(HttpCommunicator(leasing, "GET", "/").get_response(timeout=10) for _ in range(8))
    )
    assert [r["status"] for r in responses] == [204] * 8
    assert peak == 2 and len(threads) == 2, (peak, threads)


async def test_healthz_answers_while_every_thread_is_busy():
    """A saturated process is alive: /healthz skips the lease; other requests wait for a thread."""
    release = threading.Event()
    order: list[str] = []

    async def app(scope, receive, send):
        if scope["path"] != "/healthz":
            await sync_to_async(release.wait)()  # holds the request's thread
        order.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    leasing = ThreadLeasingHTTP(app, 1)
    busy = asyncio.ensure_future(HttpCommunicator(leasing, "GET", "/api/slow").get_response(timeout=10))
    waiting = asyncio.ensure_future(HttpCommunicator(leasing, "GET", "/api/next").get_response(timeout=10))
    await asyncio.sleep(0.1)
    health = await HttpCommunicator(leasing, "GET", "/healthz").get_response(timeout=2)
    assert health["status"] == 200 and order == ["/healthz"]
    release.set()
    assert (await busy)["status"] == 200 and (await waiting)["status"] == 200
    assert order == ["/healthz", "/api/slow", "/api/next"]
