"""HTTP requests on a fixed set of long-lived threads, so REST reuses its database connections.

Django's ASGI handler runs each request's sync code (middleware, DRF views, the ORM) in a
thread made for that request (``ThreadSensitiveContext``) and thrown away after it. Django's
connections are per thread, so under ASGI ``CONN_MAX_AGE`` never gets to reuse one: every
request opens a new PostgreSQL connection (see docs/PERFORMANCE.md for what it cost), and the number of request threads -- and connections -- has no bound.

:class:`ThreadLeasingHTTP` wraps the Django ASGI app and gives each request one of at most
``HTTP_THREADS`` single-thread executors for its whole life, through asgiref's own
``ThreadSensitiveContext(executor=...)`` (asgiref >= 3.13): Django's inner context then
defers to it. A thread keeps its connection between requests; Django's own
``request_started``/``request_finished`` handlers still close it when it is older than
``CONN_MAX_AGE`` or broken, in that same thread. Requests beyond ``HTTP_THREADS`` wait for a
thread instead of starting more, which also bounds PostgreSQL connections per process.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext

from . import looplag


class ThreadLeasingHTTP:
    """``app`` with each HTTP request on one of ``size`` long-lived threads.

    Requests for ``unleased_paths`` skip the lease: ``/healthz`` is answered on the event loop
    (ops/health.py) and must keep answering while every thread is busy, or a liveness
    probe would restart a process that is only saturated.
    """

    def __init__(self, app, size: int, *, unleased_paths: frozenset[str] = frozenset({"/healthz"})):
        self.app = app
        self.size = max(1, size)
        self.unleased_paths = unleased_paths
        self._idle: list[ThreadPoolExecutor] = []  # threads outlive event loops (tests run many)
        self._created = 0
        self._gate: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._gate is None or self._gate[0] is not loop:
            self._gate = (loop, asyncio.Semaphore(self.size))
        return self._gate[1]

    def _lease(self) -> ThreadPoolExecutor:
        if self._idle:
            return self._idle.pop()
        self._created += 1
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"http-{self._created}")

    async def __call__(self, scope, receive, send):
        looplag.ensure_started()
        if scope["type"] != "http" or scope.get("path") in self.unleased_paths:
            return await self.app(scope, receive, send)
        async with self._semaphore():
            executor = self._lease()
            try:
                async with ThreadSensitiveContext(executor=executor):
                    await self.app(scope, receive, send)
            finally:
                # A sync call the request abandoned (client gone) may still be running on it;
                # the next request's calls queue behind it on the same single thread.
                self._idle.append(executor)
