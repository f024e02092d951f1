"""Async PostgreSQL for plans run from the event loop (``runtime.plans.run_async``).

Sockets run their statements on psycopg's ``AsyncConnection`` from the event loop itself, on
a small per-process pool of persistent autocommit connections with their statements prepared
once per connection -- no hop to a database thread and back per command.

Guarantees: every statement commits on its own (autocommit), except those run in a
:func:`transaction` (one connection, one transaction: a plan's ``Atomic`` step); errors come out as Django's
database exceptions (so callers map them to 503 as for the ORM); a kept connection that
turns out dead -- PostgreSQL restarted or failed over -- is dropped and the statement is run
once more on a fresh connection. That retry is safe because the plans' statements are
idempotent: a send by ``(sender, client_id)``, a read by ``max()``. Connections older than
``CONN_MAX_AGE`` are closed when they come back to the pool. At most ``DB_POOL_SIZE``
connections per process and event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator

import psycopg
from django.conf import settings
from django.db import DatabaseError, connections

from ops import metrics

# Group commit (Pool.fetch_grouped): groups executed at once per pool, statements per group.
GROUP_COMMIT_INFLIGHT = 2
GROUP_COMMIT_MAX = 64

_wrapper = None


def _django():
    """A ``DatabaseWrapper`` of the default database for its connection parameters and error
    mapping; never connected. One per process: ``connections["default"]`` is per async
    context, so reading it from a socket's task built a whole wrapper (~5 KiB) for every socket.
    It shares the settings dict, so the test runner's renamed database is seen here too."""
    global _wrapper
    if _wrapper is None:
        _wrapper = connections.create_connection("default")
    return _wrapper


class Pool:
    """At most ``size`` autocommit connections of one event loop; idle ones are reused LIFO."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int):
        self.loop = loop
        self.size = max(1, size)
        self._idle: list[tuple[psycopg.AsyncConnection, float]] = []
        self._free = asyncio.Semaphore(self.size)
        # Group commit (fetch_grouped): statements waiting for the next group, groups running.
        self._grouped: list[tuple[str, dict, asyncio.Future]] = []
        self._groups_inflight = 0
        self._group_tasks: set[asyncio.Task] = set()
        self.max_age = settings.DATABASES["default"].get("CONN_MAX_AGE") or 0

    def _conninfo(self) -> dict:
        # Read at connect time: the test runner renames the database after settings load.
        params = _django().get_connection_params()
        for key in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
            params.pop(key, None)
        return params

    async def _connect(self) -> tuple[psycopg.AsyncConnection, float]:
        conn = await psycopg.AsyncConnection.connect(autocommit=True, **self._conninfo())
        _all_connections.add(conn)
        return conn, time.monotonic()

    def _discard(self, conn: psycopg.AsyncConnection) -> None:
        _all_connections.discard(conn)
        if not conn.closed:
            conn.pgconn.finish()  # no round trip: the server notices the closed socket

    def _put_back(self, conn: psycopg.AsyncConnection, born: float) -> None:
        """Keep a connection for the next statement unless it is broken, mid-transaction or too old."""
        if (
            conn.broken
            or conn.closed
            or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
            or (self.max_age and time.monotonic() - born > self.max_age)
        ):
            self._discard(conn)
        else:
            self._idle.append((conn, born))

    async def fetch(self, sql: str, params: dict) -> list[tuple]:
        """Run one statement in its own transaction and return its rows."""
        async with self._free:
            # psycopg's exceptions come out as Django's, as from sql.run().
            with _django().wrap_database_errors:
                kept = bool(self._idle)
                conn, born = self._idle.pop() if kept else await self._connect()
                try:
                    try:
                        rows = await self._execute(conn, sql, params)
                    except psycopg.OperationalError:
                        if not kept or not conn.broken:
                            raise
                        # A kept connection died (database restart): once more on a new one.
                        self._discard(conn)
                        conn, born = await self._connect()
                        rows = await self._execute(conn, sql, params)
                except psycopg.Error:
                    self._put_back(conn, born)
                    raise
                except BaseException:
                    self._discard(conn)  # cancelled mid-statement: the connection's state is unknown
                    raise
                self._put_back(conn, born)
                return rows

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One connection in one transaction: committed when the block ends, rolled back when it raises."""
        async with self._free:
            with _django().wrap_database_errors:
                kept = bool(self._idle)
                conn, born = self._idle.pop() if kept else await self._connect()
                try:
                    await conn.execute("BEGIN")
                except psycopg.OperationalError:
                    if not kept or not conn.broken:
                        self._discard(conn)
                        raise
                    # A kept connection died (database restart): nothing ran yet, so begin on a new one.
                    self._discard(conn)
                    conn, born = await self._connect()
                    await conn.execute("BEGIN")
            try:
                yield Transaction(conn)
                with _django().wrap_database_errors:
                    await conn.execute("COMMIT")
            except asyncio.CancelledError:
                self._discard(conn)  # cancelled mid-statement: the connection's state is unknown
                raise
            except BaseException:
                if conn.broken or conn.closed:
                    self._discard(conn)
                    raise
                try:
                    await conn.execute("ROLLBACK")
                except BaseException:
                    self._discard(conn)
                    raise
                self._put_back(conn, born)
                raise
            self._put_back(conn, born)

    async def fetch_grouped(self, sql: str, params: dict) -> list[tuple]:
        """:meth:`fetch`, committed together with the other grouped statements waiting meanwhile.

        Group commit: while :data:`GROUP_COMMIT_INFLIGHT` groups are being executed, further
        statements wait; when a group finishes, everything that waited goes to PostgreSQL as the
        next group, in ONE transaction (one pipelined round trip, one commit and WAL flush) instead
        of one each. A group of one is a plain :meth:`fetch`, so an idle server adds no delay. Each
        statement keeps its own result. If any statement of a group fails, the group rolls back
        as a whole -- nothing of it is stored -- and each statement runs once more on its own, so
        a failure fails only its own statement. Statements are ordered by their ``chat``
        parameter within a group (stable: one chat's keep their arrival order), so two groups
        take chat row locks in the same order and cannot deadlock each other.
        """
        future = self.loop.create_future()
        self._grouped.append((sql, params, future))
        if self._groups_inflight < GROUP_COMMIT_INFLIGHT:
            self._groups_inflight += 1
            task = self.loop.create_task(self._run_groups())
            self._group_tasks.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(self._group_tasks.discard)
        return await future

    async def _run_groups(self) -> None:
        group: list = []
        try:
            while self._grouped:
                group, self._grouped = self._grouped[:GROUP_COMMIT_MAX], self._grouped[GROUP_COMMIT_MAX:]
                metrics.DB_GROUP_COMMIT_SIZE.observe(len(group))
                if len(group) > 1:
                    group.sort(key=lambda item: item[1].get("chat") or 0)
                    try:
                        results = await self._commit_group(group)
                    except Exception:  # noqa: BLE001 - rolled back: each runs on its own below
                        results = None
                    if results is not None:
                        for (_, _, future), rows in zip(group, results, strict=True):
                            if not future.done():
                                future.set_result(rows)
                        continue
                for sql, params, future in group:
                    try:
                        rows = await self.fetch(sql, params)
                    except Exception as exc:  # noqa: BLE001 - it is this statement's outcome
                        if not future.done():
                            future.set_exception(exc)
                    else:
                        if not future.done():
                            future.set_result(rows)
        except BaseException as exc:
            # Cancelled (the loop is shutting down): nobody may wait forever for an answer.
            for _, _, future in group + self._grouped:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else DatabaseError("cancelled"))
            raise
        finally:
            self._groups_inflight -= 1

    async def _commit_group(self, group: list) -> list[list[tuple]]:
        """The statements of ``group`` in one transaction, pipelined; their rows, in order."""
        async with self._free:
            with _django().wrap_database_errors:
                conn, born = self._idle.pop() if self._idle else await self._connect()
                try:
                    async with conn.pipeline():
                        await conn.execute("BEGIN")
                        cursors = [await conn.execute(sql, params, prepare=True) for sql, params, _ in group]
                        await conn.execute("COMMIT")
                    rows = [await cursor.fetchall() if cursor.description else [] for cursor in cursors]
                except BaseException:
                    # Failed (the transaction rolled back) or cancelled: the connection's state is
                    # not worth repairing for a group; a new one is opened when needed.
                    self._discard(conn)
                    raise
                self._put_back(conn, born)
                return rows

    @staticmethod
    async def _execute(conn: psycopg.AsyncConnection, sql: str, params: dict) -> list[tuple]:
        cursor = await conn.execute(sql, params, prepare=True)
        return await cursor.fetchall() if cursor.description else []

    def close(self) -> None:
        while self._idle:
            self._discard(self._idle.pop()[0])


class Transaction:
    """The connection of an open :meth:`Pool.transaction`."""

    def __init__(self, conn: psycopg.AsyncConnection):
        self.conn = conn

    async def fetch(self, sql: str, params: dict, *, savepoint: bool = False) -> list[tuple]:
        """Run a statement in the transaction (``savepoint``: in a savepoint, so an error leaves
        the transaction usable)."""
        with _django().wrap_database_errors:
            if not savepoint:
                return await Pool._execute(self.conn, sql, params)
            await self.conn.execute("SAVEPOINT plan_step")
            try:
                rows = await Pool._execute(self.conn, sql, params)
            except psycopg.Error:
                await self.conn.execute("ROLLBACK TO SAVEPOINT plan_step")
                raise
            await self.conn.execute("RELEASE SAVEPOINT plan_step")
            return rows


# Every connection any pool opened, so tests (and shutdown) can close them from sync code.
_all_connections: weakref.WeakSet = weakref.WeakSet()
_pool: Pool | None = None


def pool() -> Pool:
    """This process's pool, for the running event loop (tests run one loop per test)."""
    global _pool
    loop = asyncio.get_running_loop()
    if _pool is None or _pool.loop is not loop:
        if _pool is not None:
            _pool.close()
        _pool = Pool(loop, settings.DB_POOL_SIZE)
    return _pool


async def fetch(sql: str, params: dict) -> list[tuple]:
    return await pool().fetch(sql, params)


def transaction():
    """``async with transaction() as tx: await tx.fetch(...)``: statements in one transaction."""
    return pool().transaction()


async def fetch_grouped(sql: str, params: dict) -> list[tuple]:
    return await pool().fetch_grouped(sql, params)


async def fetch_one(sql: str, params: dict) -> tuple | None:
    rows = await pool().fetch(sql, params)
    return rows[0] if rows else None


def close_all() -> None:
    """Close every connection the pools hold (sync; for tests that drop the database)."""
    global _pool
    _pool = None
    for conn in list(_all_connections):
        if not conn.closed:
            conn.pgconn.finish()
    _all_connections.clear()
